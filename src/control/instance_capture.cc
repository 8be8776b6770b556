#include "control/instance_capture.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/log.h"

namespace strata::control {
namespace {

constexpr size_t kMaxSegmentBytes = 16 << 20;
constexpr auto kPersistInterval = std::chrono::milliseconds(500);
constexpr auto kPollWait = std::chrono::milliseconds(100);
// While commits wait in the buffer the capture polls this often, and once
// nothing new has come for kQuietAfter the writers paused: what is buffered
// is shipped at once. (A poll that merely falls between two commits of a
// busy writer must not ship: that would be a segment per commit.)
constexpr auto kBufferedPollWait = std::chrono::milliseconds(10);
constexpr auto kQuietAfter = std::chrono::milliseconds(20);

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
    complete_until_ = durable_until_;
    resumed_ = !ab->capture_position.empty();
  }
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
  std::lock_guard lock(mu_);
  Status st = buffer_.empty() ? PersistLocked() : FlushLocked(complete_until_);
  if (!st.ok()) log::Warn("change-log capture stop", {{"resource", resource_id_}, {"error", st.ToString()}});
}

void InstanceCapture::Loop() {
  for (;;) {
    if (stop_) return;
    bool buffered = false;
    {
      std::lock_guard lock(mu_);
      Status st = PollLocked();
      if (!st.ok() && st.ToString() != error_.ToString()) {
        log::Error("change-log capture failed", {{"resource", resource_id_}, {"error", st.ToString()}});
      }
      error_ = st;
      buffered = !buffer_.empty();
    }
    capture_->WaitForChange(buffered ? kBufferedPollWait : kPollWait);
  }
}

Result<InstanceCapture::Mark> InstanceCapture::CatchUp() {
  std::lock_guard lock(mu_);
  RETURN_IF_ERROR(PollLocked());
  // A backlog comes in several batches: read on until one is complete.
  for (int i = 0; i < 64 && !last_complete_; ++i) RETURN_IF_ERROR(PollLocked());
  // Stamps of this poll's transactions are at most the time after it.
  return Mark{next_seq_ - 1, clock_.Now()};
}

Status InstanceCapture::Flush() {
  std::lock_guard lock(mu_);
  if (buffer_.empty()) return Status::Ok();
  return FlushLocked(complete_until_);
}

TimePoint InstanceCapture::RestorableUntil() {
  std::lock_guard lock(mu_);
  return durable_until_;
}

Status InstanceCapture::PollLocked() {
  // Every commit made before `now` is in this batch or an earlier one.
  TimePoint now = clock_.Now();
  ASSIGN_OR_RETURN(auto batch, capture_->Poll());
  if (batch.gap) {
    if (!buffer_.empty()) RETURN_IF_ERROR(FlushLocked(complete_until_));
    catalog::LogGap gap{durable_until_, now, true, batch.gap_reason};
    log::Warn("change-log continuity broken", {{"resource", resource_id_}, {"reason", batch.gap_reason}});
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
  const bool quiet = batch.transactions.empty() && polled - last_new_at_ >= kQuietAfter;
  for (auto& t : batch.transactions) {
    buffer_bytes_ += t.redo.size();
    buffer_.push_back({next_seq_++, t.commit_time, std::move(t.redo)});
  }
  // Only a complete batch says every commit before `now` is in hand.
  last_complete_ = batch.complete;
  if (batch.complete) complete_until_ = now;
  if (buffer_.empty()) {
    durable_until_ = std::max(durable_until_, complete_until_);  // nothing new: the log is complete up to the last complete poll
  } else if (!batch.complete || quiet || now - buffer_.front().time >= kFlushInterval ||
             buffer_bytes_ >= kMaxSegmentBytes) {
    // Shipped when the writers pause, or at the latest kFlushInterval after
    // the oldest commit waiting.
    RETURN_IF_ERROR(FlushLocked(complete_until_));
  }
  if (now - last_persist_ >= kPersistInterval && buffer_.empty()) RETURN_IF_ERROR(PersistLocked());
  return Status::Ok();
}

Status InstanceCapture::FlushLocked(TimePoint polled_at) {
  EncodeLogRecords(buffer_, encoded_);
  RETURN_IF_ERROR(store_->PutLogSegment(resource_id_, buffer_.front().time, buffer_.back().time, encoded_));
  if (encoded_.size() < kMaxSegmentBytes / 2) {
    if (small_segments_++ == 0) first_small_at_ = clock_.Now();
    small_bytes_ += encoded_.size();
  }
  buffer_.clear();
  buffer_bytes_ = 0;
  durable_until_ = std::max(durable_until_, polled_at);
  return PersistLocked();
}

std::optional<TimePoint> InstanceCapture::TakeCompaction() {
  std::lock_guard lock(mu_);
  TimePoint now = clock_.Now();
  const bool due = small_bytes_ >= kCompactAfterBytes || (small_segments_ >= 2 && now - first_small_at_ >= kCompactAfter);
  if (!due) return std::nullopt;
  small_bytes_ = 0;
  small_segments_ = 0;
  return now;
}

Status InstanceCapture::PersistLocked() {
  last_persist_ = clock_.Now();
  // Only called with nothing buffered: the position is durable in the repository.
  std::string position = capture_->Position();
  RETURN_IF_ERROR(catalog_->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto ab, catalog_->GetAutomatedBackup(resource_id_));
    ab.capture_position = position;
    ab.last_seq = next_seq_ - 1;
    ab.restorable_until = durable_until_;
    return catalog_->PutAutomatedBackup(ab);
  }));
  // Recorded where a restart resumes: the engine may drop its log up to here.
  capture_->Durable(position);
  return Status::Ok();
}

}  // namespace strata::control
