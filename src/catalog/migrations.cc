#include "catalog/migrations.h"

#include <fmt/format.h>

#include <array>

namespace strata::catalog {
namespace {

// Append only: never edit a migration that has shipped.
constexpr std::array<const char*, 3> kMigrations = {
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
};

}  // namespace

int LatestSchemaVersion() { return static_cast<int>(kMigrations.size()); }

int CurrentSchemaVersion(sqlite::Db& db) {
  auto s = db.Prepare("PRAGMA user_version");
  if (!s.ok()) return -1;
  auto row = s->Step();
  if (!row.ok() || !*row) return -1;
  return static_cast<int>(s->Int(0));
}

Status Migrate(sqlite::Db& db) {
  int have = CurrentSchemaVersion(db);
  if (have < 0) return Status(errors::kInternalFailure, "catalog: cannot read schema version");
  if (have > LatestSchemaVersion()) {
    return Status(errors::kInternalFailure,
                  fmt::format("catalog schema version {} is newer than this build knows ({})",
                              have, LatestSchemaVersion()));
  }
  for (int v = have; v < LatestSchemaVersion(); ++v) {
    RETURN_IF_ERROR(db.Exec("BEGIN IMMEDIATE"));
    Status st = db.Exec(kMigrations[v]);
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
