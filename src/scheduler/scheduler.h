// scheduler/: the one place that wakes things on time. Control's modules
// register jobs (change-log captures, daily automated snapshots in backup
// windows, retention expiry, the disk watch); AWS Backup rules and
// EventBridge schedules register the same way. Jobs read time from the
// injectable Clock (common/clock.h), so a test moves a ManualClock and runs
// a pass (RunOnce) to see days of schedules in seconds.
//
// A pass runs every due job, in the order registered, on the thread that
// runs the pass. The scheduler's own thread runs one every wake interval of
// real time, or at once when notified (work that just became due: a log
// break needs a new base, backups were turned on). Long work does not
// belong in a job: a job queues it on a worker pool (see WorkQueue).
//
// Thread safety: every method may be called from any thread; register jobs
// before Start.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "common/clock.h"

namespace strata::scheduler {

// A job, given the clock's time at the start of the pass.
using Job = std::function<void(TimePoint now)>;

class Scheduler {
 public:
  explicit Scheduler(const Clock& clock,
                     std::chrono::milliseconds wake_interval = std::chrono::seconds(1));
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // A due check run on every pass: the job itself decides, from the time
  // and its records (a backup window, a retention period), what is due.
  void EveryPass(std::string name, Job job);
  // Run on the first pass at or after each `period` of clock time, the
  // first at `first_due`.
  void Every(std::string name, std::chrono::microseconds period, TimePoint first_due, Job job);

  // Starts the thread that runs passes; Stop waits for a pass under way.
  void Start();
  void Stop();
  // One pass now, on the calling thread; passes never overlap.
  void RunOnce();
  // Wakes the thread for a pass now (no-op before Start / after Stop).
  void Notify();

 private:
  struct Entry {
    std::string name;
    Job job;
    std::chrono::microseconds period{0};  // 0: every pass
    TimePoint next_due{};
  };

  const Clock& clock_;
  const std::chrono::milliseconds wake_interval_;
  std::mutex jobs_mu_;
  std::deque<Entry> jobs_;  // under jobs_mu_; a deque: entries stay put while a pass runs them
  std::mutex pass_mu_;      // one pass at a time
  std::mutex wake_mu_;
  std::condition_variable wake_cv_;
  bool stop_ = false;   // under wake_mu_
  bool woken_ = false;  // under wake_mu_
  std::thread thread_;
};

}  // namespace strata::scheduler
