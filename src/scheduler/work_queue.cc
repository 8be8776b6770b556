#include "scheduler/work_queue.h"

namespace strata::scheduler {

bool WorkQueue::Enqueue(const std::string& key, std::function<void()> work) {
  {
    std::lock_guard lock(mu_);
    if (!queued_.insert(key).second) return false;
  }
  bool submitted = pool_.Submit([this, key, work = std::move(work)] {
    {
      std::lock_guard lock(mu_);
      queued_.erase(key);
    }
    work();
  });
  if (!submitted) {
    std::lock_guard lock(mu_);
    queued_.erase(key);
  }
  return submitted;
}

}  // namespace strata::scheduler
