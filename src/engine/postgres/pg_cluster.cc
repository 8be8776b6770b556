#include "engine/postgres/pg_cluster.h"

#include <fmt/format.h>

#include <cstdio>
#include <deque>
#include <fstream>

namespace strata::engine::pg {

bool LegacyCluster(const InstanceSpec& spec) {
  std::error_code ec;
  return !std::filesystem::exists(RoleModelMarker(spec), ec);
}

Result<Conn> Connect(const InstanceSpec& spec, const std::string& database, bool replication, ConnectAs as) {
  std::string db = !database.empty() ? database : (!spec.db_name.empty() ? spec.db_name : "postgres");
  std::string user = as == ConnectAs::kStrata && !LegacyCluster(spec) ? kStrataSuperuser : spec.master_username;
  const char* keys[] = {"host", "port", "user", "dbname", "replication", "connect_timeout",
                        "application_name", nullptr};
  std::string host = SocketDir(spec).string(), port = std::to_string(spec.port);
  const char* values[] = {host.c_str(), port.c_str(),          user.c_str(), db.c_str(),
                          replication ? "true" : "false", "10", "strata", nullptr};
  Conn conn(PQconnectdbParams(keys, values, 0));
  if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
    std::string msg = TrimMessage(conn ? PQerrorMessage(conn.get()) : "out of memory");
    return Status(errors::kServiceUnavailable, fmt::format("cannot connect to the PostgreSQL server of {}: {}",
                                                          spec.id, msg));
  }
  return conn;
}

Result<PgResult> Exec(PGconn* conn, const std::string& sql, const ErrorCode& code) {
  PgResult res(PQexec(conn, sql.c_str()));
  ExecStatusType st = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_COPY_BOTH || st == PGRES_COPY_OUT) {
    return res;
  }
  std::string msg = TrimMessage(res ? PQresultErrorMessage(res.get()) : PQerrorMessage(conn));
  return Status(code, msg);
}

Result<std::string> QueryValue(PGconn* conn, const std::string& sql) {
  ASSIGN_OR_RETURN(auto res, Exec(conn, sql));
  if (PQntuples(res.get()) < 1 || PQnfields(res.get()) < 1) {
    return Status(errors::kInternalFailure, "no value from: " + sql);
  }
  return std::string(PQgetvalue(res.get(), 0, 0));
}

std::string QuoteIdent(const std::string& name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string QuoteLiteral(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

Result<uint64_t> ParseLsn(const std::string& text) {
  unsigned hi = 0, lo = 0;
  if (std::sscanf(text.c_str(), "%X/%X", &hi, &lo) != 2) {
    return Status(errors::kInternalFailure, "not a WAL position: " + text);
  }
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

std::string FormatLsn(uint64_t lsn) {
  return fmt::format("{:X}/{:X}", static_cast<uint32_t>(lsn >> 32), static_cast<uint32_t>(lsn));
}

std::string SegmentName(uint32_t timeline, uint64_t segment_number) {
  constexpr uint64_t kSegmentsPerId = 0x100000000ull / kWalSegmentBytes;
  return fmt::format("{:08X}{:08X}{:08X}", timeline, static_cast<uint32_t>(segment_number / kSegmentsPerId),
                     static_cast<uint32_t>(segment_number % kSegmentsPerId));
}

std::string TrimMessage(std::string msg) {
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

std::string LogTail(const InstanceSpec& spec, size_t lines) {
  std::ifstream in(LogFile(spec));
  std::deque<std::string> tail;
  for (std::string line; std::getline(in, line);) {
    tail.push_back(line);
    if (tail.size() > lines) tail.pop_front();
  }
  std::string out;
  for (const auto& l : tail) out += (out.empty() ? "" : " | ") + l;
  return out;
}

}  // namespace strata::engine::pg
