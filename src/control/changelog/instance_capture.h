// Private to control/: the change-log capture of one instance. Its capture
// thread polls the engine's capture (waking on every write to the log),
// numbers each committed transaction and cuts log segments as soon as the
// writers pause, and at most kFlushInterval after the commit under a steady
// load. Its shipper thread stores them in the repository while the capture
// thread reads on (a backlog is received and compressed at once), and
// records in the catalog how far the log is durable: that is the
// instance's LatestRestorableTime.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "catalog/catalog.h"
#include "control/backup_store.h"
#include "control/changelog/log_record.h"
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
  // Stops the threads after shipping what they hold.
  void Stop();
  // Reads what is committed now, so that every commit made before the call
  // is numbered and stamped no later than now.
  Result<Mark> CatchUp();
  // Ships what is buffered now: every transaction numbered so far (every
  // Mark returned so far) is then in the repository's log segments.
  Status Flush();
  // Reads, ships and records what is committed now, so that RestorableUntil
  // covers every commit made (and every Mark taken) before the call, without
  // waiting for the next recording interval.
  Status Settle();
  // The instance's LatestRestorableTime: every commit up to this time is
  // durable in the repository, and this time is recorded in the catalog, so
  // it never goes back, not across a restart nor a crash.
  TimePoint RestorableUntil();
  // Every commit up to this time is durable in the repository (at or after
  // RestorableUntil, which follows it once recorded).
  TimePoint DurableUntil();
  // Segments shipped on the flush interval are small (a fraction of a
  // second's log each), and a drained backlog's large ones are compressed
  // at the live level. Once they are worth merging (kCompactAfterBytes of
  // small ones, or two or more of any size the oldest of which is
  // kCompactAfter old), returns a time before which they all end, once;
  // nullopt before that.
  std::optional<TimePoint> TakeCompaction();

 private:
  // A cut segment on its way to the repository, with where the log stands
  // once it is durable.
  struct Shipment {
    std::vector<LogRecord> records;
    std::string headers;  // the records' headers, which `pieces` point into
    std::vector<std::string_view> pieces;
    TimePoint first{}, last{};    // the commit times it spans
    TimePoint complete_until{};   // durable_until_ once it is stored
    std::string position;         // the engine's position after its last record
    int64_t last_seq = 0;
    size_t bytes = 0;             // its payload
    uint64_t stream_epoch = 0;    // stream_epoch_ when it was cut
  };

  void Loop();
  void ShipLoop();
  Status PollLocked(std::unique_lock<std::mutex>& lock);
  // Hands the buffer to the shipper once the segment before it is stored.
  // position: the engine's position after the buffered records; empty: now.
  Status FlushLocked(std::unique_lock<std::mutex>& lock, TimePoint polled_at, const std::string& position = "");
  // Waits until the first `cut` segments cut are stored; the shipper's
  // error if an attempt failed meanwhile.
  Status WaitShippedLocked(std::unique_lock<std::mutex>& lock, uint64_t cut);
  // Records where the log stands now; only with nothing buffered or in flight.
  Status PersistLocked();
  Status PersistLocked(const std::string& position, int64_t last_seq);

  const std::string resource_id_;
  std::unique_ptr<engine::ChangeCapture> capture_;
  BackupStore* store_;
  catalog::Catalog* catalog_;
  const Clock& clock_;
  GapHandler on_gap_;

  // poll_mu_ is held by whoever drives the engine's capture (the capture
  // thread, CatchUp, Flush, Stop), around its state changes under mu_; the
  // engine's Poll runs without mu_, so the shipper (mu_ only) stores and
  // records meanwhile. Order: poll_mu_, then mu_.
  std::mutex poll_mu_;
  std::mutex mu_;
  std::vector<LogRecord> buffer_;
  size_t buffer_bytes_ = 0;
  std::string durable_position_;  // recorded in the catalog; the engine is told before its next poll
  uint64_t stream_epoch_ = 0;     // gaps seen: a position from before the last one is not the engine's
  std::optional<Shipment> in_flight_;  // set by the capture side, cleared by the shipper once stored
  std::condition_variable ship_cv_;     // in_flight_ set, or the shipper is to stop
  std::condition_variable shipped_cv_;  // in_flight_ cleared, or an attempt failed
  uint64_t cut_ = 0;     // segments handed to the shipper
  uint64_t stored_ = 0;  // of which stored
  uint64_t ship_failures_ = 0;
  Status ship_error_;
  bool shipper_stop_ = false;
  int64_t next_seq_ = 1;
  TimePoint durable_until_{};
  TimePoint reported_until_{};  // durable_until_ as last recorded in the catalog
  size_t shipped_since_trim_ = 0;
  bool last_complete_ = true;
  bool last_brought_new_ = false;  // the last poll read transactions
  TimePoint complete_until_{};  // the start of the last poll that returned everything committed before it
  std::chrono::steady_clock::time_point last_persist_{};
  std::chrono::steady_clock::time_point last_new_at_{};  // the last poll that brought transactions
  size_t small_bytes_ = 0;  // shipped in small segments since the last TakeCompaction
  int unmerged_segments_ = 0;  // of any size, since the last TakeCompaction
  TimePoint first_unmerged_at_{};
  bool resumed_ = false;
  bool first_poll_ = true;
  Status error_;

  std::atomic<bool> stop_{false};
  std::mutex lifecycle_mu_;  // orders Start against Stop; never held with mu_
  std::thread thread_;
  std::thread shipper_;  // runs from construction to Stop
};

}  // namespace strata::control
