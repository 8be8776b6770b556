#include "engine/postgres/postgres_engine.h"

#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/atomic_file.h"
#include "common/log.h"
#include "engine/postgres/pg_cluster.h"
#include "engine/postgres/pg_credentials.h"
#include "engine/postgres/pg_process.h"

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

// The extensions the master user may add (as RDS lets rds_superuser):
// PostgreSQL's trusted ones, and those of its contrib modules that reach
// nothing outside the cluster. Not: adminpack, file_fdw (the server's
// files), dblink, postgres_fdw (connections from the server), pg_surgery,
// old_snapshot, xml2.
constexpr const char* kTrustedExtensions[] = {
    "btree_gin", "btree_gist", "citext", "cube", "dict_int", "fuzzystrmatch", "hstore", "intarray", "isn", "lo",
    "ltree", "pg_trgm", "pgcrypto", "plpgsql", "seg", "tablefunc", "tcn", "tsm_system_rows", "tsm_system_time",
    "unaccent", "uuid-ossp"};
// Untrusted in PostgreSQL (only a superuser may create them): pgextwlist
// creates them as Strata's superuser, then grants their functions and
// tables to rds_superuser (the after-create script below).
constexpr const char* kApprovedExtensions[] = {
    "amcheck", "autoinc", "bloom", "dict_xsyn", "earthdistance", "insert_username", "intagg", "moddatetime",
    "pageinspect", "pg_buffercache", "pg_freespacemap", "pg_prewarm", "pg_stat_statements", "pg_visibility",
    "pg_walinspect", "pgrowlocks", "pgstattuple", "refint", "sslinfo"};

std::filesystem::path ExtensionScriptsDir(const InstanceSpec& spec) { return spec.data_dir / "extwlist"; }

// pgextwlist's after-create scripts: what an approved extension made for
// superusers only is granted to rds_superuser.
Status WriteExtensionScripts(const InstanceSpec& spec) {
  std::error_code ec;
  for (const char* ext : kApprovedExtensions) {
    auto dir = ExtensionScriptsDir(spec) / ext;
    std::filesystem::create_directories(dir, ec);
    if (ec) return IoError("create " + dir.string(), ec);
    std::ostringstream out;
    out << "-- Written by Strata: the master user's group may use what this extension made.\n"
        << "DO $strata$\nDECLARE obj record;\nBEGIN\n"
        << "  FOR obj IN SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid\n"
        << "             WHERE e.extname = " << QuoteLiteral(ext) << " AND d.deptype = 'e' LOOP\n"
        << "    IF obj.classid = 'pg_proc'::regclass THEN\n"
        << "      EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO " << kMasterGroup << "', obj.objid::regprocedure);\n"
        << "    ELSIF obj.classid = 'pg_class'::regclass AND\n"
        << "          (SELECT relkind FROM pg_class WHERE oid = obj.objid) IN ('r', 'v', 'm', 'p', 'f') THEN\n"
        << "      EXECUTE format('GRANT SELECT ON %s TO " << kMasterGroup << "', obj.objid::regclass);\n"
        << "    END IF;\n"
        << "  END LOOP;\nEND\n$strata$;\n";
    // Read by the server's OS user, changed by root only.
    RETURN_IF_ERROR(WriteFileAtomically(dir / "after-create.sql", out.str(), {.mode = 0644}));
    chmod(dir.c_str(), 0755);
  }
  chmod(ExtensionScriptsDir(spec).c_str(), 0755);
  return Status::Ok();
}

// The settings Strata owns, rewritten before every start so that a restored
// cluster takes its new instance's port and socket. The guard module refuses
// the master user the roles that reach the host (pg_guard/strata_pg_guard.c);
// pgextwlist (Debian's postgresql-15-pgextwlist) lets it add the extensions
// listed above.
std::string ExtensionList() {
  std::string list;
  for (const char* ext : kTrustedExtensions) list += (list.empty() ? "" : ",") + std::string(ext);
  for (const char* ext : kApprovedExtensions) list += "," + std::string(ext);
  return list;
}

Status WriteStrataConf(const InstanceSpec& spec, const std::string& extra = "") {
  std::ostringstream out;
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
      << "shared_preload_libraries = "
      << QuoteLiteral((spec.data_dir / kGuardModule).string() + ", $libdir/plugins/pgextwlist") << "\n"
      << "extwlist.extensions = " << QuoteLiteral(ExtensionList()) << "\n"
      << "extwlist.custom_path = " << QuoteLiteral(ExtensionScriptsDir(spec).string()) << "\n"
      << extra;
  RETURN_IF_ERROR(WriteFileAtomically(ClusterDir(spec) / "strata.conf", out.str()));
  ASSIGN_OR_RETURN(auto user, ServerUser(spec));
  return Chown(ClusterDir(spec) / "strata.conf", user, false);
}

// stratad's own OS user name, which peer authentication sees on the socket.
std::string StratadOsUser() {
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (getpwuid_r(geteuid(), &pw, buf.data(), buf.size(), &found) == 0 && found) return pw.pw_name;
  return std::to_string(geteuid());
}

// Who may log in, rewritten before every start (a restored cluster, or one
// an older build made with "trust" on the socket, gets them too). Over the
// socket only stratad's OS user, and only as Strata's superuser or the
// master user (peer authentication through the "strata" map); over TCP
// everyone with a password (SCRAM), never as Strata's superuser and never
// for replication.
Status WriteAccessFiles(const InstanceSpec& spec, const std::optional<OsUser>& user) {
  const std::string master = QuoteIdent(spec.master_username);
  const std::string os_user = QuoteIdent(StratadOsUser());
  {
    std::ostringstream out;
    out << "# Written by Strata before each start; changes here are overwritten.\n"
        << "local all " << kStrataSuperuser << "," << master << " peer map=strata\n"
        << "local replication " << kStrataSuperuser << "," << master << " peer map=strata\n"
        << "local all all reject\n"
        << "local replication all reject\n"
        << "host all " << kStrataSuperuser << " all reject\n"
        << "host replication all all reject\n"
        << "host all all 127.0.0.1/32 scram-sha-256\n"
        << "host all all ::1/128 scram-sha-256\n";
    RETURN_IF_ERROR(WriteFileAtomically(ClusterDir(spec) / "pg_hba.conf", out.str()));
  }
  {
    std::ostringstream out;
    out << "# Written by Strata before each start; changes here are overwritten.\n"
        << "strata " << os_user << " " << kStrataSuperuser << "\n"
        << "strata " << os_user << " " << master << "\n";
    RETURN_IF_ERROR(WriteFileAtomically(ClusterDir(spec) / "pg_ident.conf", out.str()));
  }
  RETURN_IF_ERROR(Chown(ClusterDir(spec) / "pg_hba.conf", user, false));
  return Chown(ClusterDir(spec) / "pg_ident.conf", user, false);
}

// Puts the guard module where the server's OS user can read it and nobody
// but root can change it.
Status InstallGuard(const InstanceSpec& spec) {
  ASSIGN_OR_RETURN(auto source, GuardModule());
  auto target = spec.data_dir / kGuardModule;
  auto tmp = spec.data_dir / (std::string(kGuardModule) + ".tmp");
  std::error_code ec;
  std::filesystem::copy_file(source, tmp, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return IoError(fmt::format("copy {} to {}", source.string(), tmp.string()), ec);
  if (chmod(tmp.c_str(), 0644) != 0) return IoError("chmod " + tmp.string(), std::error_code(errno, std::generic_category()));
  std::filesystem::rename(tmp, target, ec);
  if (ec) return IoError("rename " + tmp.string(), ec);
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
  ASSIGN_OR_RETURN(auto user, ServerUser(spec));
  // stratad makes its data dir private at each start; the server's user
  // needs to pass through it to its own directory.
  RETURN_IF_ERROR(MakeReachable(spec.data_dir, user));
  std::error_code ec;
  std::filesystem::create_directories(SocketDir(spec), ec);
  if (ec) return IoError("create " + SocketDir(spec).string(), ec);
  chmod(SocketDir(spec).c_str(), 0700);
  RETURN_IF_ERROR(Chown(SocketDir(spec), user, false));
  RETURN_IF_ERROR(InstallGuard(spec));
  RETURN_IF_ERROR(WriteExtensionScripts(spec));
  RETURN_IF_ERROR(WriteAccessFiles(spec, user));
  RETURN_IF_ERROR(WriteStrataConf(spec, extra_conf));
  if (!std::filesystem::exists(LogFile(spec), ec)) std::ofstream(LogFile(spec)).close();
  chmod(LogFile(spec).c_str(), 0600);
  RETURN_IF_ERROR(Chown(LogFile(spec), user, false));
  Status st = RunTool("pg_ctl", {"start", "-w", "-t", "600", "-s", "-D", ClusterDir(spec).string(), "-l",
                                 LogFile(spec).string()},
                      user);
  if (!st.ok()) {
    std::string log_tail = LogTail(spec);
    bool port_taken = log_tail.find("Address already in use") != std::string::npos;
    return Status(port_taken ? errors::kPortInUse : st.code(), fmt::format("{}; server log: {}", st.message(), log_tail));
  }
  return Status::Ok();
}

Status pg::ApplyRoleModel(const InstanceSpec& spec) {
  if (LegacyCluster(spec)) {
    log::Warn("this PostgreSQL cluster was made by an older Strata: its master user is the cluster's bootstrap "
              "superuser and keeps every right (move its databases with pg_dump into a new instance)",
              {{"instance", spec.id}});
    return Status::Ok();
  }
  ASSIGN_OR_RETURN(auto conn, Connect(spec, "postgres"));
  const std::string master = QuoteIdent(spec.master_username);
  const std::string group = QuoteIdent(kMasterGroup);
  // Idempotent, in one transaction: run after every start, so that a
  // restored cluster, or one whose master user dropped rds_superuser, has
  // the model again.
  std::string sql = fmt::format(
      "BEGIN;\n"
      "DO $$BEGIN\n"
      "  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {group_lit}) THEN CREATE ROLE {group}; END IF;\n"
      "  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {master_lit}) THEN CREATE ROLE {master}; END IF;\n"
      "END$$;\n"
      "ALTER ROLE {group} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOLOGIN;\n"
      "GRANT pg_read_all_data, pg_write_all_data, pg_monitor, pg_signal_backend, pg_checkpoint TO {group} "
      "WITH ADMIN OPTION;\n"
      "ALTER ROLE {master} NOSUPERUSER NOREPLICATION NOBYPASSRLS CREATEDB CREATEROLE LOGIN INHERIT;\n"
      "GRANT {group} TO {master} WITH ADMIN OPTION;\n"
      "ALTER DATABASE postgres OWNER TO {master};\n"
      "{own_db}"
      "COMMIT;",
      fmt::arg("group", group), fmt::arg("group_lit", QuoteLiteral(kMasterGroup)), fmt::arg("master", master),
      fmt::arg("master_lit", QuoteLiteral(spec.master_username)),
      // DBName is made after the master user when the instance is created.
      fmt::arg("own_db", !spec.db_name.empty() && spec.db_name != "postgres"
                             ? fmt::format("DO $$BEGIN\n"
                                           "  IF EXISTS (SELECT 1 FROM pg_database WHERE datname = {}) THEN\n"
                                           "    ALTER DATABASE {} OWNER TO {};\n"
                                           "  END IF;\n"
                                           "END$$;\n",
                                           QuoteLiteral(spec.db_name), QuoteIdent(spec.db_name), master)
                             : std::string()));
  Status st = Exec(conn.get(), sql).status();
  // The statement's error is the one to report; the connection closes after
  // this, which rolls back whatever the ROLLBACK could not.
  if (!st.ok()) (void)Exec(conn.get(), "ROLLBACK");
  return st;
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
  ASSIGN_OR_RETURN(auto user, ServerUser(spec));
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
  // Strata's superuser is the bootstrap superuser, owner of the system
  // catalogs; the master user is made below, without superuser.
  RETURN_IF_ERROR(RunTool("initdb", {"-D", ClusterDir(spec).string(), "-U", kStrataSuperuser, "-A", "reject",
                                     "-E", "UTF8", "--locale=C.UTF-8", "--data-checksums"},
                          user));
  RETURN_IF_ERROR(WriteFileAtomically(RoleModelMarker(spec), std::string(kStrataSuperuser) + "\n"));
  RETURN_IF_ERROR(Chown(RoleModelMarker(spec), user, false));
  {
    std::ofstream conf(ClusterDir(spec) / "postgresql.conf", std::ios::app);
    conf << "\n# Strata's settings (port, socket, WAL) come last and win.\ninclude_if_exists = 'strata.conf'\n";
    if (!conf) return Status(errors::kIoError, "cannot append to postgresql.conf of " + spec.id);
  }
  RETURN_IF_ERROR(StartServer(spec));
  RETURN_IF_ERROR(ApplyRoleModel(spec));  // makes the master user
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
      RETURN_IF_ERROR(Exec(conn.get(), fmt::format("CREATE DATABASE {} OWNER {}", QuoteIdent(spec.db_name),
                                                   QuoteIdent(spec.master_username)))
                          .status());
    }
  }
  return WriteFileAtomically(done_marker, "");
}

Status PostgresEngine::Start(const InstanceSpec& spec) {
  ASSIGN_OR_RETURN(auto user, ServerUser(spec));
  if (user) {
    // A cluster an older build made runs as the shared "postgres" OS user:
    // it is stopped, given to the instance's own user and started again.
    ASSIGN_OR_RETURN(auto owner, OwnerOf(ClusterDir(spec)));
    if (owner.uid != user->uid) {
      log::Info("giving a PostgreSQL cluster to its own OS user",
                {{"instance", spec.id}, {"from", owner.name}, {"to", user->name}});
      RETURN_IF_ERROR(Stop(spec));
      chmod(spec.data_dir.c_str(), 0700);
      RETURN_IF_ERROR(Chown(spec.data_dir, user, true));
    }
  }
  if (RunningPostmaster(spec)) {
    RETURN_IF_ERROR(MakeReachable(spec.data_dir, user));
    return WriteStrataConf(spec);
  }
  RETURN_IF_ERROR(StartServer(spec));
  return ApplyRoleModel(spec);
}

Status PostgresEngine::Stop(const InstanceSpec& spec) {
  if (!RunningPostmaster(spec)) return Status::Ok();
  // As whoever owns the cluster: its own user, or "postgres" for a cluster
  // an older build started.
  std::optional<OsUser> owner;
  if (geteuid() == 0) {
    ASSIGN_OR_RETURN(auto server_user, ServerUser(spec));
    ASSIGN_OR_RETURN(owner, OwnerOf(ClusterDir(spec)));
    owner->groups = server_user->groups;  // to pass through the data dir
    RETURN_IF_ERROR(MakeReachable(spec.data_dir, owner));
  }
  return RunTool("pg_ctl", {"stop", "-w", "-t", "120", "-s", "-m", "fast", "-D", ClusterDir(spec).string()}, owner);
}

Status PostgresEngine::SetMasterPassword(const InstanceSpec& spec, const std::string& engine_state) {
  // As Strata's superuser, which sets it whatever the master user did to its role.
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
  return RemoveServerUser(spec);
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
