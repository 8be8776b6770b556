// The change log of a postgres instance: its WAL, streamed over the
// replication protocol from a physical slot (as pg_receivewal does). The
// slot holds WAL on the server only until Strata has it durably (Durable()
// advances it); a capture too far behind loses the slot at
// max_slot_wal_keep_size, which shows up here as a gap.
//
// Poll asks the server where its WAL is flushed and reads the stream up to
// there, so every transaction that committed before Poll was called is in
// its batch. Records are stamped with when Strata received them, a little
// after the commits inside; recovery stops at the target by the commits'
// own timestamps (LogLookahead).
#include <poll.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "common/log.h"
#include "engine/postgres/pg_capture_format.h"
#include "engine/postgres/pg_cluster.h"
#include "engine/postgres/postgres_engine.h"

namespace strata::engine {
namespace {

using namespace pg;

constexpr size_t kMaxRecordBytes = 4 << 20;
// A backlog is handed out in batches of this much, so memory stays bounded.
constexpr size_t kMaxBatchBytes = 16 << 20;
constexpr auto kCatchUpDeadline = std::chrono::seconds(2);
constexpr auto kFeedbackInterval = std::chrono::seconds(1);
// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
constexpr int64_t kPostgresEpochUs = 946684800ll * 1000000;

uint64_t Be64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
void PutBe64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

struct WalPosition {
  uint32_t timeline = 0;
  uint64_t lsn = 0;
};

std::optional<WalPosition> ParsePosition(const std::string& text) {
  auto slash = text.find(':');
  if (slash == std::string::npos) return std::nullopt;
  auto lsn = ParseLsn(text.substr(slash + 1));
  if (!lsn.ok()) return std::nullopt;
  return WalPosition{static_cast<uint32_t>(std::stoul(text.substr(0, slash))), *lsn};
}

class PgCapture final : public ChangeCapture {
 public:
  PgCapture(InstanceSpec spec, const Clock& clock, std::optional<WalPosition> resume)
      : spec_(std::move(spec)), clock_(clock) {
    if (resume) {
      timeline_ = resume->timeline;
      received_ = returned_ = resume->lsn;
      durable_ = resume->lsn;
    } else {
      fresh_ = true;
    }
  }

  Result<CaptureBatch> Poll() override {
    if (!stream_) {
      Status st = OpenStream();
      if (!st.ok()) {
        stream_.reset();
        socket_ = -1;
        return st;
      }
    }
    // The stream is read first, whatever else fails: a server shutting down
    // refuses new sessions but waits for its WAL sender, which waits for
    // Strata to confirm the last WAL.
    if (Status st = Drain(); !st.ok()) return StreamBroken(st);
    bool complete = false;
    auto flushed = FlushedLsn();
    if (flushed.ok()) {
      flushed_ = *flushed;
      auto deadline = std::chrono::steady_clock::now() + kCatchUpDeadline;
      while (received_ < *flushed && pending_bytes_ < kMaxBatchBytes &&
             std::chrono::steady_clock::now() < deadline) {
        pollfd p{PQsocket(stream_.get()), POLLIN, 0};
        ::poll(&p, 1, 10);
        if (Status st = Drain(); !st.ok()) return StreamBroken(st);
      }
      complete = received_ >= *flushed;
    } else if (pending_.empty()) {
      // Not returned: a send fails only on a broken stream, which the next
      // Poll's Drain reports (and the stream is opened again).
      (void)SendFeedback(false);
      return flushed.status();
    }
    (void)SendFeedback(false);  // as above: the next Drain reports a broken stream

    CaptureBatch batch;
    batch.complete = complete;
    batch.gap = gap_;
    batch.gap_reason = gap_reason_;
    gap_ = false;
    TimePoint now = clock_.Now();
    for (auto& chunk : pending_) batch.transactions.push_back({now, std::move(chunk)});
    pending_.clear();
    pending_bytes_ = 0;
    returned_ = received_;
    return batch;
  }

  void WaitForChange(std::chrono::milliseconds wait) override {
    int fd = socket_.load();
    if (fd < 0) {
      std::this_thread::sleep_for(wait);
      return;
    }
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(wait.count()));
  }

  std::string Position() const override { return fmt::format("{}:{}", timeline_, FormatLsn(returned_)); }

  void Durable(const std::string& position) override {
    if (auto p = ParsePosition(position); p && p->lsn > durable_) durable_ = p->lsn;
  }

 private:
  Result<uint64_t> FlushedLsn() {
    if (!sql_) {
      ASSIGN_OR_RETURN(sql_, Connect(spec_, "postgres"));
    }
    auto text = QueryValue(sql_.get(), "SELECT pg_current_wal_flush_lsn()");
    if (!text.ok()) {
      sql_.reset();
      return text.status();
    }
    return ParseLsn(*text);
  }

  Status StreamBroken(const Status& st) {
    stream_.reset();
    socket_ = -1;
    return st;
  }

  // Opens the replication stream where the last one stopped, or (fresh, or
  // when the server no longer has that WAL) from a new slot, flagging a gap.
  Status OpenStream() {
    ASSIGN_OR_RETURN(stream_, Connect(spec_, "", /*replication=*/true));
    if (!fresh_) {
      Status st = StartReplication();
      if (st.ok()) return st;
      log::Warn("WAL stream cannot resume", {{"instance", spec_.id}, {"error", st.message()}});
      // A stream that would resume in WAL the server no longer has (or on a
      // slot that is gone) breaks continuity: start again from a new slot.
      gap_reason_ = "the WAL after " + FormatLsn(received_) + " is no longer on the server: " + st.message();
      ASSIGN_OR_RETURN(stream_, Connect(spec_, "", true));
    } else {
      gap_reason_ = "change-log capture started";
    }
    // Usually there is no slot to drop; any other failure shows in CREATE below.
    (void)Exec(stream_.get(), fmt::format("DROP_REPLICATION_SLOT {}", kCaptureSlot));
    RETURN_IF_ERROR(
        Exec(stream_.get(), fmt::format("CREATE_REPLICATION_SLOT {} PHYSICAL RESERVE_WAL", kCaptureSlot)).status());
    // The slot holds WAL from its restart point: the stream starts there.
    ASSIGN_OR_RETURN(auto slot, Exec(stream_.get(), fmt::format("READ_REPLICATION_SLOT {}", kCaptureSlot)));
    if (PQntuples(slot.get()) < 1 || PQgetisnull(slot.get(), 0, 1)) {
      return Status(errors::kInternalFailure, "the new replication slot reserves no WAL");
    }
    ASSIGN_OR_RETURN(uint64_t start, ParseLsn(PQgetvalue(slot.get(), 0, 1)));
    timeline_ = static_cast<uint32_t>(std::stoul(PQgetvalue(slot.get(), 0, 2)));
    received_ = returned_ = durable_ = start;
    pending_.clear();
    pending_bytes_ = 0;
    gap_ = true;
    fresh_ = false;
    return StartReplication();
  }

  Status StartReplication() {
    RETURN_IF_ERROR(Exec(stream_.get(), fmt::format("START_REPLICATION SLOT {} PHYSICAL {} TIMELINE {}", kCaptureSlot,
                                                    FormatLsn(received_), timeline_))
                        .status());
    socket_ = PQsocket(stream_.get());
    last_feedback_ = {};
    return Status::Ok();
  }

  // Reads the messages the server has sent so far (up to a batch's worth).
  Status Drain() {
    while (pending_bytes_ < kMaxBatchBytes) {
      char* buf = nullptr;
      int n = PQgetCopyData(stream_.get(), &buf, 1);
      if (n == 0) {
        if (!PQconsumeInput(stream_.get())) return StreamError();
        n = PQgetCopyData(stream_.get(), &buf, 1);
        if (n == 0) return Status::Ok();
      }
      if (n < 0) return StreamError();
      std::unique_ptr<char, decltype(&PQfreemem)> owned(buf, PQfreemem);
      if (buf[0] == 'w' && n >= 25) {
        uint64_t start = Be64(buf + 1);
        std::string_view data(buf + 25, static_cast<size_t>(n - 25));
        if (start < received_) {  // resent after a reconnect: keep what is new
          uint64_t skip = std::min<uint64_t>(received_ - start, data.size());
          data.remove_prefix(skip);
          start += skip;
        }
        if (start > received_) {
          return Status(errors::kInternalFailure, fmt::format("the WAL stream skipped from {} to {}",
                                                              FormatLsn(received_), FormatLsn(start)));
        }
        AppendWal(start, data);
        received_ = start + data.size();
      } else if (buf[0] == 'k' && n >= 18) {
        if (buf[17]) RETURN_IF_ERROR(SendFeedback(true));
      }
    }
    return Status::Ok();
  }

  // Received WAL goes straight into the records Poll hands out, WAL chunks
  // of at most kMaxRecordBytes built in place: a backlog's bytes are copied
  // once on their way from libpq to the repository's compressor.
  void AppendWal(uint64_t start, std::string_view data) {
    while (!data.empty()) {
      if (pending_.empty() || pending_.back().size() - kWalChunkHeaderBytes >= kMaxRecordBytes) {
        // Sized for what the server said it has (a backlog: whole records),
        // not more: a poll every few milliseconds under a light load must
        // not allocate a record's worth each time.
        const uint64_t expected = std::max<uint64_t>(data.size(), flushed_ > start ? flushed_ - start : 0);
        pending_.push_back(EncodeWalChunk(timeline_, start, {}));
        pending_.back().reserve(kWalChunkHeaderBytes + std::min<uint64_t>(kMaxRecordBytes, expected));
      }
      std::string& chunk = pending_.back();
      size_t n = std::min(data.size(), kMaxRecordBytes - (chunk.size() - kWalChunkHeaderBytes));
      chunk.append(data.substr(0, n));
      data.remove_prefix(n);
      start += n;
      pending_bytes_ += n;
    }
  }

  Status StreamError() {
    std::string msg = TrimMessage(PQerrorMessage(stream_.get()));
    return Status(errors::kServiceUnavailable,
                  fmt::format("the WAL stream of {} ended: {}", spec_.id, msg.empty() ? "server closed it" : msg));
  }

  // Tells the server what Strata holds durably, which moves the slot on.
  Status SendFeedback(bool now) {
    auto t = std::chrono::steady_clock::now();
    if (!now && t - last_feedback_ < kFeedbackInterval) return Status::Ok();
    last_feedback_ = t;
    std::string msg = "r";
    uint64_t durable = std::min<uint64_t>(durable_, received_);
    PutBe64(msg, received_);
    PutBe64(msg, durable);
    PutBe64(msg, durable);
    int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
    PutBe64(msg, static_cast<uint64_t>(us - kPostgresEpochUs));
    msg.push_back(0);
    if (PQputCopyData(stream_.get(), msg.data(), static_cast<int>(msg.size())) != 1 || PQflush(stream_.get()) != 0) {
      return StreamError();
    }
    return Status::Ok();
  }

  InstanceSpec spec_;
  const Clock& clock_;
  Conn stream_, sql_;
  std::atomic<int> socket_{-1};
  bool fresh_ = false;
  bool gap_ = false;
  std::string gap_reason_;
  uint32_t timeline_ = 1;
  uint64_t received_ = 0;  // end of the WAL read from the stream
  uint64_t returned_ = 0;  // end of the WAL handed out by Poll
  uint64_t durable_ = 0;   // end of the WAL the repository holds
  uint64_t flushed_ = 0;   // the server's flushed WAL at the last poll
  std::vector<std::string> pending_;  // read, not yet handed out: WAL chunks
  size_t pending_bytes_ = 0;
  std::chrono::steady_clock::time_point last_feedback_{};
};

}  // namespace

Result<std::unique_ptr<ChangeCapture>> PostgresEngine::StartCapture(const InstanceSpec& spec, const Clock& clock,
                                                                    const std::string& position) {
  std::optional<WalPosition> resume;
  if (!position.empty()) {
    resume = ParsePosition(position);
    if (!resume) log::Warn("unreadable capture position: starting afresh", {{"position", position}});
  }
  return std::unique_ptr<ChangeCapture>(new PgCapture(spec, clock, resume));
}

}  // namespace strata::engine
