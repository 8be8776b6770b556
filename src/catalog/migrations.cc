#include "catalog/migrations.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <string>
#include <vector>

namespace strata::catalog {
namespace {

// Append only: never edit a migration that has shipped.
constexpr std::array<const char*, 4> kMigrations = {
    // 1: instances, tags, events, settings.
    R"sql(
    CREATE TABLE instances (
      id TEXT PRIMARY KEY,
      resource_id TEXT NOT NULL UNIQUE,
      engine TEXT NOT NULL,
      engine_version TEXT NOT NULL,
      status TEXT NOT NULL,
      instance_class TEXT NOT NULL,
      allocated_storage INTEGER NOT NULL,
      db_name TEXT NOT NULL,
      master_username TEXT NOT NULL,
      port INTEGER NOT NULL,
      create_time INTEGER NOT NULL,
      backup_retention INTEGER NOT NULL,
      backup_window TEXT NOT NULL,
      maintenance_window TEXT NOT NULL,
      deletion_protection INTEGER NOT NULL,
      copy_tags_to_snapshot INTEGER NOT NULL,
      pending_backup_retention INTEGER,
      data_path TEXT NOT NULL,
      status_reason TEXT NOT NULL,
      engine_state TEXT NOT NULL
    );
    CREATE TABLE tags (
      arn TEXT NOT NULL,
      key TEXT NOT NULL,
      value TEXT NOT NULL,
      PRIMARY KEY (arn, key)
    );
    CREATE TABLE events (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      time INTEGER NOT NULL,
      source_type TEXT NOT NULL,
      source_id TEXT NOT NULL,
      source_arn TEXT NOT NULL,
      message TEXT NOT NULL,
      categories TEXT NOT NULL
    );
    CREATE INDEX events_time ON events (time);
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    )sql",
    // 2: snapshots; instances remember a restore still to be carried out.
    R"sql(
    CREATE TABLE snapshots (
      id TEXT PRIMARY KEY,
      instance_id TEXT NOT NULL,
      instance_resource_id TEXT NOT NULL,
      snapshot_type TEXT NOT NULL,
      status TEXT NOT NULL,
      percent_progress INTEGER NOT NULL,
      engine TEXT NOT NULL,
      engine_version TEXT NOT NULL,
      allocated_storage INTEGER NOT NULL,
      port INTEGER NOT NULL,
      db_name TEXT NOT NULL,
      master_username TEXT NOT NULL,
      instance_class TEXT NOT NULL,
      create_time INTEGER NOT NULL,
      original_create_time INTEGER NOT NULL,
      instance_create_time INTEGER NOT NULL,
      database_time INTEGER NOT NULL,
      repo_snapshot_id TEXT NOT NULL UNIQUE,
      source_snapshot_id TEXT NOT NULL,
      logical_bytes INTEGER NOT NULL,
      stored_bytes INTEGER NOT NULL,
      status_reason TEXT NOT NULL,
      backup_retention INTEGER NOT NULL,
      backup_window TEXT NOT NULL
    );
    CREATE INDEX snapshots_instance ON snapshots (instance_id);
    ALTER TABLE instances ADD COLUMN restore_source TEXT NOT NULL DEFAULT '';
    )sql",
    // v3: automated backups (change-log capture state per DbiResourceId) and
    // where each snapshot sits in its instance's change log.
    R"sql(
    CREATE TABLE automated_backups (
      resource_id TEXT PRIMARY KEY,
      instance_id TEXT NOT NULL,
      status TEXT NOT NULL,
      body TEXT NOT NULL
    );
    ALTER TABLE snapshots ADD COLUMN log_seq_before INTEGER NOT NULL DEFAULT -1;
    ALTER TABLE snapshots ADD COLUMN log_seq_after INTEGER NOT NULL DEFAULT -1;
    ALTER TABLE snapshots ADD COLUMN log_time_before INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE snapshots ADD COLUMN log_time_after INTEGER NOT NULL DEFAULT 0;
    )sql",
    // v4: the restore under way in typed columns instead of restore_source's
    // "pitr|SNAPSHOT|RESOURCE|SEQ|TIME|TARGET" text (SplitRestoreSource
    // converts the rows, then drops restore_source).
    R"sql(
    ALTER TABLE instances ADD COLUMN restore_snapshot TEXT NOT NULL DEFAULT '';
    ALTER TABLE instances ADD COLUMN restore_log_resource_id TEXT NOT NULL DEFAULT '';
    ALTER TABLE instances ADD COLUMN restore_seq_before INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE instances ADD COLUMN restore_time_before INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE instances ADD COLUMN restore_target_time INTEGER;
    )sql",
};

// v4's rows: a restore_source is a repo snapshot id, or for a point-in-time
// restore "pitr|" and five '|'-separated fields. One that does not parse is
// kept as a snapshot id, as the code that wrote it read it back.
Status SplitRestoreSource(sqlite::Db& db) {
  constexpr std::string_view kPitrPrefix = "pitr|";
  std::vector<std::pair<std::string, std::string>> rows;  // id, restore_source
  {
    ASSIGN_OR_RETURN(auto s, db.Prepare("SELECT id, restore_source FROM instances WHERE restore_source != ''"));
    for (;;) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      rows.emplace_back(s.Text(0), s.Text(1));
    }
  }
  for (const auto& [id, source] : rows) {
    std::vector<std::string> parts;
    if (source.rfind(kPitrPrefix, 0) == 0) {
      size_t start = kPitrPrefix.size();
      for (size_t i = start; i <= source.size(); ++i) {
        if (i == source.size() || source[i] == '|') {
          parts.push_back(source.substr(start, i - start));
          start = i + 1;
        }
      }
    }
    ASSIGN_OR_RETURN(auto u, db.Prepare("UPDATE instances SET restore_snapshot = ?2, restore_log_resource_id = ?3, "
                                        "restore_seq_before = ?4, restore_time_before = ?5, "
                                        "restore_target_time = ?6 WHERE id = ?1"));
    u.Bind(1, id);
    if (parts.size() == 5) {
      u.Bind(2, parts[0])
          .Bind(3, parts[1])
          .Bind(4, static_cast<int64_t>(std::strtoll(parts[2].c_str(), nullptr, 10)))
          .Bind(5, static_cast<int64_t>(std::strtoll(parts[3].c_str(), nullptr, 10)))
          .Bind(6, static_cast<int64_t>(std::strtoll(parts[4].c_str(), nullptr, 10)));
    } else {
      u.Bind(2, source).Bind(3, "").Bind(4, int64_t{0}).Bind(5, int64_t{0}).BindNull(6);
    }
    RETURN_IF_ERROR(u.Run());
  }
  return db.Exec("ALTER TABLE instances DROP COLUMN restore_source");
}

// Row conversions SQL cannot say, run after the migration of the same version, in its transaction.
using DataStep = Status (*)(sqlite::Db&);
constexpr std::array<DataStep, kMigrations.size()> kDataSteps = {nullptr, nullptr, nullptr, SplitRestoreSource};

}  // namespace

int LatestSchemaVersion() { return static_cast<int>(kMigrations.size()); }

int CurrentSchemaVersion(sqlite::Db& db) {
  auto s = db.Prepare("PRAGMA user_version");
  if (!s.ok()) return -1;
  auto row = s->Step();
  if (!row.ok() || !*row) return -1;
  return static_cast<int>(s->Int(0));
}

Status Migrate(sqlite::Db& db, int target) {
  int have = CurrentSchemaVersion(db);
  if (have < 0) return Status(errors::kInternalFailure, "catalog: cannot read schema version");
  if (have > LatestSchemaVersion()) {
    return Status(errors::kInternalFailure,
                  fmt::format("catalog schema version {} is newer than this build knows ({})",
                              have, LatestSchemaVersion()));
  }
  for (int v = have; v < std::min(target, LatestSchemaVersion()); ++v) {
    RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
    Status st = db.Exec(kMigrations[v]);
    if (st.ok() && kDataSteps[v]) st = kDataSteps[v](db);
    if (st.ok()) st = db.Exec(fmt::format("PRAGMA user_version = {}", v + 1));
    if (!st.ok()) {
      (void)db.Exec("ROLLBACK");
      return st.WithContext(fmt::format("catalog migration {}", v + 1));
    }
    RETURN_IF_ERROR(db.Exec("COMMIT"));
  }
  return Status::Ok();
}

}  // namespace strata::catalog
