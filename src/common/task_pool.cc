#include "common/task_pool.h"

#include <sched.h>

#include <sys/resource.h>
#include <unistd.h>

namespace strata {

TaskPool::TaskPool(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

TaskPool::~TaskPool() { Shutdown(); }

bool TaskPool::Submit(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

void TaskPool::Shutdown() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void TaskPool::Run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

void RunAtBackgroundPriority(const std::function<void()>& fn) {
  std::thread t([&fn] {
    // SCHED_IDLE, not just nice +10: a woken database writer then preempts
    // these threads at once, instead of waiting out the scheduler's wakeup
    // granularity behind them. The policy applies to this thread and the
    // threads it starts; failure only means full priority.
    sched_param none{};
    if (::sched_setscheduler(0, SCHED_IDLE, &none) != 0) {
      (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
    }
    fn();
  });
  t.join();
}

ScopedNormalPriority::ScopedNormalPriority() {
  if (::sched_getscheduler(0) != SCHED_IDLE) return;
  sched_param none{};
  raised_ = ::sched_setscheduler(0, SCHED_OTHER, &none) == 0;
}

ScopedNormalPriority::~ScopedNormalPriority() {
  if (!raised_) return;
  sched_param none{};
  (void)::sched_setscheduler(0, SCHED_IDLE, &none);
}

}  // namespace strata
