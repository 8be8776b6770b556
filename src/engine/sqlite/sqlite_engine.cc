#include "engine/sqlite/sqlite_engine.h"

#include <fmt/format.h>

#include <strings.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
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

using SteadyClock = std::chrono::steady_clock;

std::string LowerAscii(const char* text) {
  std::string out = text ? text : "";
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Status Busy(std::chrono::milliseconds waited) {
  return Status(errors::kDataBadRequest,
                fmt::format("The database is busy: another transaction has held its write lock for {} ms. "
                            "Retry once it commits or rolls back.",
                            waited.count()));
}

// The writers of one database file, served one at a time in arrival order.
// SQLite's own busy handler polls and lets late writers overtake early ones,
// and a Data API transaction may hold the write lock between calls; here
// writers queue fairly, a bounded number of them, each for a bounded time.
class WriterGate {
 public:
  // Ok once this caller holds the gate; "busy" when the queue is full or
  // `wait` passed first.
  Status Acquire(std::chrono::milliseconds wait, size_t max_queued) {
    std::unique_lock lock(mu_);
    if (!held_ && queue_.empty()) {
      held_ = true;
      return Status::Ok();
    }
    if (queue_.size() >= max_queued) return Busy(std::chrono::milliseconds(0));
    uint64_t ticket = next_ticket_++;
    queue_.push_back(ticket);
    auto my_turn = [&] { return !held_ && queue_.front() == ticket; };
    if (!cv_.wait_for(lock, wait, my_turn)) {
      queue_.erase(std::find(queue_.begin(), queue_.end(), ticket));
      cv_.notify_all();  // the next in line may be free to go now
      return Busy(wait);
    }
    queue_.pop_front();
    held_ = true;
    return Status::Ok();
  }

  void Release() {
    {
      std::lock_guard lock(mu_);
      held_ = false;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
  std::deque<uint64_t> queue_;
  uint64_t next_ticket_ = 0;
};

// One gate per database file, shared by every session open on it.
std::shared_ptr<WriterGate> GateFor(const std::string& path) {
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<WriterGate>> gates;
  std::lock_guard lock(mu);
  for (auto it = gates.begin(); it != gates.end();) {
    it = it->second.expired() ? gates.erase(it) : std::next(it);
  }
  auto& slot = gates[path];
  auto gate = slot.lock();
  if (!gate) {
    gate = std::make_shared<WriterGate>();
    slot = gate;
  }
  return gate;
}

class SqliteSession final : public Session {
 public:
  SqliteSession(sqlite::Db db, std::shared_ptr<WriterGate> gate, const SessionLimits& limits)
      : db_(std::move(db)), gate_(std::move(gate)), limits_(limits) {}

  ~SqliteSession() override {
    // Closing rolls back an open transaction: only then may the next writer go.
    db_ = sqlite::Db();
    ReleaseGate();
  }

  // Applies the Data API's confinement to a fresh connection.
  Status Confine() {
    sqlite3* db = db_.get();
    int unused = 0;
    if (sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, &unused) != SQLITE_OK ||
        sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, &unused) != SQLITE_OK ||
        sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, &unused) != SQLITE_OK ||
        sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0, &unused) != SQLITE_OK) {
      return Status(errors::kInternalFailure, fmt::format("sqlite3_db_config: {}", sqlite3_errmsg(db)));
    }
    sqlite3_busy_timeout(db, static_cast<int>(limits_.lock_timeout.count()));
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, limits_.max_value_bytes);
    if (sqlite3_set_authorizer(db, &SqliteSession::Authorize, this) != SQLITE_OK) {
      return Status(errors::kInternalFailure, fmt::format("sqlite3_set_authorizer: {}", sqlite3_errmsg(db)));
    }
    // Checked every 1000 virtual-machine steps: a few microseconds apart.
    sqlite3_progress_handler(db, 1000, &SqliteSession::PastDeadline, this);
    return Status::Ok();
  }

  Result<StatementResult> Execute(const std::string& sql,
                                  const std::vector<Parameter>& params) override {
    if (sql.find('\0') != std::string::npos) {
      return Status(errors::kDataBadRequest, "The SQL text contains a NUL character.");
    }
    deadline_ = SteadyClock::now() + limits_.statement_timeout;
    struct ClearDeadline {
      SqliteSession* s;
      ~ClearDeadline() { s->deadline_.reset(); }
    } clear_deadline{this};

    StatementResult result;
    const char* tail = sql.c_str();
    const char* end = sql.c_str() + sql.size();
    bool ran_any = false;
    // Runs each statement of the text in turn; the last one's rows are returned.
    while (tail < end) {
      sqlite3_stmt* raw = nullptr;
      const char* next = nullptr;
      denial_.clear();
      begins_write_ = false;
      stepping_ = false;
      preparing_ = std::string_view(tail, end - tail);
      if (sqlite3_prepare_v2(db_.get(), tail, static_cast<int>(end - tail), &raw, &next) != SQLITE_OK) {
        return Error();
      }
      // sqlite3_prepare_v2 stops at a NUL; no progress means nothing but one is left.
      if (next == nullptr || next <= tail) break;
      tail = next;
      if (!raw) continue;  // whitespace or a comment
      sqlite::Stmt stmt(db_.get(), raw);
      RETURN_IF_ERROR(BindParams(raw, params));
      ran_any = true;
      bool readonly = sqlite3_stmt_readonly(raw);
      if (!readonly || begins_write_) RETURN_IF_ERROR(AcquireGate());
      Result<StatementResult> one = Step(raw, readonly);
      stmt = sqlite::Stmt();  // finalized: an autocommit statement has committed or rolled back
      ReleaseGateIfNoTransaction();
      if (!one.ok()) return one.status();
      result = std::move(*one);
    }
    if (!ran_any) return Status(errors::kDataBadRequest, "The SQL statement is empty.");
    return result;
  }

  Status Begin() override { return Run("BEGIN"); }
  Status Commit() override {
    Status st = Run("COMMIT");
    ReleaseGateIfNoTransaction();
    return st;
  }
  Status Rollback() override {
    Status st = Run("ROLLBACK");
    ReleaseGateIfNoTransaction();
    return st;
  }

  // The authorizer (sqlite3_set_authorizer): what RDS's Data API allows on
  // the instance's own database. Public for the unit tests' reasons.
  static int Authorize(void* self_ptr, int action, const char* a1, const char* a2, const char* db_name,
                       const char*) {
    auto* self = static_cast<SqliteSession*>(self_ptr);
    auto deny = [&](std::string why) {
      if (self->denial_.empty()) self->denial_ = std::move(why);
      return SQLITE_DENY;
    };
    // Only the instance's own database, its temp schema, and the scratch copy
    // plain VACUUM attaches while it runs.
    if (db_name && std::strcmp(db_name, "main") != 0 && std::strcmp(db_name, "temp") != 0 &&
        !(self->stepping_ && std::strcmp(db_name, "vacuum_db") == 0)) {
      return deny(fmt::format("Access to database '{}' is not allowed: the Data API reaches only the "
                              "instance's own database.",
                              db_name));
    }
    switch (action) {
      case SQLITE_ATTACH:
        // Plain VACUUM attaches a private temporary database ('') while it
        // runs; VACUUM INTO attaches its target file the same way.
        if (self->stepping_ && a1 && a1[0] == '\0') return SQLITE_OK;
        if (self->stepping_) {
          return deny("VACUUM INTO is not allowed: the Data API writes only the instance's own database.");
        }
        return deny("ATTACH is not allowed: the Data API reaches only the instance's own database.");
      case SQLITE_DETACH:
        if (self->stepping_) return SQLITE_OK;
        return deny("DETACH is not allowed: the Data API reaches only the instance's own database.");
      case SQLITE_PRAGMA:
        return AllowedPragma(LowerAscii(a1), a2) ? SQLITE_OK
                                                 : deny(fmt::format("PRAGMA {} is not allowed through the Data API.",
                                                                    LowerAscii(a1)));
      case SQLITE_FUNCTION: {
        std::string name = LowerAscii(a2);
        if (name == "fts3_tokenizer" || name == "load_extension") {
          return deny(fmt::format("The function {}() is not allowed through the Data API.", name));
        }
        return SQLITE_OK;
      }
      case SQLITE_TRANSACTION:
        // BEGIN IMMEDIATE / EXCLUSIVE take the write lock at once: queue for it.
        if (a1 && std::strcmp(a1, "BEGIN") == 0) self->begins_write_ = self->BeginTakesWriteLock();
        return SQLITE_OK;
      case SQLITE_COPY:
        return deny("COPY is not allowed through the Data API.");
      default:
        // Reads, writes, CREATE/DROP/ALTER of tables, indexes, views,
        // triggers and virtual tables, transactions, savepoints, ANALYZE,
        // REINDEX, SELECT, recursive queries: all confined to main/temp above.
        return SQLITE_OK;
    }
  }

 private:
  // Pragmas that only read the schema or data, or set a behaviour of this
  // one connection (which the Data API closes after the call or transaction).
  // Everything about the file, the journal, the cache or the engine is refused.
  static bool AllowedPragma(const std::string& name, const char* value) {
    static const std::set<std::string> queries = {
        "table_info",  "table_xinfo",      "table_list",       "index_list",    "index_info",
        "index_xinfo", "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check",
        "collation_list", "function_list", "module_list",       "pragma_list",   "database_list",
        "compile_options", "page_count",   "freelist_count",    "page_size",     "encoding",
        "data_version", "schema_version",  "user_version",      "application_id", "foreign_keys",
        "defer_foreign_keys", "recursive_triggers", "case_sensitive_like", "optimize",
        "reverse_unordered_selects", "automatic_index"};
    static const std::set<std::string> settable = {
        "foreign_keys", "defer_foreign_keys", "recursive_triggers", "case_sensitive_like",
        "reverse_unordered_selects", "automatic_index", "user_version", "application_id",
        // These take a table, an index or a number of checks, not a setting.
        "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
        "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check", "optimize"};
    return value == nullptr ? queries.count(name) > 0 : settable.count(name) > 0;
  }

  // Whether the BEGIN being prepared (the start of preparing_) is IMMEDIATE
  // or EXCLUSIVE. Comments before it are rare; missing one only means the
  // BEGIN waits on SQLite's busy handler, bounded the same, not in the queue.
  bool BeginTakesWriteLock() const {
    std::istringstream words{std::string(preparing_.substr(0, 64))};
    std::string begin, kind;
    words >> begin >> kind;
    kind = LowerAscii(kind.c_str());
    return kind.rfind("immediate", 0) == 0 || kind.rfind("exclusive", 0) == 0;
  }

  static int PastDeadline(void* self_ptr) {
    auto* self = static_cast<SqliteSession*>(self_ptr);
    if (self->deadline_ && SteadyClock::now() >= *self->deadline_) {
      self->timed_out_ = true;
      return 1;  // interrupts the statement
    }
    return 0;
  }

  Status AcquireGate() {
    if (holds_gate_) return Status::Ok();
    auto wait = limits_.lock_timeout;
    if (deadline_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline_ - SteadyClock::now());
      wait = std::max(std::chrono::milliseconds(0), std::min(wait, left));
    }
    RETURN_IF_ERROR(gate_->Acquire(wait, limits_.max_queued_writers));
    holds_gate_ = true;
    return Status::Ok();
  }

  void ReleaseGate() {
    if (!holds_gate_) return;
    holds_gate_ = false;
    gate_->Release();
  }

  void ReleaseGateIfNoTransaction() {
    if (db_.get() == nullptr || sqlite3_get_autocommit(db_.get())) ReleaseGate();
  }

  // The session's error for the last failed call, most specific first.
  Status Error() {
    if (timed_out_) {
      timed_out_ = false;
      return Status(errors::kDataStatementTimeout,
                    fmt::format("The statement ran past the Data API's {} ms limit and was cancelled.",
                                limits_.statement_timeout.count()));
    }
    if (!denial_.empty()) return Status(errors::kDataBadRequest, denial_);
    int rc = sqlite3_errcode(db_.get()) & 0xff;
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) return Busy(limits_.lock_timeout);
    return SqlError(db_.get());
  }

  Result<StatementResult> Step(sqlite3_stmt* raw, bool readonly) {
    StatementResult result;
    int ncol = sqlite3_column_count(raw);
    for (int i = 0; i < ncol; ++i) {
      Column c;
      c.name = sqlite3_column_name(raw, i);
      const char* decl = sqlite3_column_decltype(raw, i);
      c.type_name = decl ? decl : "";
      result.columns.push_back(std::move(c));
    }
    size_t result_bytes = 0;
    stepping_ = true;
    for (;;) {
      int rc = sqlite3_step(raw);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) {
        stepping_ = false;
        if ((rc & 0xff) == SQLITE_TOOBIG && ncol > 0) {
          // A value of the result passed max_value_bytes: the result would be larger still.
          return Status(errors::kDataBadRequest, kResultTooLargeMessage);
        }
        return Error();
      }
      // Sizes first (a zeroblob's size costs nothing; its bytes would):
      // past the limit no value is read.
      for (int i = 0; i < ncol; ++i) {
        int type = sqlite3_column_type(raw, i);
        result_bytes += (type == SQLITE_TEXT || type == SQLITE_BLOB)
                            ? static_cast<size_t>(sqlite3_column_bytes(raw, i))
                            : sizeof(int64_t);
      }
      if (result_bytes > limits_.max_result_bytes) {
        stepping_ = false;
        return Status(errors::kDataBadRequest, kResultTooLargeMessage);
      }
      std::vector<Value> row;
      row.reserve(ncol);
      for (int i = 0; i < ncol; ++i) row.push_back(ReadValue(raw, i, result.columns[i]));
      result.rows.push_back(std::move(row));
    }
    stepping_ = false;
    if (!readonly && ncol == 0) {
      result.rows_updated = sqlite3_changes64(db_.get());
      std::string_view head(sqlite3_sql(raw));
      while (!head.empty() && std::isspace(static_cast<unsigned char>(head.front()))) head.remove_prefix(1);
      if (head.size() >= 6 && strncasecmp(head.data(), "insert", 6) == 0) {
        result.generated_fields.push_back(static_cast<int64_t>(sqlite3_last_insert_rowid(db_.get())));
      }
    }
    return result;
  }

  Status Run(const char* sql) {
    preparing_ = sql;
    denial_.clear();
    if (sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr) != SQLITE_OK) return Error();
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
      case SQLITE_TEXT: {
        if (col.type == kJdbcNull) col.type = kJdbcVarchar;
        const char* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
        return std::string(p ? p : "", sqlite3_column_bytes(s, i));
      }
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
  std::shared_ptr<WriterGate> gate_;
  SessionLimits limits_;
  bool holds_gate_ = false;
  std::optional<SteadyClock::time_point> deadline_;
  bool timed_out_ = false;
  // Set by the authorizer for the statement being prepared or stepped.
  std::string denial_;
  bool stepping_ = false;      // running (VACUUM's own ATTACH comes now), not being prepared
  bool begins_write_ = false;  // a BEGIN IMMEDIATE or EXCLUSIVE
  std::string_view preparing_;  // the text handed to sqlite3_prepare_v2
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

Result<std::unique_ptr<Session>> SqliteEngine::OpenSession(const InstanceSpec& spec, const std::string&,
                                                          const SessionLimits& limits) {
  std::string path = std::filesystem::absolute(DatabaseFile(spec)).string();
  ASSIGN_OR_RETURN(auto db, sqlite::Db::Open(path, SQLITE_OPEN_READWRITE));
  auto session = std::make_unique<SqliteSession>(std::move(db), GateFor(path), limits);
  RETURN_IF_ERROR(session->Confine());
  return std::unique_ptr<Session>(std::move(session));
}

}  // namespace strata::engine
