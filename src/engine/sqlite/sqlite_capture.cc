// Change-log capture for SQLite in WAL mode, and its replay.
//
// What keeps capture from missing a commit. SQLite appends every commit's
// pages to the WAL; a checkpoint copies them into the database file, and the
// next writer after a complete checkpoint restarts the WAL from its start
// (salt1 + 1, a new salt2), overwriting what was there. The capture holds a
// read transaction at all times (when it moves its read mark, a guard
// transaction on another connection stands in):
//  - on a read mark > 0 it forbids the restart, so frames it has not read stay;
//  - on read mark 0 (taken when the WAL was fully checkpointed) it forbids
//    checkpointing at all, so new frames cannot be checkpointed and then lost
//    in a restart.
// So no frame can disappear before the capture has read it. To keep the WAL
// bounded the capture checkpoints it itself once it passes kCheckpointFrames:
//   1. without blocking writers: read to the end, move the read mark there,
//      checkpoint (PASSIVE) up to it. If that copied everything, move the mark
//      again (now to 0, which allows the restart) and, if nothing was
//      committed meanwhile, accept the next restart as continuous.
//   2. only if writers never pause long enough for 1 and the WAL passes
//      kForceCheckpointFrames: take the write lock (BEGIN IMMEDIATE), read to
//      the end, release the mark, checkpoint the few frames since, take the
//      mark again (0) and release the write lock.
// Any other change of WAL generation is reported as a gap.
//
// A poll reads at most kMaxReadBytes of commits (whole transactions, at
// least one). A capture that falls behind a writer (its shipper storing
// slower than the writer commits) so holds a bounded amount in memory and
// leaves the rest in the WAL, which it holds from being restarted: it does
// not checkpoint until it has read to the end, so the WAL file grows by the
// backlog meanwhile, and the capture catches up from it afterwards. Applications may
// checkpoint as they like (even TRUNCATE): they cannot get past the
// capture's read transaction.
//
// Holding the restart back lets the WAL grow to about kForceCheckpointFrames
// where SQLite alone restarts it at 1000. A commit that extends the file
// costs its fdatasync a journal commit (new blocks, a new size) that a commit
// overwriting blocks already there does not: while the WAL first grew, a
// writer ran 20-30% slower (bench/pitr_bench.py). So the capture gives the
// WAL file its working size at once, in zeros past the last frame, under the
// write lock (no frame can be appended meanwhile). SQLite reads frames only
// up to the first that does not carry the WAL's salts and checksums, and a
// WAL whose header is zeros is an empty one.
#include <poll.h>
#include <sys/inotify.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "common/sqlite.h"
#include "common/disk_space.h"
#include "common/log.h"
#include "engine/sqlite/sqlite_engine.h"
#include "engine/sqlite/sqlite_wal.h"

namespace strata::engine {
namespace {

constexpr uint64_t kCheckpointFrames = 1000;
// How long capture gathers commits after a write wakes it.
constexpr int kGatherMicros = 2000;
// Past this, the capture takes the write lock for a moment to let the WAL restart.
constexpr uint64_t kForceCheckpointFrames = 4 * kCheckpointFrames;
// The WAL file's working size, in frames (each a page and a 24-byte header).
constexpr uint64_t kReservedWalFrames = 2 * kForceCheckpointFrames;
// The commits one poll reads (whole transactions: a larger one is read alone).
constexpr uint64_t kMaxReadBytes = 8 << 20;

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

// redo: page_size, db_pages, page count, then (page number, page image) each;
// little-endian.
std::string EncodeRedo(uint32_t page_size, const WalTransaction& tx) {
  std::string out;
  out.reserve(12 + tx.pages.size() * (4 + page_size));
  PutU32(out, page_size);
  PutU32(out, tx.db_pages);
  PutU32(out, static_cast<uint32_t>(tx.pages.size()));
  for (const auto& [pgno, image] : tx.pages) {
    PutU32(out, pgno);
    out += image;
  }
  return out;
}

// Up to about 200 ms (RetryEvery50us, which only reads it).
const int kLockAttempts = 4000;

class SqliteCapture final : public ChangeCapture {
 public:
  ~SqliteCapture() override {
    if (wal_fd_ >= 0) ::close(wal_fd_);
    if (inotify_fd_ >= 0) ::close(inotify_fd_);
    // Ends the read transaction; if it fails, closing the connection ends it.
    if (reader_.get()) (void)reader_.Exec("ROLLBACK");
  }

  static Result<std::unique_ptr<SqliteCapture>> Start(const std::filesystem::path& db_path, const Clock& clock,
                                                      const std::string& position) {
    auto c = std::unique_ptr<SqliteCapture>(new SqliteCapture(db_path, clock));
    c->inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (c->inotify_fd_ < 0) return Status(errors::kIoError, fmt::format("inotify: {}", strerror(errno)));
    if (::inotify_add_watch(c->inotify_fd_, db_path.parent_path().c_str(), IN_MODIFY | IN_CREATE) < 0) {
      return Status(errors::kIoError, fmt::format("inotify watch {}: {}", db_path.parent_path().string(), strerror(errno)));
    }
    ASSIGN_OR_RETURN(c->reader_, sqlite::Db::Open(db_path.string(), SQLITE_OPEN_READWRITE));
    ASSIGN_OR_RETURN(c->writer_, sqlite::Db::Open(db_path.string(), SQLITE_OPEN_READWRITE));
    ASSIGN_OR_RETURN(c->checkpointer_, sqlite::Db::Open(db_path.string(), SQLITE_OPEN_READWRITE));
    // Closing the last connection would checkpoint and delete the WAL, and
    // with it the position a restarted capture resumes from.
    for (auto* db : {&c->reader_, &c->writer_, &c->checkpointer_}) {
      sqlite3_db_config(db->get(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    }
    // The capture's own checkpoints decide when the WAL restarts.
    RETURN_IF_ERROR(c->reader_.Exec("PRAGMA wal_autocheckpoint=0"));
    RETURN_IF_ERROR(c->checkpointer_.Exec("PRAGMA wal_autocheckpoint=0"));
    // A busy application takes the write lock back within microseconds of
    // each commit; SQLite's default busy handler sleeps milliseconds and
    // loses that race. Retry quickly instead, for up to 200 ms.
    sqlite3_busy_handler(c->writer_.get(), RetryEvery50us, const_cast<int*>(&kLockAttempts));
    sqlite3_busy_handler(c->checkpointer_.get(), RetryEvery50us, const_cast<int*>(&kLockAttempts));
    RETURN_IF_ERROR(c->BeginRead());
    c->ReserveWalSpace();
    c->pending_gap_ = true;
    c->gap_reason_ = "change-log capture started";
    if (!position.empty() && c->Resume(position)) {
      c->pending_gap_ = false;
    } else if (!position.empty()) {
      c->gap_reason_ = "the WAL no longer continues from where capture stopped";
    }
    if (c->pending_gap_) {
      // A fresh start reads nothing of the past: the new epoch begins with a
      // base snapshot, which holds whatever the WAL holds now.
      c->ResetToCurrentEnd();
    }
    return c;
  }

  Result<CaptureBatch> Poll() override {
    CaptureBatch batch;
    // A read transaction lost to an error is re-taken; anything that went
    // wrong meanwhile shows as a WAL generation that does not follow on.
    if (sqlite3_get_autocommit(reader_.get())) {
      generation_complete_ = false;
      RETURN_IF_ERROR(BeginRead());
    }
    RETURN_IF_ERROR(ReadNew(batch).status());
    // Behind: the WAL keeps what is not read yet; checkpoints wait until it is.
    if (caught_up_ && cursor_.frames >= next_checkpoint_at_) {
      RETURN_IF_ERROR(Checkpoint(batch));
      ReserveWalSpace();  // an application's TRUNCATE checkpoint may have shrunk it
    }
    batch.complete = caught_up_;
    if (pending_gap_) {
      batch.gap = true;
      batch.gap_reason = gap_reason_;
      pending_gap_ = false;
    }
    return batch;
  }

  std::string Position() const override {
    if (!hdr_) return "";
    return fmt::format("v1:{}:{}:{}:{}:{}:{}:{}", hdr_->checkpoint_seq, hdr_->salt1, hdr_->salt2, cursor_.frames,
                       cursor_.s1, cursor_.s2, generation_complete_ ? 1 : 0);
  }

 private:
  SqliteCapture(std::filesystem::path db_path, const Clock& clock)
      : db_path_(std::move(db_path)), wal_path_(db_path_.string() + "-wal"), clock_(clock) {}

  Status BeginRead() {
    RETURN_IF_ERROR(reader_.Exec("BEGIN"));
    return reader_.Exec("SELECT count(*) FROM sqlite_master");
  }

  bool OpenWal() {
    if (wal_fd_ >= 0) return true;
    wal_fd_ = ::open(wal_path_.c_str(), O_RDONLY | O_CLOEXEC);
    return wal_fd_ >= 0;
  }

  bool Resume(const std::string& position) {
    unsigned seq, salt1, salt2, s1, s2, complete;
    unsigned long long frames;
    if (std::sscanf(position.c_str(), "v1:%u:%u:%u:%llu:%u:%u:%u", &seq, &salt1, &salt2, &frames, &s1, &s2,
                    &complete) != 7 || !OpenWal()) {
      return false;
    }
    auto h = ReadWalHeader(wal_fd_);
    if (!h) return false;
    WalHeader was = *h;
    was.checkpoint_seq = seq;
    was.salt1 = salt1;
    was.salt2 = salt2;
    hdr_ = was;
    cursor_ = WalCursor{frames, s1, s2};
    generation_complete_ = complete != 0;
    if (h->salt1 == salt1 && h->salt2 == salt2) return true;
    return IsSuccessor(*h);
  }

  // SQLite adds one to salt1 on every restart (a shared counter, unlike the
  // header's checkpoint_seq, which each connection keeps for itself).
  bool IsSuccessor(const WalHeader& h) const { return generation_complete_ && h.salt1 == hdr_->salt1 + 1; }

  // Skips what the WAL holds now: the next base snapshot includes it.
  void ResetToCurrentEnd() {
    hdr_.reset();
    cursor_ = {};
    generation_complete_ = false;
    if (!OpenWal()) return;
    if (auto h = ReadWalHeader(wal_fd_)) {
      hdr_ = *h;
      cursor_ = WalCursor{0, h->checksum1, h->checksum2};
      next_checkpoint_at_ = kCheckpointFrames;
      SkipWalTransactions(wal_fd_, *hdr_, cursor_);
    }
  }

  // Reads the commits after the cursor into `batch`, at most about
  // kMaxReadBytes (caught_up_ says whether that was all); true if there was any.
  Result<bool> ReadNew(CaptureBatch& batch) {
    caught_up_ = true;
    if (!OpenWal()) return false;
    auto h = ReadWalHeader(wal_fd_);
    if (!h) return false;  // empty (just truncated) or not yet written
    if (!hdr_) {
      // The WAL's first generation since capture started: nothing of it was
      // read before, and any frames in it came after the start.
      hdr_ = *h;
      cursor_ = WalCursor{0, h->checksum1, h->checksum2};
      next_checkpoint_at_ = kCheckpointFrames;
    } else if (h->salt1 != hdr_->salt1 || h->salt2 != hdr_->salt2) {
      if (!IsSuccessor(*h)) {
        pending_gap_ = true;
        gap_reason_ = fmt::format("the WAL was restarted (salt {} -> {}) before capture read all of it",
                                  hdr_->salt1, h->salt1);
      }
      hdr_ = *h;
      cursor_ = WalCursor{0, h->checksum1, h->checksum2};
      next_checkpoint_at_ = kCheckpointFrames;
      generation_complete_ = false;
    }
    bool more = false;
    ASSIGN_OR_RETURN(auto txs, ReadWalTransactions(wal_fd_, *hdr_, cursor_, scan_, kMaxReadBytes, more));
    caught_up_ = !more;
    if (txs.empty()) return false;
    TimePoint now = clock_.Now();
    generation_complete_ = false;
    for (auto& tx : txs) {
      batch.transactions.push_back({now, EncodeRedo(hdr_->page_size, tx)});
      tx.pages.clear();  // one copy at a time
    }
    return true;
  }

  void WaitForChange(std::chrono::milliseconds wait) override {
    pollfd p{inotify_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(wait.count())) > 0) {
      // A busy writer commits thousands of times a second: gather what
      // follows for a moment and read it in one go rather than waking for
      // every commit (each costs the writer a little).
      ::usleep(static_cast<useconds_t>(kGatherMicros));
      char buf[4096];
      while (::read(inotify_fd_, buf, sizeof buf) > 0) {
      }
    }
  }

  // Gives the WAL file its working size (see the top of this file). Best
  // effort: a busy writer or a failed write only leaves the file as it was,
  // and the next checkpoint tries again.
  void ReserveWalSpace() {
    auto page_size = DatabasePageSize(reader_);
    if (!page_size.ok() || !OpenWal()) return;
    const uint64_t want = kWalHeaderSize + kReservedWalFrames * (kWalFrameHeaderSize + *page_size);
    struct stat sb {};
    if (::fstat(wal_fd_, &sb) != 0 || static_cast<uint64_t>(sb.st_size) >= want) return;
    (void)ExtendWal(writer_, wal_path_, want, /*sync_under_lock=*/true);
  }

  // PRAGMA wal_checkpoint(PASSIVE) on the checkpointer connection (the
  // pragma, unlike sqlite3_wal_checkpoint_v2 on a connection that has not
  // read the database yet, opens the WAL first). Returns (log, checkpointed).
  Result<std::pair<int, int>> PassiveCheckpoint() {
    ASSIGN_OR_RETURN(auto ck, checkpointer_.Prepare("PRAGMA wal_checkpoint(PASSIVE)"));
    ASSIGN_OR_RETURN(bool row, ck.Step());
    if (!row) return std::pair{-1, -1};
    return std::pair{static_cast<int>(ck.Int(1)), static_cast<int>(ck.Int(2))};
  }

  // Re-takes the read transaction at the WAL's current end without a moment
  // in which Strata holds none: a guard read transaction on the writer
  // connection stands in meanwhile. Without it, in that instant another
  // process could checkpoint and restart the WAL, or, closing what it took
  // for the last connection, checkpoint and delete it.
  Status MoveReadMark() {
    RETURN_IF_ERROR(writer_.Exec("BEGIN"));
    Status st = writer_.Exec("SELECT count(*) FROM sqlite_master");
    if (st.ok()) st = reader_.Exec("ROLLBACK");
    if (st.ok()) st = BeginRead();
    ReleaseWriter("ROLLBACK");
    return st;
  }

  // Ends the writer connection's transaction (it wrote nothing). Not
  // returned: the caller's own result matters more, and a transaction left
  // open is ended by the next BEGIN's failure or the connection's close; but
  // while it stays open it holds up checkpoints (or writers), so it is logged.
  void ReleaseWriter(const char* sql) {
    if (Status st = writer_.Exec(sql); !st.ok()) {
      log::Warn("change capture could not end its transaction", {{"wal", wal_path_}, {"error", st.ToString()}});
    }
  }

  Status Checkpoint(CaptureBatch& batch) {
    // Phase 1, without blocking writers: move the read mark up to what has
    // been read and copy everything up to it into the database file.
    RETURN_IF_ERROR(ReadNew(batch).status());
    if (!caught_up_) return Status::Ok();  // fell behind again: the WAL keeps it
    generation_complete_ = false;
    RETURN_IF_ERROR(MoveReadMark());
    ASSIGN_OR_RETURN(auto copied, PassiveCheckpoint());
    if (copied.first >= 0 && copied.first == copied.second && static_cast<uint64_t>(copied.first) == cursor_.frames) {
      // Everything read and copied. Let go of the mark (on a fully copied
      // WAL the new read transaction takes mark 0, which allows the restart),
      // then look once more: if nothing was committed meanwhile, whatever
      // restart comes next follows on. (Frames appended later cannot be
      // copied past mark 0, so no restart can happen before they are read.)
      RETURN_IF_ERROR(MoveReadMark());
      ASSIGN_OR_RETURN(bool more, ReadNew(batch));
      if (!more && hdr_) generation_complete_ = true;
      next_checkpoint_at_ = cursor_.frames + kCheckpointFrames;
      return Status::Ok();
    }
    if (cursor_.frames < kForceCheckpointFrames) {
      // Writers kept committing: try again a little later before blocking them.
      next_checkpoint_at_ = cursor_.frames + kCheckpointFrames / 4;
      return Status::Ok();
    }
    // Phase 2, only under sustained writes: under the write lock and short,
    // the few frames since, then the read mark released so that the next
    // writer restarts the WAL.
    next_checkpoint_at_ = cursor_.frames + kCheckpointFrames;
    if (!writer_.Exec("BEGIN IMMEDIATE").ok()) return Status::Ok();  // a writer is busy: later
    Status st = ReadNew(batch).status();
    if (st.ok() && !caught_up_) {
      // Too much to read under the write lock: read on without it first.
      ReleaseWriter("COMMIT");
      return Status::Ok();
    }
    if (st.ok()) st = reader_.Exec("ROLLBACK");
    Result<std::pair<int, int>> ck = std::pair{-1, -1};
    if (st.ok()) ck = PassiveCheckpoint();
    Status begin = BeginRead();
    ReleaseWriter("COMMIT");
    RETURN_IF_ERROR(st);
    RETURN_IF_ERROR(ck.status());
    RETURN_IF_ERROR(begin);
    // Everything read and copied: the restart the next writer makes loses nothing.
    auto [log, done] = *ck;
    generation_complete_ = log >= 0 && log == done && static_cast<uint64_t>(log) == cursor_.frames;
    return Status::Ok();
  }

  std::filesystem::path db_path_;
  std::string wal_path_;
  const Clock& clock_;
  sqlite::Db reader_, writer_, checkpointer_;
  int wal_fd_ = -1;
  int inotify_fd_ = -1;
  std::optional<WalHeader> hdr_;
  WalCursor cursor_;
  WalScan scan_;           // verified past cursor_
  bool caught_up_ = true;  // the last read reached the WAL's last commit
  bool generation_complete_ = false;
  uint64_t next_checkpoint_at_ = kCheckpointFrames;  // frames into this generation
  bool pending_gap_ = false;
  std::string gap_reason_;
};

}  // namespace

Result<std::unique_ptr<ChangeCapture>> SqliteEngine::StartCapture(const InstanceSpec& spec, const Clock& clock,
                                                                  const std::string& position) {
  ASSIGN_OR_RETURN(auto c, SqliteCapture::Start(DatabaseFile(spec), clock, position));
  return std::unique_ptr<ChangeCapture>(std::move(c));
}

Status SqliteEngine::ApplyTransactions(const InstanceSpec& spec, const std::vector<std::string>& redo) {
  if (redo.empty()) return Status::Ok();
  std::string path = DatabaseFile(spec).string();
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Status(errors::kIoError, fmt::format("open {}: {}", path, strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  uint32_t page_size = 0, db_pages = 0;
  for (const auto& r : redo) {
    if (r.size() < 12) return Status(errors::kCorruption, "change-log record too short");
    page_size = GetU32(r.data());
    db_pages = GetU32(r.data() + 4);
    uint32_t n = GetU32(r.data() + 8);
    if (r.size() != 12 + uint64_t(n) * (4 + page_size)) return Status(errors::kCorruption, "change-log record torn");
    const char* p = r.data() + 12;
    for (uint32_t i = 0; i < n; ++i, p += 4 + page_size) {
      uint32_t pgno = GetU32(p);
      off_t off = static_cast<off_t>(pgno - 1) * page_size;
      RETURN_IF_ERROR(disk::PwriteAll(fd, p + 4, page_size, static_cast<uint64_t>(off), "write " + path));
    }
  }
  // The last transaction's size is the database's: a shrink (VACUUM) drops pages.
  if (::ftruncate(fd, static_cast<off_t>(db_pages) * page_size) != 0 || ::fsync(fd) != 0) {
    return disk::ErrnoStatus("finish " + path, errno);
  }
  return Status::Ok();
}

}  // namespace strata::engine

namespace strata::engine {

// A page's bytes change only when a transaction writes it, and the log holds
// every page each transaction wrote (its WAL frames). The one other way is
// the database shrinking (a checkpoint then truncates the file) and growing
// back: a page past the smallest size the stretch reached may read
// differently without a frame for it, so all of that counts as changed.
Result<std::optional<FileRanges>> SqliteEngine::ChangedRanges(const std::vector<std::string>& redo) const {
  std::vector<uint32_t> pages;
  uint32_t page_size = 0;
  uint32_t min_db_pages = UINT32_MAX;
  for (const auto& r : redo) {
    if (r.size() < 12) return Status(errors::kCorruption, "change-log record too short");
    uint32_t ps = GetU32(r.data());
    uint32_t n = GetU32(r.data() + 8);
    if (ps == 0 || r.size() != 12 + uint64_t(n) * (4 + ps)) return Status(errors::kCorruption, "change-log record torn");
    // A page size cannot change in WAL mode; if it seems to, do not guess.
    if (page_size != 0 && ps != page_size) return std::optional<FileRanges>();
    page_size = ps;
    min_db_pages = std::min(min_db_pages, GetU32(r.data() + 4));
    const char* p = r.data() + 12;
    for (uint32_t i = 0; i < n; ++i, p += 4 + ps) pages.push_back(GetU32(p));
  }
  std::sort(pages.begin(), pages.end());
  pages.erase(std::unique(pages.begin(), pages.end()), pages.end());
  std::vector<ByteRange> ranges;
  for (uint32_t pgno : pages) {
    if (pgno == 0) return Status(errors::kCorruption, "change-log record names page 0");
    uint64_t off = uint64_t{pgno - 1} * page_size;
    if (!ranges.empty() && ranges.back().offset + ranges.back().length == off) {
      ranges.back().length += page_size;
    } else {
      ranges.push_back({off, page_size});
    }
  }
  if (!redo.empty()) ranges.push_back({uint64_t{min_db_pages} * page_size, ByteRange::kToEnd});
  return std::optional<FileRanges>(FileRanges{{kFileName, std::move(ranges)}});
}

}  // namespace strata::engine
