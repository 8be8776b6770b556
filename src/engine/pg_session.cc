// The RDS Data API over libpq: named parameters (:name) become $n, values
// come back typed as the Data API types them for PostgreSQL.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <map>

#include "engine/pg_cluster.h"
#include "engine/postgres_engine.h"

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

class PgSession final : public Session {
 public:
  explicit PgSession(Conn conn) : conn_(std::move(conn)) {}

  Result<StatementResult> Execute(const std::string& sql, const std::vector<Parameter>& params) override {
    PgResult res;
    if (params.empty()) {
      // Several statements may come in one text; the last one's rows are returned.
      res.reset(PQexec(conn_.get(), sql.c_str()));
    } else {
      std::vector<const Parameter*> order;
      ASSIGN_OR_RETURN(auto numbered, NumberParameters(sql, params, order));
      std::vector<std::string> texts(order.size());
      std::vector<const char*> values(order.size());
      std::vector<int> lengths(order.size()), formats(order.size());
      std::vector<Oid> types(order.size());
      for (size_t i = 0; i < order.size(); ++i) {
        const Value& v = order[i]->value;
        if (std::holds_alternative<std::monostate>(v)) {
          values[i] = nullptr;
          continue;
        }
        if (const auto* b = std::get_if<bool>(&v)) texts[i] = *b ? "true" : "false";
        else if (const auto* l = std::get_if<int64_t>(&v)) texts[i] = std::to_string(*l);
        else if (const auto* d = std::get_if<double>(&v)) texts[i] = fmt::format("{}", *d);
        else if (const auto* s = std::get_if<std::string>(&v)) texts[i] = *s;
        else if (const auto* blob = std::get_if<Blob>(&v)) {
          texts[i] = blob->bytes;
          types[i] = 17;
          formats[i] = 1;  // binary: bytes as they are
        }
        values[i] = texts[i].data();
        lengths[i] = static_cast<int>(texts[i].size());
      }
      res.reset(PQexecParams(conn_.get(), numbered.c_str(), static_cast<int>(order.size()), types.data(),
                             values.data(), lengths.data(), formats.data(), 0));
    }
    ExecStatusType st = res ? PQresultStatus(res.get()) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
      std::string msg = TrimMessage(res ? PQresultErrorMessage(res.get()) : PQerrorMessage(conn_.get()));
      return Status(errors::kDataBadRequest, msg);
    }
    StatementResult out;
    if (st == PGRES_TUPLES_OK) {
      int ncol = PQnfields(res.get());
      for (int c = 0; c < ncol; ++c) {
        Column col;
        col.name = PQfname(res.get(), c);
        auto it = Types().find(PQftype(res.get(), c));
        col.type_name = it != Types().end() ? it->second.name : "unknown";
        col.type = it != Types().end() ? it->second.jdbc : 1111;
        out.columns.push_back(std::move(col));
      }
      int nrow = PQntuples(res.get());
      for (int r = 0; r < nrow; ++r) {
        std::vector<Value> row;
        for (int c = 0; c < ncol; ++c) row.push_back(CellValue(res.get(), r, c));
        out.rows.push_back(std::move(row));
      }
    }
    const char* tuples = PQcmdTuples(res.get());
    if (tuples && *tuples && st == PGRES_COMMAND_OK) out.rows_updated = std::strtoll(tuples, nullptr, 10);
    return out;
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
  Conn conn_;
};

}  // namespace

Result<std::unique_ptr<Session>> PostgresEngine::OpenSession(const InstanceSpec& spec, const std::string& database) {
  // As the master user: Data API SQL has the master user's rights, no more.
  auto conn = Connect(spec, database, false, ConnectAs::kMaster);
  if (!conn.ok()) return Status(errors::kDataBadRequest, conn.status().message());
  return std::unique_ptr<Session>(new PgSession(std::move(*conn)));
}

}  // namespace strata::engine
