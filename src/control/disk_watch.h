// Private to control/: the scheduler's disk watch. Below the low-water mark
// (common/disk_space.h) it sets Context::disk_paused, which pauses automatic
// work that grows files, and says so in events; restores found under way at
// start while the disk was low wait here until space returns.
#pragma once

#include <functional>
#include <mutex>
#include <vector>

#include "control/context.h"

namespace strata::control {

class DiskWatch {
 public:
  using ResumeRestore = std::function<void(const catalog::InstanceRecord&)>;
  DiskWatch(Context& ctx, ResumeRestore resume) : ctx_(ctx), resume_(std::move(resume)) {}

  void RegisterJobs(scheduler::Scheduler& scheduler);
  // Whether the disk is below its low-water mark now (false without a guard).
  bool Low() const;
  // A restore to resume once space returns, not now, where it would take
  // what the operator freed for deletes.
  void DeferRestore(const catalog::InstanceRecord& r);
  // One look at the disk (the job).
  void Watch();

 private:
  Context& ctx_;
  ResumeRestore resume_;
  std::mutex mu_;
  std::vector<catalog::InstanceRecord> deferred_;  // under mu_
};

}  // namespace strata::control
