// The RDS Data API over libpq: named parameters (:name) become $n, values
// come back typed as the Data API types them for PostgreSQL.
#include <fmt/format.h>

#include <poll.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <cctype>
#include <cstdlib>
#include <map>

#include "engine/postgres/pg_cluster.h"
#include "engine/postgres/postgres_engine.h"

namespace strata::engine {
namespace {

using namespace pg;

// PostgreSQL type OIDs (pg_type.dat) Strata maps, with their JDBC codes.
struct TypeInfo {
  const char* name;
  int jdbc;
};
const std::map<Oid, TypeInfo>& Types() {
  static const std::map<Oid, TypeInfo> types = {
      {16, {"bool", -7}},       {17, {"bytea", -2}},         {18, {"char", 1}},          {19, {"name", 12}},
      {20, {"int8", -5}},       {21, {"int2", 5}},           {23, {"int4", 4}},          {25, {"text", 12}},
      {26, {"oid", -5}},        {114, {"json", 1111}},       {700, {"float4", 7}},       {701, {"float8", 8}},
      {1042, {"bpchar", 1}},    {1043, {"varchar", 12}},     {1082, {"date", 91}},       {1083, {"time", 92}},
      {1114, {"timestamp", 93}}, {1184, {"timestamptz", 93}}, {1700, {"numeric", 2}},    {2950, {"uuid", 1111}},
      {3802, {"jsonb", 1111}}};
  return types;
}

// ":name" outside literals, quoted identifiers, comments and "::" casts.
Result<std::string> NumberParameters(const std::string& sql, const std::vector<Parameter>& params,
                                     std::vector<const Parameter*>& order) {
  std::map<std::string, int> numbers;
  std::string out;
  size_t i = 0, n = sql.size();
  auto is_ident = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  while (i < n) {
    char c = sql[i];
    if (c == '\'' || c == '"') {
      size_t j = i + 1;
      while (j < n) {
        if (sql[j] != c) {
          ++j;
        } else if (j + 1 < n && sql[j + 1] == c) {
          j += 2;  // a doubled quote inside
        } else {
          break;
        }
      }
      j = std::min(j + 1, n);
      out.append(sql, i, j - i);
      i = j;
    } else if (c == '-' && i + 1 < n && sql[i + 1] == '-') {
      size_t j = sql.find('\n', i);
      j = j == std::string::npos ? n : j;
      out.append(sql, i, j - i);
      i = j;
    } else if (c == '/' && i + 1 < n && sql[i + 1] == '*') {
      size_t j = sql.find("*/", i + 2);
      j = j == std::string::npos ? n : j + 2;
      out.append(sql, i, j - i);
      i = j;
    } else if (c == ':' && i + 1 < n && sql[i + 1] == ':') {
      out += "::";
      i += 2;
    } else if (c == ':' && i + 1 < n && (std::isalpha(static_cast<unsigned char>(sql[i + 1])) || sql[i + 1] == '_')) {
      size_t j = i + 1;
      while (j < n && is_ident(sql[j])) ++j;
      std::string name = sql.substr(i + 1, j - i - 1);
      auto it = numbers.find(name);
      if (it == numbers.end()) {
        const Parameter* found = nullptr;
        for (const auto& p : params) {
          if (p.name == name) found = &p;
        }
        if (!found) return Status(errors::kDataBadRequest, fmt::format("No value specified for parameter: {}", name));
        order.push_back(found);
        it = numbers.emplace(name, static_cast<int>(order.size())).first;
      }
      out += "$" + std::to_string(it->second);
      i = j;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

Value CellValue(PGresult* res, int row, int col) {
  if (PQgetisnull(res, row, col)) return std::monostate{};
  const char* text = PQgetvalue(res, row, col);
  switch (PQftype(res, col)) {
    case 16:
      return text[0] == 't';
    case 20: case 21: case 23: case 26:
      return static_cast<int64_t>(std::strtoll(text, nullptr, 10));
    case 700: case 701:
      return std::strtod(text, nullptr);
    case 17: {
      size_t len = 0;
      unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(text), &len);
      Blob b{std::string(reinterpret_cast<char*>(raw), len)};
      PQfreemem(raw);
      return b;
    }
    default:
      return std::string(text, static_cast<size_t>(PQgetlength(res, row, col)));
  }
}

using SteadyClock = std::chrono::steady_clock;

class PgSession final : public Session {
 public:
  PgSession(Conn conn, const SessionLimits& limits) : conn_(std::move(conn)), limits_(limits) {}

  // The server's own deadlines, for statements this session sends; the
  // client-side deadline in Execute holds even if the SQL lifts them.
  Status SetDeadlines() {
    return Exec(conn_.get(),
                fmt::format("SET statement_timeout = {}; SET lock_timeout = {}", limits_.statement_timeout.count(),
                            limits_.lock_timeout.count()),
                errors::kDataBadRequest)
        .status();
  }

  Result<StatementResult> Execute(const std::string& sql, const std::vector<Parameter>& params) override {
    if (sql.find('\0') != std::string::npos) {
      return Status(errors::kDataBadRequest, "The SQL text contains a NUL character.");
    }
    // Everything that can fail is built before anything is sent.
    std::vector<const Parameter*> order;
    std::string numbered;
    std::vector<std::string> texts;
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    std::vector<Oid> types;
    if (!params.empty()) {
      ASSIGN_OR_RETURN(numbered, NumberParameters(sql, params, order));
      texts.resize(order.size());
      values.resize(order.size());
      lengths.resize(order.size());
      formats.resize(order.size());
      types.resize(order.size());
      for (size_t i = 0; i < order.size(); ++i) {
        const Value& v = order[i]->value;
        if (std::holds_alternative<std::monostate>(v)) {
          values[i] = nullptr;
          continue;
        }
        if (const auto* b = std::get_if<bool>(&v)) texts[i] = *b ? "true" : "false";
        else if (const auto* l = std::get_if<int64_t>(&v)) texts[i] = std::to_string(*l);
        else if (const auto* d = std::get_if<double>(&v)) texts[i] = fmt::format("{}", *d);
        else if (const auto* str = std::get_if<std::string>(&v)) texts[i] = *str;
        else if (const auto* blob = std::get_if<Blob>(&v)) {
          texts[i] = blob->bytes;
          types[i] = 17;
          formats[i] = 1;  // binary: bytes as they are
        }
        values[i] = texts[i].data();
        lengths[i] = static_cast<int>(texts[i].size());
      }
    }
    PGconn* conn = conn_.get();
    // Several statements may come in one text (without parameters); the last
    // one's rows are returned.
    int sent = params.empty() ? PQsendQuery(conn, sql.c_str())
                              : PQsendQueryParams(conn, numbered.c_str(), static_cast<int>(order.size()),
                                                  types.data(), values.data(), lengths.data(), formats.data(), 0);
    if (!sent) return Status(errors::kDataBadRequest, TrimMessage(PQerrorMessage(conn)));
    // Rows arrive one by one, so a result over the limit is never held whole.
    PQsetSingleRowMode(conn);

    const auto deadline = SteadyClock::now() + limits_.statement_timeout;
    bool cancelled = false, timed_out = false, too_large = false;
    std::optional<Status> error;
    StatementResult current, last;
    size_t result_bytes = 0;
    auto cancel = [&] {
      if (cancelled) return;
      cancelled = true;
      if (PGcancel* c = PQgetCancel(conn)) {
        char why[256];
        (void)PQcancel(c, why, sizeof why);
        PQfreeCancel(c);
      }
    };
    for (;;) {
      while (PQisBusy(conn)) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
        if (left.count() <= 0 && !cancelled) {
          timed_out = true;
          cancel();
        }
        pollfd pfd{PQsocket(conn), POLLIN, 0};
        (void)::poll(&pfd, 1, cancelled ? 1000 : static_cast<int>(std::max<int64_t>(1, left.count())));
        if (!PQconsumeInput(conn)) {
          return Status(errors::kDataBadRequest, TrimMessage(PQerrorMessage(conn)));
        }
      }
      PgResult res(PQgetResult(conn));
      if (!res) break;
      ExecStatusType st = PQresultStatus(res.get());
      if (error || too_large) continue;  // draining what is left of the query
      if (st == PGRES_SINGLE_TUPLE || st == PGRES_TUPLES_OK) {
        if (current.columns.empty()) current.columns = Columns(res.get());
        if (st == PGRES_TUPLES_OK) {  // the end of one statement's rows
          last = std::move(current);
          current = StatementResult{};
          result_bytes = 0;
          continue;
        }
        int ncol = PQnfields(res.get());
        for (int c = 0; c < ncol; ++c) result_bytes += static_cast<size_t>(PQgetlength(res.get(), 0, c)) + 1;
        if (result_bytes > limits_.max_result_bytes) {
          too_large = true;
          cancel();
          continue;
        }
        std::vector<Value> row;
        for (int c = 0; c < ncol; ++c) row.push_back(CellValue(res.get(), 0, c));
        current.rows.push_back(std::move(row));
      } else if (st == PGRES_COMMAND_OK) {
        last = StatementResult{};
        const char* tuples = PQcmdTuples(res.get());
        if (tuples && *tuples) last.rows_updated = std::strtoll(tuples, nullptr, 10);
      } else if (st != PGRES_EMPTY_QUERY) {
        const char* state = PQresultErrorField(res.get(), PG_DIAG_SQLSTATE);
        std::string msg = TrimMessage(PQresultErrorMessage(res.get()));
        if (state && std::string_view(state) == "57014") {  // query_canceled: a deadline passed
          error = Status(errors::kDataStatementTimeout,
                         fmt::format("The statement ran past the Data API's {} ms limit and was cancelled.",
                                     limits_.statement_timeout.count()));
        } else if (state && std::string_view(state) == "55P03") {  // lock_not_available
          error = Status(errors::kDataBadRequest, "The database is busy: " + msg);
        } else {
          error = Status(errors::kDataBadRequest, msg);
        }
      }
    }
    if (too_large) return Status(errors::kDataBadRequest, kResultTooLargeMessage);
    if (timed_out && !error) {
      error = Status(errors::kDataStatementTimeout,
                     fmt::format("The statement ran past the Data API's {} ms limit and was cancelled.",
                                 limits_.statement_timeout.count()));
    }
    if (error) return *error;
    return last;
  }

  Status Begin() override { return Exec(conn_.get(), "BEGIN", errors::kDataBadRequest).status(); }
  Status Commit() override {
    ASSIGN_OR_RETURN(auto res, Exec(conn_.get(), "COMMIT", errors::kDataBadRequest));
    // COMMIT of a transaction that failed earlier rolls back and says so.
    if (std::string(PQcmdStatus(res.get())) == "ROLLBACK") {
      return Status(errors::kDataBadRequest, "The transaction was rolled back: a statement in it failed.");
    }
    return Status::Ok();
  }
  Status Rollback() override { return Exec(conn_.get(), "ROLLBACK", errors::kDataBadRequest).status(); }

 private:
  static std::vector<Column> Columns(PGresult* res) {
    std::vector<Column> out;
    int ncol = PQnfields(res);
    for (int c = 0; c < ncol; ++c) {
      Column col;
      col.name = PQfname(res, c);
      auto it = Types().find(PQftype(res, c));
      col.type_name = it != Types().end() ? it->second.name : "unknown";
      col.type = it != Types().end() ? it->second.jdbc : 1111;
      out.push_back(std::move(col));
    }
    return out;
  }

  Conn conn_;
  SessionLimits limits_;
};

}  // namespace

Result<std::unique_ptr<Session>> PostgresEngine::OpenSession(const InstanceSpec& spec, const std::string& database,
                                                            const SessionLimits& limits) {
  // As the master user: Data API SQL has the master user's rights, no more.
  auto conn = Connect(spec, database, false, ConnectAs::kMaster);
  if (!conn.ok()) return Status(errors::kDataBadRequest, conn.status().message());
  auto session = std::make_unique<PgSession>(std::move(*conn), limits);
  RETURN_IF_ERROR(session->SetDeadlines());
  return std::unique_ptr<Session>(std::move(session));
}

}  // namespace strata::engine
