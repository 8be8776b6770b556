// Private to control/: the change-log capture of one instance, on its own
// thread. It polls the engine's capture (waking on every write to the log),
// numbers each committed transaction, ships them to the repository as log
// segments as soon as the writers pause and at most kFlushInterval after the
// commit under a steady load, and records in the
// catalog how far the log is durable: that is the instance's
// LatestRestorableTime.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "catalog/catalog.h"
#include "control/backup_store.h"
#include "control/change_log.h"
#include "engine/engine.h"

namespace strata::control {

inline constexpr auto kFlushInterval = std::chrono::milliseconds(200);
inline constexpr size_t kCompactAfterBytes = 16 << 20;
inline constexpr auto kCompactAfter = std::chrono::minutes(10);

class InstanceCapture {
 public:
  // Where the log stands: every transaction up to seq was seen by `time`.
  struct Mark {
    int64_t seq = 0;
    TimePoint time{};
  };
  // Called (on the capture thread) when continuity broke or a hole opened.
  using GapHandler = std::function<void(const catalog::LogGap&)>;

  InstanceCapture(std::string resource_id, std::unique_ptr<engine::ChangeCapture> capture, BackupStore* store,
                  catalog::Catalog* catalog, const Clock& clock, GapHandler on_gap);
  ~InstanceCapture();

  // Start and Stop may come in either order from different threads (an
  // instance deleted while its capture is being started): a Start after a
  // Stop starts nothing.
  void Start();
  // Stops the thread after shipping what it holds.
  void Stop();
  // Reads what is committed now, so that every commit made before the call
  // is numbered and stamped no later than now.
  Result<Mark> CatchUp();
  // Ships what is buffered now: every transaction numbered so far (every
  // Mark returned so far) is then in the repository's log segments.
  Status Flush();
  // Every commit up to this time is durable in the repository.
  TimePoint RestorableUntil();
  // Segments shipped on the flush interval are small (a fraction of a
  // second's log each). Once they are worth merging (kCompactAfterBytes of
  // them, or two or more the oldest of which is kCompactAfter old), returns
  // a time before which they all end, once; nullopt before that.
  std::optional<TimePoint> TakeCompaction();

 private:
  void Loop();
  Status PollLocked();
  Status FlushLocked(TimePoint polled_at);
  Status PersistLocked();

  const std::string resource_id_;
  std::unique_ptr<engine::ChangeCapture> capture_;
  BackupStore* store_;
  catalog::Catalog* catalog_;
  const Clock& clock_;
  GapHandler on_gap_;

  std::mutex mu_;
  std::vector<LogRecord> buffer_;
  size_t buffer_bytes_ = 0;
  std::string encoded_;  // the segment being stored, kept for the next one
  int64_t next_seq_ = 1;
  TimePoint durable_until_{};
  bool last_complete_ = true;
  TimePoint complete_until_{};  // the start of the last poll that returned everything committed before it
  TimePoint last_persist_{};
  std::chrono::steady_clock::time_point last_new_at_{};  // the last poll that brought transactions
  size_t small_bytes_ = 0;  // shipped in small segments since the last TakeCompaction
  int small_segments_ = 0;
  TimePoint first_small_at_{};
  bool resumed_ = false;
  bool first_poll_ = true;
  Status error_;

  std::atomic<bool> stop_{false};
  std::mutex lifecycle_mu_;  // orders Start against Stop; never held with mu_
  std::thread thread_;
};

}  // namespace strata::control
