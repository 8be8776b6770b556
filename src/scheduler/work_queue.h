// Coalescing work queues: background work that the scheduler's jobs (and
// control's state machines) ask for again and again, run once per request
// burst on a worker pool. Garbage collection of the repository (one key)
// and compaction of an instance's change-log segments (a key per stream)
// queue here: asked for while already queued, it is not queued twice.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <functional>
#include <mutex>
#include <set>
#include <string>

#include "common/task_pool.h"

namespace strata::scheduler {

class WorkQueue {
 public:
  explicit WorkQueue(TaskPool& pool) : pool_(pool) {}

  // Queues `work` on the pool unless work of `key` is queued and not yet
  // started; false then (coalesced), or when the pool is shut down. The key
  // is free again once the work starts, so work may queue its own sequel.
  bool Enqueue(const std::string& key, std::function<void()> work);

 private:
  TaskPool& pool_;
  std::mutex mu_;
  std::set<std::string> queued_;  // under mu_
};

}  // namespace strata::scheduler
