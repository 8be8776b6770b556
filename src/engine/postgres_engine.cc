#include "engine/postgres_engine.h"

#include <signal.h>
#include <sys/stat.h>

#include <fmt/format.h>

#include <cerrno>
#include <fstream>
#include <mutex>
#include <thread>

#include "common/disk_space.h"
#include "engine/pg_cluster.h"
#include "engine/pg_credentials.h"
#include "engine/pg_process.h"

namespace strata::engine {
namespace {

using namespace pg;

Status IoError(const std::string& what, const std::error_code& ec) {
  return Status(errors::kIoError, fmt::format("{}: {}", what, ec.message()));
}

// The major version of the server programs, e.g. "15.18".
const std::string& ServerVersion() {
  static std::once_flag once;
  static std::string version;
  std::call_once(once, [] {
    auto bin = BinDir();
    if (!bin.ok()) return;
    auto out = Run({(*bin / "postgres").string(), "--version"}, std::nullopt);
    // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    if (out.ok() && out->exit_code == 0) {
      auto pos = out->output.find(") ");
      if (pos != std::string::npos) {
        std::string rest = out->output.substr(pos + 2);
        version = rest.substr(0, rest.find_first_of(" \n"));
      }
    }
  });
  return version;
}

Status RunTool(const std::string& tool, std::vector<std::string> args, const std::optional<OsUser>& user) {
  ASSIGN_OR_RETURN(auto bin, BinDir());
  args.insert(args.begin(), (bin / tool).string());
  ASSIGN_OR_RETURN(auto out, Run(args, user));
  if (out.exit_code != 0) {
    std::string msg = TrimMessage(out.output);
    return Status(errors::kInternalFailure, fmt::format("{} failed ({}): {}", tool, out.exit_code, msg));
  }
  return Status::Ok();
}

// The settings Strata owns, rewritten before every start so that a restored
// cluster takes its new instance's port and socket.
Status WriteStrataConf(const InstanceSpec& spec, const std::string& extra = "") {
  errno = 0;
  std::ofstream out(ClusterDir(spec) / "strata.conf", std::ios::trunc);
  out << "# Written by Strata before each start; changes here are overwritten.\n"
      << "listen_addresses = '127.0.0.1'\n"
      << "port = " << spec.port << "\n"
      << "unix_socket_directories = " << QuoteLiteral(SocketDir(spec).string()) << "\n"
      << "unix_socket_permissions = 0700\n"
      << "password_encryption = 'scram-sha-256'\n"
      << "wal_level = replica\n"
      << "max_wal_senders = 10\n"
      << "max_replication_slots = 10\n"
      // Recovery stops at commit timestamps; keeping them lets a client ask
      // when its transaction committed (pg_xact_commit_timestamp).
      << "track_commit_timestamp = on\n"
      // A capture that falls too far behind loses its slot (reported as a
      // gap, followed by a fresh base) instead of filling the disk.
      << "max_slot_wal_keep_size = '8GB'\n"
      << "wal_compression = on\n"
      << "log_line_prefix = '%m [%p] '\n"
      << extra;
  out.close();
  if (!out) return disk::ErrnoStatus("cannot write strata.conf of " + spec.id, errno ? errno : EIO);
  ASSIGN_OR_RETURN(auto user, ServerUser());
  return Chown(ClusterDir(spec) / "strata.conf", user, false);
}

Status WriteHba(const InstanceSpec& spec) {
  errno = 0;
  std::ofstream out(ClusterDir(spec) / "pg_hba.conf", std::ios::trunc);
  out << "# Written by Strata. The Unix socket lives in a directory only the\n"
      << "# server's OS user (and root) can enter: Strata connects there.\n"
      << "local all all trust\n"
      << "local replication all trust\n"
      << "host all all 127.0.0.1/32 scram-sha-256\n"
      << "host all all ::1/128 scram-sha-256\n";
  out.close();
  if (!out) return disk::ErrnoStatus("cannot write pg_hba.conf of " + spec.id, errno ? errno : EIO);
  return Status::Ok();
}

// The postmaster's pid from postmaster.pid, if that process lives.
std::optional<pid_t> RunningPostmaster(const InstanceSpec& spec) {
  std::ifstream in(ClusterDir(spec) / "postmaster.pid");
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return std::nullopt;
  if (kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return std::nullopt;
  // A postmaster that exited but was not reaped (PID 1 in some containers
  // does not reap orphans) is a zombie: dead for our purposes.
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string line;
  std::getline(stat, line);
  auto close_paren = line.rfind(')');
  if (close_paren != std::string::npos && close_paren + 2 < line.size() && line[close_paren + 2] == 'Z') {
    return std::nullopt;
  }
  return static_cast<pid_t>(pid);
}

}  // namespace

Status pg::StartServer(const InstanceSpec& spec, const std::string& extra_conf) {
  ASSIGN_OR_RETURN(auto user, ServerUser());
  // stratad makes its data dir private at each start; the server's user
  // needs to pass through it to its own directory.
  RETURN_IF_ERROR(MakeReachable(spec.data_dir, user));
  std::error_code ec;
  std::filesystem::create_directories(SocketDir(spec), ec);
  if (ec) return IoError("create " + SocketDir(spec).string(), ec);
  chmod(SocketDir(spec).c_str(), 0700);
  RETURN_IF_ERROR(Chown(SocketDir(spec), user, false));
  RETURN_IF_ERROR(WriteStrataConf(spec, extra_conf));
  if (!std::filesystem::exists(LogFile(spec), ec)) std::ofstream(LogFile(spec)).close();
  RETURN_IF_ERROR(Chown(LogFile(spec), user, false));
  Status st = RunTool("pg_ctl", {"start", "-w", "-t", "600", "-s", "-D", ClusterDir(spec).string(), "-l",
                                 LogFile(spec).string()},
                      user);
  if (!st.ok()) return Status(st.code(), fmt::format("{}; server log: {}", st.message(), LogTail(spec)));
  return Status::Ok();
}

std::string PostgresEngine::DefaultVersion() const {
  const std::string& v = ServerVersion();
  return v.empty() ? "15" : v;
}

bool PostgresEngine::SupportsVersion(const std::string& version) const {
  std::string have = DefaultVersion();
  return have == version || have.rfind(version + ".", 0) == 0;
}

Result<std::string> PostgresEngine::SealCredentials(const std::string& username,
                                                    const std::string& password) const {
  RETURN_IF_ERROR(ValidateMasterUsername(username));
  if (password.size() < 8 || password.size() > 128) {
    return Status(errors::kInvalidParameterValue,
                  "The parameter MasterUserPassword is not a valid password because it is shorter than 8 "
                  "characters or longer than 128.");
  }
  for (char c : password) {
    if (c == '/' || c == '"' || c == '@' || static_cast<unsigned char>(c) < 0x20) {
      return Status(errors::kInvalidParameterValue,
                    "The parameter MasterUserPassword is not a valid password. Only printable ASCII "
                    "characters besides '/', '@', '\"', ' ' may be used.");
    }
  }
  return ScramVerifier(password);
}

Status PostgresEngine::Create(const InstanceSpec& spec) {
  ASSIGN_OR_RETURN(auto user, ServerUser());
  std::error_code ec;
  std::filesystem::create_directories(spec.data_dir, ec);
  if (ec) return IoError("create " + spec.data_dir.string(), ec);
  chmod(spec.data_dir.c_str(), 0700);
  RETURN_IF_ERROR(MakeReachable(spec.data_dir, user));
  RETURN_IF_ERROR(Chown(spec.data_dir, user, false));
  const auto done_marker = spec.data_dir / "created";
  if (std::filesystem::exists(done_marker, ec)) return Start(spec);  // an earlier attempt finished

  // A half-made cluster from an interrupted attempt is started over.
  std::filesystem::remove_all(ClusterDir(spec), ec);
  RETURN_IF_ERROR(RunTool("initdb", {"-D", ClusterDir(spec).string(), "-U", spec.master_username, "-A", "trust",
                                     "-E", "UTF8", "--locale=C.UTF-8", "--data-checksums"},
                          user));
  RETURN_IF_ERROR(WriteHba(spec));
  {
    std::ofstream conf(ClusterDir(spec) / "postgresql.conf", std::ios::app);
    conf << "\n# Strata's settings (port, socket, WAL) come last and win.\ninclude_if_exists = 'strata.conf'\n";
    if (!conf) return Status(errors::kIoError, "cannot append to postgresql.conf of " + spec.id);
  }
  RETURN_IF_ERROR(StartServer(spec));
  ASSIGN_OR_RETURN(auto conn, Connect(spec, "postgres"));
  if (!spec.engine_state.empty()) {
    RETURN_IF_ERROR(Exec(conn.get(), fmt::format("ALTER ROLE {} PASSWORD {}", QuoteIdent(spec.master_username),
                                                 QuoteLiteral(spec.engine_state)))
                        .status());
  }
  if (!spec.db_name.empty() && spec.db_name != "postgres") {
    ASSIGN_OR_RETURN(auto exists, QueryValue(conn.get(), "SELECT count(*) FROM pg_database WHERE datname = " +
                                                            QuoteLiteral(spec.db_name)));
    if (exists == "0") {
      RETURN_IF_ERROR(Exec(conn.get(), "CREATE DATABASE " + QuoteIdent(spec.db_name)).status());
    }
  }
  std::ofstream(done_marker).close();
  return Status::Ok();
}

Status PostgresEngine::Start(const InstanceSpec& spec) {
  if (RunningPostmaster(spec)) return WriteStrataConf(spec);
  return StartServer(spec);
}

Status PostgresEngine::Stop(const InstanceSpec& spec) {
  if (!RunningPostmaster(spec)) return Status::Ok();
  ASSIGN_OR_RETURN(auto user, ServerUser());
  return RunTool("pg_ctl", {"stop", "-w", "-t", "120", "-s", "-m", "fast", "-D", ClusterDir(spec).string()}, user);
}

Status PostgresEngine::SetMasterPassword(const InstanceSpec& spec, const std::string& engine_state) {
  ASSIGN_OR_RETURN(auto conn, Connect(spec, "postgres"));
  return Exec(conn.get(),
              fmt::format("ALTER ROLE {} PASSWORD {}", QuoteIdent(spec.master_username), QuoteLiteral(engine_state)))
      .status();
}

Status PostgresEngine::CheckRunning(const InstanceSpec& spec) {
  if (RunningPostmaster(spec)) return Status::Ok();
  return Status(errors::kServiceUnavailable, fmt::format("the PostgreSQL server of {} is not running", spec.id));
}

Status PostgresEngine::Destroy(const InstanceSpec& spec) {
  RETURN_IF_ERROR(Stop(spec));
  std::error_code ec;
  std::filesystem::remove_all(spec.data_dir, ec);
  if (ec) return IoError("remove " + spec.data_dir.string(), ec);
  return Status::Ok();
}

Status PostgresEngine::ReleaseCapture(const InstanceSpec& spec) {
  ASSIGN_OR_RETURN(auto conn, Connect(spec, "postgres"));
  return Exec(conn.get(), fmt::format("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                      "WHERE slot_name = {}",
                                      QuoteLiteral(kCaptureSlot)))
      .status();
}

Endpoint PostgresEngine::GetEndpoint(const InstanceSpec& spec) const { return Endpoint{"127.0.0.1", spec.port}; }

}  // namespace strata::engine
