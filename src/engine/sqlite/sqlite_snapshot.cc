// Consistent online snapshots of a SQLite database in WAL mode.
//
// Why this is consistent without blocking writers: the view holds a read
// transaction for its whole life. While it does, SQLite can neither restart
// the WAL (a restart needs every reader off the WAL's read marks) nor
// backfill frames newer than the reader's mark into the database file (and a
// reader on mark 0 blocks backfilling entirely). So the WAL frames parsed
// after the read transaction began stay where they are, and every database
// page is either unchanged in the file or has a committed frame in the WAL.
// A page image is therefore: the newest committed WAL frame of the page, else
// the page from the database file. The result is the database as of the last
// commit in the parsed WAL: a committed prefix of the history, never a torn one.
//
// The same read transaction makes every commit meanwhile extend the WAL file,
// which costs a writer's fsync a journal commit each time (on the benchmark
// VM, a reader held for 5 s took a busy writer's median commit from 0.13-0.14
// to 0.21 ms; with the WAL zero-extended first, 0.14: bench/RESULTS.md). So
// while the view lives, its readers keep the WAL file kWalRoomBytes ahead of
// the last frame, in zeros written under the write lock (ExtendWal): writers
// then overwrite blocks the file already has.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>

#include <fmt/format.h>

#include "common/sqlite.h"
#include "common/task_pool.h"
#include "engine/sqlite/sqlite_engine.h"
#include "engine/sqlite/sqlite_wal.h"

namespace strata::engine {
namespace {

constexpr uint64_t kWalRoomBytes = 16 << 20;
// Each extension holds the write lock while it writes this much (about 2 ms
// into the page cache on the benchmark VM; the sync comes after).
constexpr uint64_t kWalStepBytes = 8 << 20;
constexpr auto kWalRoomCheckInterval = std::chrono::milliseconds(10);

// Up to about 10 ms (RetryEvery50us, which only reads it); then the next
// check tries again.
const int kExtendLockAttempts = 200;

Status PreadFully(int fd, uint64_t off, std::byte* out, size_t n, const std::string& what) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, out + done, n - done, static_cast<off_t>(off + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status(errors::kIoError, fmt::format("read {}: {}", what, strerror(errno)));
    }
    if (r == 0) {
      // Past the end of the database file: a page SQLite has not written yet
      // reads as zeros, as SQLite itself treats it.
      std::memset(out + done, 0, n - done);
      return Status::Ok();
    }
    done += static_cast<size_t>(r);
  }
  return Status::Ok();
}

class SqliteSnapshotView final : public SnapshotView {
 public:
  ~SqliteSnapshotView() override {
    if (wal_fd_ >= 0) ::close(wal_fd_);
    if (probe_fd_ >= 0) ::close(probe_fd_);
    // Ends the view: a failed ROLLBACK is ended by the connection's close.
    if (conn_.get()) (void)conn_.Exec("ROLLBACK");
  }

  static Result<std::unique_ptr<SqliteSnapshotView>> Open(const std::filesystem::path& db_path,
                                                          TimePoint now) {
    auto v = std::unique_ptr<SqliteSnapshotView>(new SqliteSnapshotView());
    v->time_ = now;
    ASSIGN_OR_RETURN(v->conn_, sqlite::Db::Open(db_path.string(), SQLITE_OPEN_READONLY));
    RETURN_IF_ERROR(v->conn_.Exec("BEGIN"));
    // The first read takes the read lock and fixes the transaction's snapshot.
    RETURN_IF_ERROR(v->conn_.Exec("SELECT count(*) FROM sqlite_master"));
    ASSIGN_OR_RETURN(v->page_size_, DatabasePageSize(v->conn_));

    std::string wal_path = db_path.string() + "-wal";
    v->db_path_ = db_path;
    v->wal_path_ = wal_path;
    v->KeepWalRoom();
    ASSIGN_OR_RETURN(v->wal_, ReadWalIndex(wal_path));
    // The database file is read through SQLite's own handle, never a
    // descriptor of ours: closing any descriptor of a file drops every POSIX
    // lock this process holds on it, SQLite's included, and another process
    // could then checkpoint, delete the WAL or write under our readers.
    if (sqlite3_file_control(v->conn_.get(), "main", SQLITE_FCNTL_FILE_POINTER, &v->db_file_) != SQLITE_OK ||
        !v->db_file_ || !v->db_file_->pMethods) {
      return Status(errors::kIoError, "cannot reach the database file through SQLite");
    }
    if (!v->wal_.page_offsets.empty()) {
      if (v->wal_.page_size != v->page_size_) {
        return Status(errors::kIoError, "WAL page size differs from the database's");
      }
      v->wal_fd_ = ::open(wal_path.c_str(), O_RDONLY | O_CLOEXEC);
      if (v->wal_fd_ < 0) return Status(errors::kIoError, fmt::format("open {}: {}", wal_path, strerror(errno)));
    }

    uint64_t pages = v->wal_.db_pages;
    if (pages == 0) {
      // Nothing committed in the WAL: the file as it stands is the database.
      sqlite3_int64 end = 0;
      if (v->db_file_->pMethods->xFileSize(v->db_file_, &end) != SQLITE_OK) {
        return Status(errors::kIoError, "cannot size the database file");
      }
      pages = static_cast<uint64_t>(end) / v->page_size_;
    }
    FileSource f;
    f.path = SqliteEngine::kFileName;
    f.size = pages * v->page_size_;
    f.mode = 0600;  // the owner's only, as every file of stratad's
    SqliteSnapshotView* self = v.get();
    f.read_at = [self](uint64_t offset, std::span<std::byte> out) { return self->ReadAt(offset, out); };
    v->files_.push_back(std::move(f));
    return v;
  }

  const std::vector<FileSource>& Files() const override { return files_; }
  TimePoint DatabaseTime() const override { return time_; }
  uint32_t PageSize() const override { return page_size_; }

 private:
  SqliteSnapshotView() = default;

  Result<size_t> ReadAt(uint64_t offset, std::span<std::byte> out) {
    KeepWalRoom();
    uint64_t size = files_[0].size;
    if (offset >= size) return size_t{0};
    size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), size - offset));
    size_t done = 0;
    while (done < n) {
      uint64_t pos = offset + done;
      uint32_t pgno = static_cast<uint32_t>(pos / page_size_) + 1;
      uint64_t in_page = pos % page_size_;
      size_t take = static_cast<size_t>(std::min<uint64_t>(n - done, page_size_ - in_page));
      auto it = wal_.page_offsets.find(pgno);
      Status st = it != wal_.page_offsets.end() ? ReadWalPage(it->second, in_page, pos, out.data() + done, take)
                                                : ReadDatabase(pos, out.data() + done, take);
      RETURN_IF_ERROR(st);
      done += take;
    }
    return n;
  }

  // A view that began on read mark 0 (the WAL fully checkpointed) does not
  // stop SQLite from restarting the WAL, which overwrites frames from the
  // start. But a restart needs every frame copied into the database file,
  // and mark 0 forbids copying anything newer, so the file then holds exactly
  // this view. Hence: read the frame, then check it still belongs to the
  // generation parsed (SQLite writes a frame's header before its data, so a
  // header still ours means the data read before it was ours too); if not,
  // the database file has the page.
  Status ReadWalPage(uint64_t data_offset, uint64_t in_page, uint64_t pos, std::byte* out, size_t n) {
    RETURN_IF_ERROR(PreadFully(wal_fd_, data_offset + in_page, out, n, "WAL"));
    unsigned char hdr[kWalFrameHeaderSize];
    RETURN_IF_ERROR(PreadFully(wal_fd_, data_offset - kWalFrameHeaderSize, reinterpret_cast<std::byte*>(hdr),
                               sizeof hdr, "WAL"));
    WalHeader generation;
    generation.salt1 = wal_.salt1;
    generation.salt2 = wal_.salt2;
    if (FrameHeaderOfGeneration(hdr, generation)) return Status::Ok();
    return ReadDatabase(pos, out, n);
  }

  // Extends the WAL file (see the top of this file) once the last frame comes
  // within kWalRoomBytes of its end. Where the last frame is: SQLite appends
  // frames in order, so the frame slot kWalRoomBytes before the file's end
  // carries the header's salts once a writer has passed it. Called from every
  // reader; one checks at a time, at most every kWalRoomCheckInterval. Best
  // effort: anything amiss leaves the WAL as it is.
  void KeepWalRoom() {
    std::unique_lock room(room_mu_, std::try_to_lock);
    auto now = std::chrono::steady_clock::now();
    if (!room.owns_lock() || now < next_room_check_) return;
    next_room_check_ = now + kWalRoomCheckInterval;
    if (probe_fd_ < 0) probe_fd_ = ::open(wal_path_.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat sb {};
    if (probe_fd_ < 0 || ::fstat(probe_fd_, &sb) != 0) return;
    auto hdr = ReadWalHeader(probe_fd_);
    if (!hdr) return;  // no WAL yet, or no valid header: SQLite writes it at the first commit
    const uint64_t frame = kWalFrameHeaderSize + hdr->page_size;
    const uint64_t end = static_cast<uint64_t>(sb.st_size);
    if (!seen_size_) seen_size_ = end;
    // Extended once commits push the file's end out, or (a file larger than
    // the room) once the frame slot kWalRoomBytes before its end is this
    // generation's. So a WAL that nothing writes to keeps its size, unless its
    // last commits had already filled it to within the room.
    bool near_end = end > *seen_size_;
    if (end >= kWalHeaderSize + frame + kWalRoomBytes) {
      uint64_t probe = kWalHeaderSize + (end - kWalRoomBytes - kWalHeaderSize) / frame * frame - frame;
      near_end = near_end || FrameOfGeneration(probe_fd_, probe, *hdr);
    }
    if (!near_end) return;
    if (!extender_.get()) {
      auto db = sqlite::Db::Open(db_path_.string(), SQLITE_OPEN_READWRITE);
      if (!db.ok()) return;
      extender_ = std::move(*db);
      sqlite3_busy_handler(extender_.get(), RetryEvery50us, const_cast<int*>(&kExtendLockAttempts));
    }
    // Writers wait on the lock this holds: it must not sit behind other
    // background work (ScopedNormalPriority).
    ScopedNormalPriority normal;
    if (ExtendWal(extender_, wal_path_, end + kWalStepBytes, /*sync_under_lock=*/false)) {
      seen_size_ = end + kWalStepBytes;
    }
  }

  Status ReadDatabase(uint64_t pos, std::byte* out, size_t n) {
    // The repository reads a file's units on several threads at once, and
    // this is SQLite's own file handle, outside SQLite's locking: a SQLite
    // built without USE_PREAD seeks and then reads, so two readers would
    // race on the file position and get each other's pages.
    std::lock_guard lock(db_read_mu_);
    int rc = db_file_->pMethods->xRead(db_file_, out, static_cast<int>(n), static_cast<sqlite3_int64>(pos));
    // A short read is zero-filled by SQLite: pages past the end read as zeros.
    if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ) {
      return Status(errors::kIoError, fmt::format("read database file at {}: SQLite error {}", pos, rc));
    }
    return Status::Ok();
  }

  sqlite::Db conn_;
  // Declared after conn_, so closed before it: never the database's last
  // connection, whose close would checkpoint and delete the WAL.
  sqlite::Db extender_;
  std::filesystem::path db_path_;
  std::string wal_path_;
  std::mutex room_mu_;
  std::chrono::steady_clock::time_point next_room_check_{};
  std::optional<uint64_t> seen_size_;  // the WAL file's size when last looked at or extended
  int probe_fd_ = -1;
  WalIndex wal_;
  sqlite3_file* db_file_ = nullptr;  // owned by conn_
  std::mutex db_read_mu_;
  int wal_fd_ = -1;
  uint32_t page_size_ = 4096;
  TimePoint time_{};
  std::vector<FileSource> files_;
};

}  // namespace

Result<std::unique_ptr<SnapshotView>> SqliteEngine::OpenSnapshot(const InstanceSpec& spec,
                                                                 TimePoint now) {
  ASSIGN_OR_RETURN(auto v, SqliteSnapshotView::Open(DatabaseFile(spec), now));
  return std::unique_ptr<SnapshotView>(std::move(v));
}

Status SqliteEngine::FinishRestore(const InstanceSpec& spec, std::optional<TimePoint>) {
  std::error_code ec;
  // A restored file stands alone: no WAL or shared-memory index may sit beside it.
  std::filesystem::remove(DatabaseFile(spec).string() + "-wal", ec);
  std::filesystem::remove(DatabaseFile(spec).string() + "-shm", ec);
  ASSIGN_OR_RETURN(auto db, sqlite::Db::Open(DatabaseFile(spec).string(), SQLITE_OPEN_READWRITE));
  ASSIGN_OR_RETURN(auto check, db.Prepare("PRAGMA quick_check"));
  ASSIGN_OR_RETURN(bool row, check.Step());
  if (!row || check.Text(0) != "ok") {
    return Status(errors::kCorruption,
                  fmt::format("restored database fails quick_check: {}", row ? check.Text(0) : "no result"));
  }
  return db.Exec("PRAGMA journal_mode=WAL");
}

}  // namespace strata::engine
