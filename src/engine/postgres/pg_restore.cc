// Restores: the snapshot's files (a base backup with its backup_label and
// WAL) become a new cluster. For a point-in-time restore, the captured WAL is
// first laid into pg_wal (ApplyTransactions) and PostgreSQL replays it in
// archive recovery up to recovery_target_time (inclusive), then promotes.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cstring>
#include <ctime>
#include <fstream>
#include <thread>

#include "common/atomic_file.h"
#include "common/disk_space.h"
#include "common/log.h"
#include "engine/postgres/pg_capture_format.h"
#include "engine/postgres/pg_cluster.h"
#include "engine/postgres/pg_process.h"
#include "engine/postgres/postgres_engine.h"

namespace strata::engine {
namespace {

using namespace pg;

// Directories a backup leaves empty or out, which a cluster needs.
constexpr const char* kClusterDirs[] = {
    "pg_wal/archive_status", "pg_replslot", "pg_stat_tmp", "pg_dynshmem", "pg_notify", "pg_serial",
    "pg_snapshots",          "pg_subtrans", "pg_tblspc",   "pg_twophase", "pg_commit_ts", "pg_logical/snapshots",
    "pg_logical/mappings",   "pg_multixact/members", "pg_multixact/offsets", "pg_stat", "pg_xact"};

std::string PostgresTime(TimePoint t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return fmt::format("{}.{:06d}+00", buf, static_cast<int>(us % 1000000));
}

// Waits until the server has left recovery (promoted), or has stopped.
Status AwaitPromotion(const InstanceSpec& spec) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::hours(6);
  while (std::chrono::steady_clock::now() < deadline) {
    auto conn = Connect(spec, "postgres");
    if (conn.ok()) {
      auto in_recovery = QueryValue(conn->get(), "SELECT pg_is_in_recovery()");
      if (in_recovery.ok() && *in_recovery == "f") return Status::Ok();
    } else {
      std::ifstream pid(ClusterDir(spec) / "postmaster.pid");
      if (!pid) return Status(errors::kInternalFailure, "the server stopped during recovery: " + LogTail(spec));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status(errors::kInternalFailure, "recovery did not finish: " + LogTail(spec));
}

}  // namespace

Status PostgresEngine::ApplyTransactions(const InstanceSpec& spec, const std::vector<std::string>& redo) {
  auto wal = ClusterDir(spec) / "pg_wal";
  std::error_code ec;
  std::filesystem::create_directories(wal, ec);
  for (const auto& record : redo) {
    ASSIGN_OR_RETURN(auto chunk, DecodeWalChunk(record));
    uint64_t lsn = chunk.start;
    std::string_view data = chunk.bytes;
    while (!data.empty()) {
      uint64_t seg = lsn / kWalSegmentBytes, off = lsn % kWalSegmentBytes;
      size_t n = static_cast<size_t>(std::min<uint64_t>(data.size(), kWalSegmentBytes - off));
      auto path = wal / SegmentName(chunk.timeline, seg);
      // A segment the base backup brought keeps its bytes before this chunk;
      // a new one is full-size with zeros past the end of the log, as
      // recovery expects.
      int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
      if (fd < 0) return Status(errors::kIoError, fmt::format("open {}: {}", path.string(), std::strerror(errno)));
      struct stat st {};
      bool sized = fstat(fd, &st) == 0 && (static_cast<uint64_t>(st.st_size) >= kWalSegmentBytes ||
                                           ftruncate(fd, static_cast<off_t>(kWalSegmentBytes)) == 0);
      Status wrote = sized ? disk::PwriteAll(fd, data.data(), n, off, "write " + path.string())
                           : disk::ErrnoStatus("size " + path.string(), errno);
      close(fd);
      RETURN_IF_ERROR(wrote);
      data.remove_prefix(n);
      lsn += n;
    }
  }
  return Status::Ok();
}

Status PostgresEngine::FinishRestore(const InstanceSpec& spec, std::optional<TimePoint> point_in_time) {
  auto pgdata = ClusterDir(spec);
  std::error_code ec;
  if (!std::filesystem::exists(pgdata / "PG_VERSION", ec) || !std::filesystem::exists(pgdata / "backup_label", ec)) {
    return Status(errors::kCorruption, "the snapshot does not hold a PostgreSQL base backup");
  }
  for (const char* dir : kClusterDirs) {
    std::filesystem::create_directories(pgdata / dir, ec);
    if (ec) return Status(errors::kIoError, fmt::format("create {}: {}", (pgdata / dir).string(), ec.message()));
  }
  // The restored files were written by stratad: they become the new
  // instance's own OS user's (the source instance's user is another).
  ASSIGN_OR_RETURN(auto user, ServerUser(spec));
  chmod(spec.data_dir.c_str(), 0700);
  chmod(pgdata.c_str(), 0700);
  RETURN_IF_ERROR(MakeReachable(spec.data_dir, user));
  RETURN_IF_ERROR(Chown(spec.data_dir, user, true));

  std::string recovery;
  if (point_in_time) {
    RETURN_IF_ERROR(WriteFileAtomically(pgdata / "recovery.signal", ""));
    RETURN_IF_ERROR(Chown(pgdata / "recovery.signal", user, false));
    // The WAL is in pg_wal already; there is no archive to fetch from.
    recovery = fmt::format(
        "restore_command = '/bin/false'\nrecovery_target_time = '{}'\nrecovery_target_inclusive = on\n"
        "recovery_target_action = 'promote'\n",
        PostgresTime(*point_in_time));
  }
  auto recover = [&](const std::string& settings) -> Status {
    RETURN_IF_ERROR(StartServer(spec, settings));
    return AwaitPromotion(spec);
  };
  Status started = recover(recovery);
  if (!started.ok() && point_in_time &&
      LogTail(spec, 30).find("recovery ended before configured recovery target was reached") != std::string::npos) {
    // No commit after the target is in the log: every commit the log holds
    // is at or before it, so replaying all of it is exactly the target.
    log::Info("no commit after the target in the log: replaying all of it", {{"instance", spec.id}});
    RETURN_IF_ERROR(WriteFileAtomically(pgdata / "recovery.signal", ""));
    RETURN_IF_ERROR(Chown(pgdata / "recovery.signal", user, false));
    started = recover("restore_command = '/bin/false'\n");
  }
  RETURN_IF_ERROR(started);
  // The restored master user keeps (or, from a snapshot whose master user
  // dropped rds_superuser, gets back) the master user's rights, no more.
  RETURN_IF_ERROR(ApplyRoleModel(spec));
  RETURN_IF_ERROR(WriteFileAtomically(spec.data_dir / "created", ""));
  return Start(spec);  // rewrites strata.conf without the recovery settings
}

}  // namespace strata::engine
