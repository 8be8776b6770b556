// A fixed set of worker threads running submitted tasks in FIFO order.
// Shutdown() runs every task already queued, then joins; Submit after
// Shutdown returns false and drops the task.
// Thread safety: Submit and Shutdown may be called from any thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace strata {

class TaskPool {
 public:
  explicit TaskPool(int threads);
  ~TaskPool();
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  bool Submit(std::function<void()> task);
  void Shutdown();

 private:
  void Run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
};

// Runs fn on a new thread at the lowest CPU priority (SCHED_IDLE; nice +10
// where that is refused) and waits for it.
// Threads fn starts inherit the priority, so bulk work (a snapshot's hashing
// and compression) yields the CPU to the database's own writers.
void RunAtBackgroundPriority(const std::function<void()>& fn);

// For a short section in which a background thread holds a lock that
// threads at normal priority wait on (the repository's chunk index, which
// restores read while a snapshot adds a pack): the calling thread runs the
// scope at normal priority if it ran at SCHED_IDLE, and goes back after.
// Otherwise a busy CPU keeps the idle holder off it while the waiters, and
// whoever waits on them, stall (priority inversion). Leaving SCHED_IDLE
// needs CAP_SYS_NICE or a RLIMIT_NICE that allows it; without, the scope
// changes nothing. Not copyable; per thread.
class ScopedNormalPriority {
 public:
  ScopedNormalPriority();
  ~ScopedNormalPriority();
  ScopedNormalPriority(const ScopedNormalPriority&) = delete;
  ScopedNormalPriority& operator=(const ScopedNormalPriority&) = delete;

 private:
  bool raised_ = false;
};

}  // namespace strata
