#include "engine/sqlite_engine.h"

#include <fmt/format.h>

#include <strings.h>

#include <cctype>
#include <system_error>

#include "common/sqlite.h"

namespace strata::engine {
namespace {

// JDBC type codes, which the Data API reports in ColumnMetadata.type.
constexpr int kJdbcNull = 0;
constexpr int kJdbcBigint = -5;
constexpr int kJdbcDouble = 8;
constexpr int kJdbcVarchar = 12;
constexpr int kJdbcBlob = 2004;

Status SqlError(sqlite3* db) { return Status(errors::kDataBadRequest, sqlite3_errmsg(db)); }

class SqliteSession final : public Session {
 public:
  explicit SqliteSession(sqlite::Db db) : db_(std::move(db)) {}

  Result<StatementResult> Execute(const std::string& sql,
                                  const std::vector<Parameter>& params) override {
    StatementResult result;
    const char* tail = sql.c_str();
    const char* end = sql.c_str() + sql.size();
    bool ran_any = false;
    // Runs each statement of the text in turn; the last one's rows are returned.
    while (tail < end) {
      sqlite3_stmt* raw = nullptr;
      const char* next = nullptr;
      if (sqlite3_prepare_v2(db_.get(), tail, static_cast<int>(end - tail), &raw, &next) !=
          SQLITE_OK) {
        return SqlError(db_.get());
      }
      tail = next;
      if (!raw) continue;  // whitespace or a comment
      sqlite::Stmt stmt(db_.get(), raw);
      RETURN_IF_ERROR(BindParams(raw, params));
      ran_any = true;
      result = StatementResult{};
      int ncol = sqlite3_column_count(raw);
      for (int i = 0; i < ncol; ++i) {
        Column c;
        c.name = sqlite3_column_name(raw, i);
        const char* decl = sqlite3_column_decltype(raw, i);
        c.type_name = decl ? decl : "";
        result.columns.push_back(std::move(c));
      }
      bool readonly = sqlite3_stmt_readonly(raw);
      for (;;) {
        int rc = sqlite3_step(raw);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) return SqlError(db_.get());
        std::vector<Value> row;
        row.reserve(ncol);
        for (int i = 0; i < ncol; ++i) row.push_back(ReadValue(raw, i, result.columns[i]));
        result.rows.push_back(std::move(row));
      }
      if (!readonly && ncol == 0) {
        result.rows_updated = sqlite3_changes64(db_.get());
        std::string_view head(sqlite3_sql(raw));
        while (!head.empty() && std::isspace(static_cast<unsigned char>(head.front())))
          head.remove_prefix(1);
        if (head.size() >= 6 && strncasecmp(head.data(), "insert", 6) == 0) {
          result.generated_fields.push_back(
              static_cast<int64_t>(sqlite3_last_insert_rowid(db_.get())));
        }
      }
    }
    if (!ran_any) return Status(errors::kDataBadRequest, "The SQL statement is empty.");
    return result;
  }

  Status Begin() override { return Run("BEGIN"); }
  Status Commit() override { return Run("COMMIT"); }
  Status Rollback() override { return Run("ROLLBACK"); }

 private:
  Status Run(const char* sql) {
    if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
      return SqlError(db_.get());
    }
    return Status::Ok();
  }

  Status BindParams(sqlite3_stmt* s, const std::vector<Parameter>& params) {
    for (const auto& p : params) {
      int idx = 0;
      for (const char* prefix : {":", "@", "$"}) {
        idx = sqlite3_bind_parameter_index(s, (prefix + p.name).c_str());
        if (idx) break;
      }
      if (!idx) continue;  // a parameter this statement does not use
      int rc = std::visit(
          [&](const auto& v) -> int {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, std::monostate>) return sqlite3_bind_null(s, idx);
            if constexpr (std::is_same_v<T, bool>) return sqlite3_bind_int64(s, idx, v ? 1 : 0);
            if constexpr (std::is_same_v<T, int64_t>) return sqlite3_bind_int64(s, idx, v);
            if constexpr (std::is_same_v<T, double>) return sqlite3_bind_double(s, idx, v);
            if constexpr (std::is_same_v<T, std::string>)
              return sqlite3_bind_text64(s, idx, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
            if constexpr (std::is_same_v<T, Blob>)
              return sqlite3_bind_blob64(s, idx, v.bytes.data(), v.bytes.size(), SQLITE_TRANSIENT);
          },
          p.value);
      if (rc != SQLITE_OK) return SqlError(db_.get());
    }
    return Status::Ok();
  }

  static Value ReadValue(sqlite3_stmt* s, int i, Column& col) {
    switch (sqlite3_column_type(s, i)) {
      case SQLITE_INTEGER:
        if (col.type == kJdbcNull) col.type = kJdbcBigint;
        return static_cast<int64_t>(sqlite3_column_int64(s, i));
      case SQLITE_FLOAT:
        if (col.type == kJdbcNull) col.type = kJdbcDouble;
        return sqlite3_column_double(s, i);
      case SQLITE_TEXT:
        if (col.type == kJdbcNull) col.type = kJdbcVarchar;
        return std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, i)),
                           sqlite3_column_bytes(s, i));
      case SQLITE_BLOB: {
        if (col.type == kJdbcNull) col.type = kJdbcBlob;
        const char* p = static_cast<const char*>(sqlite3_column_blob(s, i));
        return Blob{std::string(p ? p : "", sqlite3_column_bytes(s, i))};
      }
      default:
        return std::monostate{};
    }
  }

  sqlite::Db db_;
};

}  // namespace

std::filesystem::path SqliteEngine::DatabaseFile(const InstanceSpec& spec) {
  return spec.data_dir / kFileName;
}

std::string SqliteEngine::DefaultVersion() const { return sqlite::LibraryVersion(); }

bool SqliteEngine::SupportsVersion(const std::string& version) const {
  // The library Strata links is the only one it runs; accept its version or a prefix ("3", "3.40").
  std::string have = DefaultVersion();
  return have == version || (have.rfind(version + ".", 0) == 0);
}

Status SqliteEngine::Create(const InstanceSpec& spec) {
  std::error_code ec;
  std::filesystem::create_directories(spec.data_dir, ec);
  if (ec) return Status(errors::kIoError, fmt::format("create {}: {}", spec.data_dir.string(), ec.message()));
  ASSIGN_OR_RETURN(auto db, sqlite::Db::Open(DatabaseFile(spec).string()));
  // WAL mode is persistent in the file: every later opener gets it.
  return db.Exec("PRAGMA journal_mode=WAL");
}

Status SqliteEngine::Start(const InstanceSpec& spec) {
  std::error_code ec;
  if (!std::filesystem::exists(DatabaseFile(spec), ec)) {
    return Status(errors::kIoError, fmt::format("database file {} is missing", DatabaseFile(spec).string()));
  }
  return Status::Ok();
}

Status SqliteEngine::Stop(const InstanceSpec&) { return Status::Ok(); }

Status SqliteEngine::Destroy(const InstanceSpec& spec) {
  std::error_code ec;
  std::filesystem::remove_all(spec.data_dir, ec);
  if (ec) return Status(errors::kIoError, fmt::format("remove {}: {}", spec.data_dir.string(), ec.message()));
  return Status::Ok();
}

Endpoint SqliteEngine::GetEndpoint(const InstanceSpec& spec) const {
  return Endpoint{std::filesystem::absolute(DatabaseFile(spec)).string(), 0};
}

Result<std::unique_ptr<Session>> SqliteEngine::OpenSession(const InstanceSpec& spec,
                                                          const std::string&) {
  ASSIGN_OR_RETURN(auto db, sqlite::Db::Open(DatabaseFile(spec).string(), SQLITE_OPEN_READWRITE));
  return std::unique_ptr<Session>(new SqliteSession(std::move(db)));
}

}  // namespace strata::engine
