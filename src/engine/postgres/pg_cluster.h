// Private to engine/: one PostgreSQL cluster of an instance, as the engine's
// parts see it. Layout under the instance's data dir:
//   pgdata/          the cluster (initdb), including strata.conf, the settings
//                    Strata owns (port, socket, WAL), rewritten at each start
//   run/             the server's Unix socket, private to its OS user: Strata
//                    connects through it (peer authentication: stratad's own
//                    OS user, mapped to Strata's superuser or the master user)
//   postgres.log     the server's log
//   strata_pg_guard.so  the server module the cluster preloads, copied there
//                    (readable by the server's OS user) at each start
//
// Roles (as on RDS): Strata's own superuser kStrataSuperuser (initdb's
// bootstrap superuser, which owns the system catalogs; it logs in only over
// the socket, as stratad), and the master user, a CREATEDB CREATEROLE member
// of kMasterGroup, which owns DBName and the "postgres" database. A cluster
// made by a build before this model has no pgdata/strata_superuser marker:
// its master user is the bootstrap superuser (see LegacyCluster).
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "common/status.h"
#include "engine/engine.h"

namespace strata::engine::pg {

inline constexpr uint64_t kWalSegmentBytes = 16ull << 20;  // initdb's default, which Strata keeps
inline constexpr const char* kCaptureSlot = "strata_capture";
inline constexpr const char* kStrataSuperuser = "rdsadmin";
inline constexpr const char* kMasterGroup = "rds_superuser";
inline constexpr const char* kGuardModule = "strata_pg_guard.so";

inline std::filesystem::path ClusterDir(const InstanceSpec& spec) { return spec.data_dir / "pgdata"; }
inline std::filesystem::path SocketDir(const InstanceSpec& spec) { return spec.data_dir / "run"; }
inline std::filesystem::path LogFile(const InstanceSpec& spec) { return spec.data_dir / "postgres.log"; }
// Written at initdb: the cluster's superuser is kStrataSuperuser. It is in
// pgdata, so it travels with snapshots to restored clusters.
inline std::filesystem::path RoleModelMarker(const InstanceSpec& spec) { return ClusterDir(spec) / "strata_superuser"; }

// A cluster made before the master user stopped being a superuser: its
// bootstrap superuser (owner of the system catalogs) is the master user,
// which cannot be demoted without handing every object to another owner.
bool LegacyCluster(const InstanceSpec& spec);

// Whom Strata logs in as: its own superuser (snapshots, capture, restores,
// password changes) or the master user (Data API sessions, which must have
// no more rights than the master user has over TCP).
enum class ConnectAs { kStrata, kMaster };

struct ConnCloser {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultClearer {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Conn = std::unique_ptr<PGconn, ConnCloser>;
using PgResult = std::unique_ptr<PGresult, ResultClearer>;

// Connects through the private socket; `database` empty: the instance's
// DBName (or "postgres"). replication: a physical replication connection
// (walsender), for the change-log capture.
Result<Conn> Connect(const InstanceSpec& spec, const std::string& database, bool replication = false,
                     ConnectAs as = ConnectAs::kStrata);
// Runs one command; an error result becomes `code` with the server's message.
Result<PgResult> Exec(PGconn* conn, const std::string& sql, const ErrorCode& code = errors::kInternalFailure);
// The first column of the first row.
Result<std::string> QueryValue(PGconn* conn, const std::string& sql);

std::string QuoteIdent(const std::string& name);
std::string QuoteLiteral(const std::string& text);

// WAL positions ("16/B374D848") and segment file names.
Result<uint64_t> ParseLsn(const std::string& text);
std::string FormatLsn(uint64_t lsn);
std::string SegmentName(uint32_t timeline, uint64_t segment_number);

// Starts the server with pg_ctl (waiting until it accepts connections),
// after rewriting strata.conf with `extra_conf` appended (recovery settings).
Status StartServer(const InstanceSpec& spec, const std::string& extra_conf = "");

// Puts the cluster's roles in Strata's model (see the top of this file):
// Strata's superuser, rds_superuser and its grants, the master user without
// superuser and owning the "postgres" database and DBName. Idempotent; a
// legacy cluster is left as it is, with a warning.
Status ApplyRoleModel(const InstanceSpec& spec);

// libpq's and the tools' messages without their trailing newline.
std::string TrimMessage(std::string msg);

// The last lines of the server's log, for an error message.
std::string LogTail(const InstanceSpec& spec, size_t lines = 8);

}  // namespace strata::engine::pg
