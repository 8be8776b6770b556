#include "control/changelog/instance_capture.h"

#include <thread>

#include <fmt/format.h>

#include <malloc.h>

#include <algorithm>

#include "common/error_codes.h"
#include "common/log.h"

namespace strata::control {
namespace {

Status Stopped() { return Status(errors::kServiceUnavailable, "the change-log capture has stopped"); }

constexpr size_t kMaxSegmentBytes = 16 << 20;
constexpr auto kPersistInterval = std::chrono::milliseconds(500);
constexpr auto kPollWait = std::chrono::milliseconds(100);
// While commits wait in the buffer the capture polls this often, and once
// nothing new has come for kQuietAfter the writers paused: what is buffered
// is shipped at once. (A poll that merely falls between two commits of a
// busy writer must not ship: that would be a segment per commit.)
constexpr auto kBufferedPollWait = std::chrono::milliseconds(10);
constexpr auto kQuietAfter = std::chrono::milliseconds(20);
// A failed store is tried again after this; the capture thread meanwhile
// waits (a PostgreSQL server keeps the WAL in its slot, SQLite in its WAL).
constexpr auto kShipRetry = std::chrono::seconds(1);
// A snapshot's marks need the capture to have read everything committed
// before them; a capture far behind catches up in bounded batches, up to this.
constexpr auto kCatchUpDeadline = std::chrono::minutes(10);
// Past this many bytes shipped since memory was last handed back, the
// allocator returns its free pages to the system (a burst's buffers would
// otherwise stay in the process's arenas).
constexpr size_t kTrimAfterBytes = 64 << 20;
// ... or once a burst of at least this much has been shipped and nothing is buffered.
constexpr size_t kTrimAfterBurstBytes = 4 << 20;

}  // namespace

InstanceCapture::InstanceCapture(std::string resource_id, std::unique_ptr<engine::ChangeCapture> capture,
                                 BackupStore* store, catalog::Catalog* catalog, const Clock& clock,
                                 GapHandler on_gap)
    : resource_id_(std::move(resource_id)),
      capture_(std::move(capture)),
      store_(store),
      catalog_(catalog),
      clock_(clock),
      on_gap_(std::move(on_gap)) {
  if (auto ab = catalog_->GetAutomatedBackup(resource_id_); ab.ok()) {
    next_seq_ = ab->last_seq + 1;
    durable_until_ = ab->restorable_until;
    reported_until_ = durable_until_;
    complete_until_ = durable_until_;
    resumed_ = !ab->capture_position.empty();
  }
  shipper_ = std::thread([this] { ShipLoop(); });
}

InstanceCapture::~InstanceCapture() { Stop(); }

void InstanceCapture::Start() {
  std::lock_guard lifecycle(lifecycle_mu_);
  if (stop_) return;
  thread_ = std::thread([this] { Loop(); });
}

void InstanceCapture::Stop() {
  std::thread running;
  {
    std::lock_guard lifecycle(lifecycle_mu_);
    if (stop_.exchange(true)) return;
    running = std::move(thread_);
  }
  if (running.joinable()) running.join();
  std::lock_guard poll(poll_mu_);
  std::unique_lock lock(mu_);
  Status st = buffer_.empty() ? Status::Ok() : FlushLocked(lock, complete_until_);
  if (st.ok()) st = WaitShippedLocked(lock, cut_);
  shipper_stop_ = true;
  ship_cv_.notify_all();
  shipped_cv_.notify_all();
  lock.unlock();
  shipper_.join();
  lock.lock();
  if (st.ok()) st = PersistLocked();
  // What was not stored is read again on the next start: the persisted
  // position stops before it.
  if (!st.ok()) log::Warn("change-log capture stop", {{"resource", resource_id_}, {"error", st.ToString()}});
}

void InstanceCapture::Loop() {
  for (;;) {
    if (stop_) return;
    bool buffered = false, failed = false;
    {
      std::lock_guard poll(poll_mu_);
      std::unique_lock lock(mu_);
      Status st = PollLocked(lock);
      if (!st.ok() && st.ToString() != error_.ToString()) {
        log::Error("change-log capture failed", {{"resource", resource_id_}, {"error", st.ToString()}});
      }
      error_ = st;
      failed = !st.ok();
      buffered = !buffer_.empty();
      // Behind (a batch stopped short of the log's end, with commits in it):
      // read on at once.
      if (st.ok() && !last_complete_ && last_brought_new_) continue;
    }
    if (failed) {
      // A failed read (the server down, restarting or shutting down) is tried
      // again a poll interval later, not at once: a socket at EOF is always
      // "ready", and a connection attempt a few microseconds apart keeps a
      // PostgreSQL server that is shutting down forking backends, so it
      // never finishes its shutdown.
      std::this_thread::sleep_for(kPollWait);
      continue;
    }
    capture_->WaitForChange(buffered ? kBufferedPollWait : kPollWait);
  }
}

Result<InstanceCapture::Mark> InstanceCapture::CatchUp() {
  std::lock_guard poll(poll_mu_);
  std::unique_lock lock(mu_);
  RETURN_IF_ERROR(PollLocked(lock));
  // A backlog comes in several bounded batches: read on until one is
  // complete (a mark must follow every commit made before the call).
  const auto deadline = std::chrono::steady_clock::now() + kCatchUpDeadline;
  while (!last_complete_) {
    if (std::chrono::steady_clock::now() > deadline) {
      return Status(errors::kServiceUnavailable, "the change-log capture is still catching up with the writers");
    }
    RETURN_IF_ERROR(PollLocked(lock));
  }
  // Stamps of this poll's transactions are at most the time after it.
  return Mark{next_seq_ - 1, clock_.Now()};
}

Status InstanceCapture::Flush() {
  std::unique_lock poll(poll_mu_);
  std::unique_lock lock(mu_);
  if (!buffer_.empty()) RETURN_IF_ERROR(FlushLocked(lock, complete_until_));
  const uint64_t cut = cut_;
  poll.unlock();  // the capture reads on while this waits
  return WaitShippedLocked(lock, cut);
}

Status InstanceCapture::Settle() {
  RETURN_IF_ERROR(CatchUp().status());
  RETURN_IF_ERROR(Flush());
  std::lock_guard poll(poll_mu_);
  std::unique_lock lock(mu_);
  // Commits since the flush stay for the shipper; what it holds is complete
  // up to the catch-up, which is all a caller before it can ask for.
  if (!buffer_.empty() || in_flight_) return Status::Ok();
  durable_until_ = std::max(durable_until_, complete_until_);
  return PersistLocked();
}

TimePoint InstanceCapture::RestorableUntil() {
  std::lock_guard lock(mu_);
  return reported_until_;
}

TimePoint InstanceCapture::DurableUntil() {
  std::lock_guard lock(mu_);
  return durable_until_;
}

Status InstanceCapture::PollLocked(std::unique_lock<std::mutex>& lock) {
  // What is read now could no longer be stored.
  if (shipper_stop_) return Stopped();
  // A full buffer behind a segment not yet stored (the store is failing):
  // the engine keeps its log rather than this process's memory growing.
  if (in_flight_ && buffer_bytes_ >= kMaxSegmentBytes) return WaitShippedLocked(lock, cut_);
  // Every commit made before `now` is in this batch or an earlier one.
  TimePoint now = clock_.Now();
  // Where the buffered records end, should this poll break continuity.
  const std::string buffered_until = buffer_.empty() ? "" : capture_->Position();
  if (!durable_position_.empty()) capture_->Durable(std::exchange(durable_position_, ""));
  // The shipper stores (and records) meanwhile.
  lock.unlock();
  auto polled_batch = capture_->Poll();
  lock.lock();
  if (!polled_batch.ok() && !buffer_.empty()) {
    // A failed read still sends what is buffered on to the repository: a
    // PostgreSQL server shutting down refuses new sessions (so polls fail)
    // but waits until Strata confirms the last WAL it sent as durable.
    if (Status st = FlushLocked(lock, complete_until_); !st.ok()) {
      log::Warn("change-log segment not cut after a failed read", {{"resource", resource_id_}, {"error", st.ToString()}});
    }
  }
  ASSIGN_OR_RETURN(auto batch, std::move(polled_batch));
  if (batch.gap) {
    // What is buffered goes in a segment of its own (unless the shipper is
    // failing: then the next one holds both sides), and the engine is not
    // told of the old stream's positions any more.
    if (!buffer_.empty()) {
      if (Status st = FlushLocked(lock, complete_until_, buffered_until); !st.ok()) {
        log::Warn("change-log segment before a gap not cut", {{"resource", resource_id_}, {"error", st.ToString()}});
      }
    }
    ++stream_epoch_;
    durable_position_.clear();
    // The log was whole up to the last complete poll: the gap starts there.
    catalog::LogGap gap{std::max(durable_until_, complete_until_), now, true, batch.gap_reason};
    if (first_poll_ && !resumed_) {
      // A log with no past (a new instance, backups just turned on) starts
      // here: nothing is broken.
      log::Info("change-log started", {{"resource", resource_id_}});
    } else {
      log::Warn("change-log continuity broken", {{"resource", resource_id_}, {"reason", batch.gap_reason}});
    }
    if (on_gap_) on_gap_(gap);
  } else if (first_poll_ && resumed_ && !batch.transactions.empty()) {
    // Commits made while capture was not running are all here, but when
    // they were made is unknown: restores between the two points are refused.
    catalog::LogGap hole{durable_until_, now, false,
                         "transactions committed while Strata was not capturing; their times are unknown"};
    if (on_gap_) on_gap_(hole);
  }
  first_poll_ = false;
  // Paused: nothing new for kQuietAfter (real time, whatever the clock).
  const auto polled = std::chrono::steady_clock::now();
  if (!batch.transactions.empty()) last_new_at_ = polled;
  last_brought_new_ = !batch.transactions.empty();
  const bool quiet = batch.transactions.empty() && polled - last_new_at_ >= kQuietAfter;
  for (auto& t : batch.transactions) {
    buffer_bytes_ += t.redo.size();
    buffer_.push_back({next_seq_++, t.commit_time, std::move(t.redo)});
  }
  // Only a complete batch says every commit before `now` is in hand.
  last_complete_ = batch.complete;
  if (batch.complete) complete_until_ = now;
  if (buffer_.empty()) {
    // Nothing new: once nothing is in flight either, the log is complete up to the last complete poll.
    if (!in_flight_) durable_until_ = std::max(durable_until_, complete_until_);
  } else if (quiet || now - buffer_.front().time >= kFlushInterval || buffer_bytes_ >= kMaxSegmentBytes) {
    // Shipped when the writers pause, or at the latest kFlushInterval after
    // the oldest commit waiting.
    RETURN_IF_ERROR(FlushLocked(lock, complete_until_));
  }
  // The restorable time reported is the one recorded (see RestorableUntil),
  // so it follows durable_until_ at most kPersistInterval behind.
  // (Paced in real time: it bounds the catalog's writes, and an injected
  // clock that stands still must not hold the reported time back.)
  if (polled - last_persist_ >= kPersistInterval && buffer_.empty() && !in_flight_) RETURN_IF_ERROR(PersistLocked());
  return Status::Ok();
}

Status InstanceCapture::FlushLocked(std::unique_lock<std::mutex>& lock, TimePoint polled_at,
                                    const std::string& position) {
  // One segment stores while the next fills; segments are stored in order.
  RETURN_IF_ERROR(WaitShippedLocked(lock, cut_));
  if (shipper_stop_) return Stopped();
  // Built in place: the pieces point into the shipment's own records and headers.
  Shipment& s = in_flight_.emplace();
  s.first = buffer_.front().time;
  s.last = buffer_.back().time;
  s.records = std::move(buffer_);
  buffer_.clear();
  s.pieces = LogRecordPieces(s.records, s.headers);
  s.bytes = s.headers.size() + buffer_bytes_;
  s.stream_epoch = stream_epoch_;
  s.complete_until = polled_at;
  s.position = position.empty() ? capture_->Position() : position;
  s.last_seq = next_seq_ - 1;
  buffer_bytes_ = 0;
  ++cut_;
  ship_cv_.notify_all();
  return Status::Ok();
}

Status InstanceCapture::WaitShippedLocked(std::unique_lock<std::mutex>& lock, uint64_t cut) {
  const uint64_t failures = ship_failures_;
  shipped_cv_.wait(lock, [&] { return stored_ >= cut || ship_failures_ != failures || shipper_stop_; });
  if (stored_ >= cut) return Status::Ok();
  return ship_failures_ != failures ? ship_error_ : Stopped();
}

void InstanceCapture::ShipLoop() {
  std::unique_lock lock(mu_);
  for (;;) {
    ship_cv_.wait(lock, [&] { return in_flight_ || shipper_stop_; });
    if (!in_flight_) return;
    // Only this thread changes in_flight_ while it is set.
    const Shipment& s = *in_flight_;
    lock.unlock();
    Status st = store_->PutLogSegment(resource_id_, s.first, s.last, s.pieces);
    lock.lock();
    if (st.ok()) {
      Shipment stored = std::move(*in_flight_);
      in_flight_.reset();
      shipped_since_trim_ += stored.bytes;
      ++stored_;
      durable_until_ = std::max(durable_until_, stored.complete_until);
      if (unmerged_segments_++ == 0) first_unmerged_at_ = clock_.Now();
      if (stored.bytes < kMaxSegmentBytes / 2) small_bytes_ += stored.bytes;
      if (Status persisted = PersistLocked(stored.position, stored.last_seq); !persisted.ok()) {
        log::Warn("change-log position not recorded", {{"resource", resource_id_}, {"error", persisted.ToString()}});
      } else if (stored.stream_epoch == stream_epoch_) {
        // Recorded where a restart resumes: the engine may drop its log up
        // to here (told on the polling side, which alone drives the engine),
        // unless the position is of a stream a gap has since replaced.
        durable_position_ = stored.position;
      }
      shipped_cv_.notify_all();
      if (shipped_since_trim_ >= kTrimAfterBytes || (shipped_since_trim_ >= kTrimAfterBurstBytes && buffer_.empty())) {
        // A burst's buffers (its records, this segment) go back to the system.
        shipped_since_trim_ = 0;
        stored = Shipment{};
        lock.unlock();
        malloc_trim(0);
        lock.lock();
      }
      continue;
    }
    ++ship_failures_;
    if (st.ToString() != ship_error_.ToString()) {
      log::Error("change-log segment not stored", {{"resource", resource_id_}, {"error", st.ToString()}});
    }
    ship_error_ = st;
    shipped_cv_.notify_all();
    if (shipper_stop_) return;
    ship_cv_.wait_for(lock, kShipRetry, [&] { return shipper_stop_; });
  }
}

std::optional<TimePoint> InstanceCapture::TakeCompaction() {
  std::lock_guard lock(mu_);
  TimePoint now = clock_.Now();
  const bool due =
      small_bytes_ >= kCompactAfterBytes || (unmerged_segments_ >= 2 && now - first_unmerged_at_ >= kCompactAfter);
  if (!due) return std::nullopt;
  small_bytes_ = 0;
  unmerged_segments_ = 0;
  return now;
}

Status InstanceCapture::PersistLocked() {
  // Nothing buffered or in flight: the engine's position is durable in the repository.
  if (!buffer_.empty() || in_flight_) return Status::Ok();
  std::string position = capture_->Position();
  RETURN_IF_ERROR(PersistLocked(position, next_seq_ - 1));
  durable_position_.clear();
  capture_->Durable(position);
  return Status::Ok();
}

Status InstanceCapture::PersistLocked(const std::string& position, int64_t last_seq) {
  last_persist_ = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(catalog_->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto ab, catalog_->GetAutomatedBackup(resource_id_));
    ab.capture_position = position;
    ab.last_seq = last_seq;
    // Never back: what was reported is at or before what is recorded.
    ab.restorable_until = std::max(ab.restorable_until, durable_until_);
    return catalog_->PutAutomatedBackup(ab);
  }));
  // Reported only once recorded: a restart (or a crash) resumes from here.
  reported_until_ = std::max(reported_until_, durable_until_);
  return Status::Ok();
}

}  // namespace strata::control
