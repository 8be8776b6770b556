#include "common/sqlite.h"

#include "common/sqlite_vfs.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace strata::sqlite {
namespace {

// SQLite's error as a Status: a full disk as NoSpace with the OS's words
// for it, so callers can tell it (and free room) and users read the cause.
Status SqliteError(sqlite3* db, int rc, std::string_view prefix, std::string_view msg) {
  if ((rc & 0xff) == SQLITE_FULL || (db && sqlite3_system_errno(db) == ENOSPC)) {
    return Status(errors::kNoSpace, fmt::format("{}: {} ({})", prefix, msg, std::strerror(ENOSPC)));
  }
  return Status(errors::kInternalFailure, fmt::format("{}: {}", prefix, msg));
}

}  // namespace

Stmt& Stmt::operator=(Stmt&& o) noexcept {
  if (this != &o) {
    if (s_) sqlite3_finalize(s_);
    db_ = o.db_;
    s_ = o.s_;
    o.s_ = nullptr;
  }
  return *this;
}

Stmt::~Stmt() {
  if (s_) sqlite3_finalize(s_);
}

Stmt& Stmt::Bind(int i, int64_t v) {
  sqlite3_bind_int64(s_, i, v);
  return *this;
}
Stmt& Stmt::Bind(int i, double v) {
  sqlite3_bind_double(s_, i, v);
  return *this;
}
Stmt& Stmt::Bind(int i, std::string_view v) {
  sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Stmt& Stmt::Bind(int i, const std::optional<int>& v) {
  return v ? Bind(i, static_cast<int64_t>(*v)) : BindNull(i);
}
Stmt& Stmt::BindNull(int i) {
  sqlite3_bind_null(s_, i);
  return *this;
}

Result<bool> Stmt::Step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteError(db_, rc, "sqlite", sqlite3_errmsg(db_));
}

Status Stmt::Run() {
  for (;;) {
    ASSIGN_OR_RETURN(bool row, Step());
    if (!row) return Status::Ok();
  }
}

std::string Stmt::Text(int col) const {
  const unsigned char* t = sqlite3_column_text(s_, col);
  if (!t) return "";
  return std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(s_, col));
}

Db& Db::operator=(Db&& o) noexcept {
  if (this != &o) {
    if (db_) sqlite3_close_v2(db_);
    db_ = o.db_;
    o.db_ = nullptr;
  }
  return *this;
}

Db::~Db() {
  if (db_) sqlite3_close_v2(db_);
}

Result<Db> Db::Open(const std::string& path, int flags) {
  InstallShmSafeVfs();
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    Status st = (rc & 0xff) == SQLITE_FULL ? SqliteError(db, rc, "open " + path, msg)
                                           : Status(errors::kIoError, fmt::format("open {}: {}", path, msg));
    if (db) sqlite3_close_v2(db);
    return st;
  }
  sqlite3_busy_timeout(db, 10000);
  sqlite3_extended_result_codes(db, 1);
  return Db(db);
}

Status Db::Exec(std::string_view sql) {
  char* err = nullptr;
  std::string s(sql);
  if (int rc = sqlite3_exec(db_, s.c_str(), nullptr, nullptr, &err); rc != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return SqliteError(db_, rc, "sqlite", msg);
  }
  return Status::Ok();
}

Result<Stmt> Db::Prepare(std::string_view sql) {
  sqlite3_stmt* s = nullptr;
  if (int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &s, nullptr); rc != SQLITE_OK) {
    return SqliteError(db_, rc, "sqlite prepare", sqlite3_errmsg(db_));
  }
  return Stmt(db_, s);
}

std::string LibraryVersion() { return sqlite3_libversion(); }

}  // namespace strata::sqlite
