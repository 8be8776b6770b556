#include "repo/workers.h"

#include <algorithm>

namespace strata::repo {

Workers::Workers(int threads) {
  for (int t = 1; t < threads; ++t) helpers_.emplace_back([this, t] { Help(static_cast<size_t>(t)); });
}

Workers::~Workers() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : helpers_) t.join();
}

void Workers::For(size_t n, const std::function<void(size_t, size_t)>& fn, size_t serial_below) {
  if (helpers_.empty() || n < serial_below) {
    fn(0, n);
    return;
  }
  const size_t per = (n + threads() - 1) / threads();
  {
    std::lock_guard lock(mu_);
    job_ = &fn;
    n_ = n;
    per_ = per;
    running_ = helpers_.size();
    ++generation_;
  }
  wake_.notify_all();
  fn(0, std::min(n, per));
  std::unique_lock lock(mu_);
  done_.wait(lock, [this] { return running_ == 0; });
  job_ = nullptr;
}

void Workers::Help(size_t helper) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(size_t, size_t)>* job;
    size_t begin, end;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      job = job_;
      begin = std::min(n_, helper * per_);
      end = std::min(n_, begin + per_);
    }
    if (begin < end) (*job)(begin, end);
    {
      std::lock_guard lock(mu_);
      if (--running_ == 0) done_.notify_one();
    }
  }
}

}  // namespace strata::repo
