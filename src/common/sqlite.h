// A thin RAII layer over the SQLite C API, shared by the catalog and the
// sqlite engine so neither repeats handle and statement bookkeeping.
// Not thread-safe: a Db and its Stmts belong to one thread at a time.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace strata::sqlite {

class Stmt {
 public:
  Stmt() = default;
  Stmt(sqlite3* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  Stmt(Stmt&& o) noexcept : db_(o.db_), s_(o.s_) { o.s_ = nullptr; }
  Stmt& operator=(Stmt&& o) noexcept;
  ~Stmt();

  // Bind by 1-based index. Chainable.
  Stmt& Bind(int i, int64_t v);
  Stmt& Bind(int i, int v) { return Bind(i, static_cast<int64_t>(v)); }
  Stmt& Bind(int i, bool v) { return Bind(i, static_cast<int64_t>(v ? 1 : 0)); }
  Stmt& Bind(int i, double v);
  Stmt& Bind(int i, std::string_view v);
  Stmt& Bind(int i, const char* v) { return Bind(i, std::string_view(v)); }
  Stmt& Bind(int i, const std::string& v) { return Bind(i, std::string_view(v)); }
  Stmt& Bind(int i, const std::optional<int>& v);
  Stmt& BindNull(int i);

  // true: a row is ready; false: done. An error carries SQLite's message.
  Result<bool> Step();
  // Steps to completion, for statements that return no rows.
  Status Run();

  int64_t Int(int col) const { return sqlite3_column_int64(s_, col); }
  double Double(int col) const { return sqlite3_column_double(s_, col); }
  std::string Text(int col) const;
  bool IsNull(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  sqlite3_stmt* get() const { return s_; }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* s_ = nullptr;
};

class Db {
 public:
  Db() = default;
  Db(Db&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Db& operator=(Db&& o) noexcept;
  ~Db();

  // flags as sqlite3_open_v2 (default: read-write, create).
  static Result<Db> Open(const std::string& path,
                         int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);

  Status Exec(std::string_view sql);
  Result<Stmt> Prepare(std::string_view sql);
  std::string ErrorMessage() const { return db_ ? sqlite3_errmsg(db_) : "no database"; }
  sqlite3* get() const { return db_; }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_ = nullptr;
};

// SQLite's runtime library version, e.g. "3.40.1".
std::string LibraryVersion();

}  // namespace strata::sqlite
