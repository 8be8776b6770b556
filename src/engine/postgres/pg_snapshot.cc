// An online base backup as a SnapshotView: pg_backup_start (with an
// immediate checkpoint), the cluster's files read while the server runs (torn
// pages are repaired on restore by the full-page images PostgreSQL logs
// during a backup), then pg_backup_stop, whose backup_label and the WAL from
// the backup's start to its end complete the snapshot. A temporary
// replication slot on the backup's session holds that WAL until it is read.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <array>
#include <cstring>
#include <mutex>
#include <regex>

#include "engine/postgres/pg_cluster.h"
#include "engine/postgres/postgres_engine.h"

namespace strata::engine {
namespace {

using namespace pg;

// Directories whose contents a backup leaves out: PostgreSQL recreates them
// (as pg_basebackup does); pg_wal comes from the backup's own range, and
// replication slots must not follow a restored cluster.
constexpr std::array kSkippedDirs = {"pg_wal",      "pg_replslot", "pg_stat_tmp", "pg_dynshmem", "pg_notify",
                                     "pg_serial",   "pg_snapshots", "pg_subtrans"};
constexpr std::array kSkippedFiles = {"postmaster.pid",  "postmaster.opts", "backup_label", "backup_label.old",
                                      "tablespace_map",  "recovery.signal", "standby.signal", "current_logfiles",
                                      "pg_internal.init"};

// A file of the running cluster, read in place. It may shrink or vanish
// while the copy runs (a truncated or dropped relation): the missing part
// reads as zeros, and WAL replay at restore truncates or drops it again.
class LiveFile {
 public:
  LiveFile(std::filesystem::path path, uint64_t size) : path_(std::move(path)), size_(size) {}
  ~LiveFile() {
    if (fd_ >= 0) close(fd_);
  }
  Result<size_t> ReadAt(uint64_t offset, std::span<std::byte> out) {
    if (offset >= size_) return size_t{0};
    size_t want = static_cast<size_t>(std::min<uint64_t>(out.size(), size_ - offset));
    int fd = Fd();
    size_t got = 0;
    while (fd >= 0 && got < want) {
      ssize_t n = pread(fd, out.data() + got, want - got, static_cast<off_t>(offset + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status(errors::kIoError, fmt::format("read {}: {}", path_.string(), std::strerror(errno)));
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    std::memset(out.data() + got, 0, want - got);
    return want;
  }

 private:
  int Fd() {
    std::call_once(opened_, [this] { fd_ = open(path_.c_str(), O_RDONLY | O_CLOEXEC); });
    return fd_;
  }
  std::filesystem::path path_;
  uint64_t size_;
  std::once_flag opened_;
  int fd_ = -1;
};

FileSource LiveSource(const std::filesystem::path& full, const std::string& rel, uint64_t size, uint32_t mode) {
  auto file = std::make_shared<LiveFile>(full, size);
  return FileSource{rel, size, mode, [file](uint64_t off, std::span<std::byte> out) { return file->ReadAt(off, out); }};
}

FileSource MemorySource(const std::string& rel, std::string content) {
  auto data = std::make_shared<std::string>(std::move(content));
  uint64_t size = data->size();
  return FileSource{rel, size, 0600, [data](uint64_t off, std::span<std::byte> out) -> Result<size_t> {
                      if (off >= data->size()) return size_t{0};
                      size_t n = std::min<size_t>(out.size(), data->size() - off);
                      std::memcpy(out.data(), data->data() + off, n);
                      return n;
                    }};
}

Result<std::vector<FileSource>> ListClusterFiles(const std::filesystem::path& pgdata) {
  std::vector<FileSource> files;
  std::error_code ec;
  auto it = std::filesystem::recursive_directory_iterator(pgdata, ec);
  for (; !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    const auto& path = it->path();
    std::string name = path.filename().string();
    auto rel = std::filesystem::relative(path, pgdata);
    std::error_code sec;
    if (it->is_directory(sec)) {
      bool skip_contents = it.depth() == 0 && std::find(kSkippedDirs.begin(), kSkippedDirs.end(), name) !=
                                                  kSkippedDirs.end();
      if (skip_contents || name == "pgsql_tmp") it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file(sec)) continue;
    if (std::find(kSkippedFiles.begin(), kSkippedFiles.end(), name) != kSkippedFiles.end()) continue;
    if (name.rfind("pgsql_tmp", 0) == 0) continue;
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) continue;  // gone since it was listed
    files.push_back(LiveSource(path, (std::filesystem::path("pgdata") / rel).string(), static_cast<uint64_t>(st.st_size),
                               st.st_mode & 0777));
  }
  if (ec) return Status(errors::kIoError, fmt::format("list {}: {}", pgdata.string(), ec.message()));
  return files;
}

class PgSnapshotView final : public SnapshotView {
 public:
  PgSnapshotView(InstanceSpec spec, Conn conn, TimePoint now, std::vector<FileSource> files)
      : spec_(std::move(spec)), conn_(std::move(conn)), now_(now), files_(std::move(files)) {}

  const std::vector<FileSource>& Files() const override { return files_; }
  TimePoint DatabaseTime() const override { return now_; }
  uint32_t PageSize() const override { return 8192; }

  Result<std::vector<FileSource>> Complete() override {
    if (!conn_) return Status(errors::kInternalFailure, "the backup was completed already");
    ASSIGN_OR_RETURN(auto res, Exec(conn_.get(), "SELECT lsn, labelfile, spcmapfile FROM pg_backup_stop(false)"));
    ASSIGN_OR_RETURN(uint64_t stop, ParseLsn(PQgetvalue(res.get(), 0, 0)));
    std::string label = PQgetvalue(res.get(), 0, 1);
    std::string spcmap = PQgetvalue(res.get(), 0, 2);
    std::smatch m;
    static const std::regex kStart(R"(START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+))");
    static const std::regex kTimeline(R"(START TIMELINE: (\d+))");
    if (!std::regex_search(label, m, kStart)) return Status(errors::kInternalFailure, "unexpected backup_label: " + label);
    ASSIGN_OR_RETURN(uint64_t start, ParseLsn(m[1].str()));
    uint32_t timeline = std::regex_search(label, m, kTimeline) ? static_cast<uint32_t>(std::stoul(m[1].str())) : 1;

    std::vector<FileSource> out;
    out.push_back(MemorySource("pgdata/backup_label", label));
    if (!spcmap.empty()) out.push_back(MemorySource("pgdata/tablespace_map", spcmap));
    auto wal = ClusterDir(spec_) / "pg_wal";
    // pg_backup_stop switched to a new segment: the one holding the backup's
    // end is complete.
    for (uint64_t seg = start / kWalSegmentBytes; seg <= (stop - 1) / kWalSegmentBytes; ++seg) {
      std::string name = SegmentName(timeline, seg);
      out.push_back(LiveSource(wal / name, "pgdata/pg_wal/" + name, kWalSegmentBytes, 0600));
    }
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(wal, ec)) {
      if (entry.path().extension() == ".history") {
        out.push_back(LiveSource(entry.path(), "pgdata/pg_wal/" + entry.path().filename().string(),
                                 entry.file_size(ec), 0600));
      }
    }
    // The session, and with it the temporary slot that holds this WAL,
    // lives until the view is destroyed, after the caller has read the files.
    return out;
  }

 private:
  InstanceSpec spec_;
  Conn conn_;
  TimePoint now_;
  std::vector<FileSource> files_;
};

}  // namespace

Result<std::unique_ptr<SnapshotView>> PostgresEngine::OpenSnapshot(const InstanceSpec& spec, TimePoint now) {
  ASSIGN_OR_RETURN(auto conn, Connect(spec, "postgres"));
  RETURN_IF_ERROR(Exec(conn.get(), "SELECT pg_create_physical_replication_slot('strata_backup_' || pg_backend_pid(), "
                                   "true, true)")
                      .status());
  RETURN_IF_ERROR(Exec(conn.get(), "SELECT pg_backup_start('strata snapshot', true)").status());
  ASSIGN_OR_RETURN(auto files, ListClusterFiles(ClusterDir(spec)));
  return std::unique_ptr<SnapshotView>(new PgSnapshotView(spec, std::move(conn), now, std::move(files)));
}

}  // namespace strata::engine
