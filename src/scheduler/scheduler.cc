#include "scheduler/scheduler.h"

#include <algorithm>

namespace strata::scheduler {

Scheduler::Scheduler(const Clock& clock, std::chrono::milliseconds wake_interval)
    : clock_(clock), wake_interval_(wake_interval) {}

Scheduler::~Scheduler() { Stop(); }

void Scheduler::EveryPass(std::string name, Job job) {
  std::lock_guard lock(jobs_mu_);
  jobs_.push_back(
      Entry{std::move(name), std::move(job), std::chrono::microseconds(0), TimePoint{}});
}

void Scheduler::Every(std::string name, std::chrono::microseconds period, TimePoint first_due,
                      Job job) {
  std::lock_guard lock(jobs_mu_);
  jobs_.push_back(Entry{std::move(name), std::move(job),
                        std::max(period, std::chrono::microseconds(1)), first_due});
}

void Scheduler::RunOnce() {
  std::lock_guard pass(pass_mu_);
  std::vector<Entry*> due;
  TimePoint now = clock_.Now();
  {
    std::lock_guard lock(jobs_mu_);
    for (auto& e : jobs_) {
      if (e.period.count() == 0) {
        due.push_back(&e);
      } else if (now >= e.next_due) {
        // Once per pass however far the clock jumped: a missed run is not replayed.
        while (e.next_due <= now) e.next_due += e.period;
        due.push_back(&e);
      }
    }
  }
  // Entries are only appended, never removed, and a deque keeps them in
  // place: the pointers stay valid through the pass.
  for (Entry* e : due) e->job(now);
}

void Scheduler::Start() {
  std::lock_guard lock(wake_mu_);
  if (thread_.joinable() || stop_) return;
  thread_ = std::thread([this] {
    std::unique_lock lock(wake_mu_);
    while (!stop_) {
      woken_ = false;
      lock.unlock();
      RunOnce();
      lock.lock();
      wake_cv_.wait_for(lock, wake_interval_, [this] { return stop_ || woken_; });
    }
  });
}

void Scheduler::Stop() {
  {
    std::lock_guard lock(wake_mu_);
    stop_ = true;
  }
  wake_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::Notify() {
  {
    std::lock_guard lock(wake_mu_);
    woken_ = true;
  }
  wake_cv_.notify_all();
}

}  // namespace strata::scheduler
