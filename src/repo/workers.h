// A fork-join pool for one repository operation (a snapshot, a restore, a
// garbage collection): the work of a batch is cut into contiguous stripes,
// one per thread, the first run by the caller.
//
// Why not a thread per batch: a new thread starts with nothing, so every
// batch paid again for its zstd context, its compression and frame buffers
// and its stack, all fresh memory, and fresh memory is page faults and
// zeroing (on the 2-core VM the benchmarks run on, about 19 us per 4 KiB
// page, more than compressing it). Workers live as long as the operation,
// so their thread-local state stays warm from batch to batch; and started by
// the operation's thread, they inherit its CPU priority (a snapshot's
// SCHED_IDLE).
//
// Thread safety: For() is called by the thread that made the Workers, one
// call at a time; fn runs on every worker at once and must be safe so.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace strata::repo {

class Workers {
 public:
  // `threads` in all, the caller included: threads - 1 helpers are started.
  explicit Workers(int threads);
  ~Workers();
  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  int threads() const { return static_cast<int>(helpers_.size()) + 1; }

  // Runs fn(begin, end) over stripes of [0, n), one per thread, and returns
  // when every stripe is done. Below `serial_below` items everything runs on
  // the caller: handing out little work costs more than it saves.
  void For(size_t n, const std::function<void(size_t begin, size_t end)>& fn, size_t serial_below = 64);

 private:
  void Help(size_t helper);

  std::vector<std::thread> helpers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(size_t, size_t)>* job_ = nullptr;
  size_t n_ = 0;
  size_t per_ = 0;
  uint64_t generation_ = 0;
  size_t running_ = 0;
  bool stopping_ = false;
};

}  // namespace strata::repo
