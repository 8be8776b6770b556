// catalog/: Strata's durable metadata (DESIGN: "catalog/ durable metadata").
//
// One SQLite database (DATA/catalog.db) in WAL mode with versioned schema
// migrations. The catalog stores records; it knows nothing of HTTP, engines or
// repositories, and holds no business rules beyond keys and uniqueness. Every
// state change is a transaction: single calls are atomic on their own, and
// InTransaction() groups several into one.
//
// Thread safety: all methods may be called from any thread; calls are
// serialized on one connection (the catalog is small and never the bottleneck).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "catalog/states.h"
#include "common/clock.h"
#include "common/status.h"

namespace strata::catalog {

// The change-log half of a point-in-time restore: after the base snapshot's
// files are in place, replay `resource_id`'s change log from transaction
// seq_before+1 up to `target`.
struct PointInTimeReplay {
  std::string resource_id;  // the DbiResourceId whose change log is replayed
  int64_t seq_before = 0;   // the base holds every transaction up to here
  TimePoint time_before{};  // when seq_before was read
  TimePoint target{};       // the restore time
};

// A database instance as stored. Wire names live in api/; these are the domain
// fields. Times are microseconds since the epoch (TimePoint).
struct InstanceRecord {
  std::string id;           // DBInstanceIdentifier, lower-case
  std::string resource_id;  // DbiResourceId, "db-" + 26 upper-case alphanumerics; never reused
  std::string engine;       // "sqlite", "postgres"
  std::string engine_version;
  InstanceStatus status = InstanceStatus::kCreating;
  std::string instance_class;
  int allocated_storage_gib = 0;
  std::string db_name;
  std::string master_username;
  int port = 0;
  TimePoint create_time{};
  int backup_retention_days = 1;
  std::string backup_window;       // "hh:mm-hh:mm" UTC
  std::string maintenance_window;  // "ddd:hh:mm-ddd:hh:mm" UTC
  bool deletion_protection = false;
  bool copy_tags_to_snapshot = false;
  std::optional<int> pending_backup_retention_days;  // waits for the maintenance window
  std::string data_path;  // where the engine keeps the instance's files
  std::string status_reason;
  // A restore not finished yet: the repo snapshot id to restore from, and for
  // a point-in-time restore the log to replay onto it. Cleared when the
  // instance becomes available; a restart resumes it.
  std::string restore_snapshot;
  std::optional<PointInTimeReplay> restore_replay;
  // Engine-private settings (e.g. a postgres password verifier), never returned by the API.
  std::string engine_state;
};

// A DB snapshot (manual or automated) as stored. repo_snapshot_id names the
// manifest in the backup repository; it is unique forever, so a deleted
// identifier can be reused without touching an old manifest.
struct SnapshotRecord {
  std::string id;  // DBSnapshotIdentifier: lower-case; automated ones "rds:ID-YYYY-MM-DD-HH-MM"
  std::string instance_id;
  std::string instance_resource_id;  // DbiResourceId of the source instance
  SnapshotType snapshot_type = SnapshotType::kManual;
  SnapshotStatus status = SnapshotStatus::kCreating;
  int percent_progress = 0;
  std::string engine;
  std::string engine_version;
  int allocated_storage_gib = 0;
  int port = 0;
  std::string db_name;
  std::string master_username;
  std::string instance_class;
  TimePoint create_time{};           // SnapshotCreateTime (the copy's own time for a copy)
  TimePoint original_create_time{};  // kept by copies
  TimePoint instance_create_time{};
  TimePoint database_time{};  // SnapshotDatabaseTime: the newest transaction inside
  std::string repo_snapshot_id;
  std::string source_snapshot_id;  // set on copies
  int64_t logical_bytes = 0;
  int64_t stored_bytes = 0;
  std::string status_reason;
  int backup_retention_days = 0;
  std::string backup_window;
  // Where the snapshot sits in its instance's change log: it holds every
  // transaction up to log_seq_before and none after log_seq_after (-1: taken
  // without capture, so not a base for point-in-time restore). The times are
  // when those two were read.
  int64_t log_seq_before = -1;
  int64_t log_seq_after = -1;
  TimePoint log_time_before{};
  TimePoint log_time_after{};
};

// A stretch of an instance's history that point-in-time restore cannot reach.
// breaks: the change log itself is discontinuous there (commits may be
// missing), so no snapshot before it can be replayed past it.
struct LogGap {
  TimePoint from{};
  TimePoint to{};
  bool breaks = false;
  std::string reason;
};

// The automated backups of one instance (by DbiResourceId, which outlives a
// deleted instance's identifier): the state of its change-log capture and the
// instance settings a restore needs once the instance is gone.
struct AutomatedBackupRecord {
  std::string resource_id;
  std::string instance_id;
  AutomatedBackupStatus status = AutomatedBackupStatus::kActive;  // stored: active, retained
  int retention_days = 1;
  std::string backup_window;
  std::string engine;
  std::string engine_version;
  std::string instance_class;
  std::string db_name;
  std::string master_username;
  int port = 0;
  int allocated_storage_gib = 0;
  TimePoint instance_create_time{};
  std::string capture_position;   // the engine's resume point
  int64_t last_seq = 0;           // the newest durable change-log transaction
  TimePoint restorable_until{};   // every commit up to here is durable in the log
  std::vector<LogGap> gaps;
};

struct Tag {
  std::string key;
  std::string value;
};

struct EventRecord {
  int64_t seq = 0;
  TimePoint time{};
  std::string source_type;  // db-instance, db-snapshot, ...
  std::string source_id;
  std::string source_arn;
  std::string message;
  std::vector<std::string> categories;
};

struct EventQuery {
  std::optional<std::string> source_type;
  std::optional<std::string> source_id;
  TimePoint start{};
  TimePoint end = TimePoint::max();
  std::vector<std::string> categories;  // any of; empty = all
};

class Catalog {
 public:
  // Opens or creates DATA/catalog.db and runs pending migrations.
  static Result<std::unique_ptr<Catalog>> Open(const std::filesystem::path& file);
  ~Catalog();

  int SchemaVersion() const;

  // Runs fn inside one transaction: committed if fn returns OK, rolled back
  // otherwise. Catalog calls made by fn on this thread join the transaction.
  // A write that finds the disk full (NoSpace) calls `make_room` once and,
  // if it says it freed some, runs again (fn too: it was rolled back).
  Status InTransaction(const std::function<Status()>& fn);
  // What frees room for a catalog write on a full disk (the disk reserve).
  void SetNoSpaceHandler(std::function<bool()> make_room);

  // Instances. PutInstance inserts or replaces by id.
  Status InsertInstance(const InstanceRecord& r);  // DBInstanceAlreadyExists if id taken
  Status UpdateInstance(const InstanceRecord& r);  // DBInstanceNotFound if absent
  Status DeleteInstance(const std::string& id);
  // Gives instance `old_id` the identifier `new_id`, with its automated
  // backups and the tags under its ARN (old_arn -> new_arn). Snapshots keep the
  // identifier they were taken under, as in RDS. DBInstanceAlreadyExists if
  // new_id is taken. Call inside InTransaction.
  Status RenameInstance(const std::string& old_id, const std::string& new_id, const std::string& old_arn,
                        const std::string& new_arn);
  Result<InstanceRecord> GetInstance(const std::string& id);  // DBInstanceNotFound
  std::optional<InstanceRecord> FindInstanceByResourceId(const std::string& resource_id);
  std::vector<InstanceRecord> ListInstances();  // ordered by id

  // Snapshots.
  Status InsertSnapshot(const SnapshotRecord& r);  // DBSnapshotAlreadyExists if id taken
  Status UpdateSnapshot(const SnapshotRecord& r);  // DBSnapshotNotFound if absent
  Status DeleteSnapshot(const std::string& id);
  Result<SnapshotRecord> GetSnapshot(const std::string& id);  // DBSnapshotNotFound
  std::vector<SnapshotRecord> ListSnapshots();                // ordered by id

  // Automated backups, by DbiResourceId. Put inserts or replaces.
  Status PutAutomatedBackup(const AutomatedBackupRecord& r);
  Result<AutomatedBackupRecord> GetAutomatedBackup(const std::string& resource_id);  // DBInstanceAutomatedBackupNotFound
  std::vector<AutomatedBackupRecord> ListAutomatedBackups();
  Status DeleteAutomatedBackup(const std::string& resource_id);

  // Tags, per resource ARN. SetTags overwrites keys that exist.
  Status SetTags(const std::string& arn, const std::vector<Tag>& tags);
  Status RemoveTags(const std::string& arn, const std::vector<std::string>& keys);
  std::vector<Tag> ListTags(const std::string& arn);
  Status DeleteAllTags(const std::string& arn);

  // Events (DescribeEvents).
  Status AddEvent(const EventRecord& e);
  std::vector<EventRecord> ListEvents(const EventQuery& q);
  Status DeleteEventsBefore(TimePoint t);

  // A small key/value table for server-wide settings (account id, ...).
  std::optional<std::string> GetSetting(const std::string& key);
  Status PutSetting(const std::string& key, const std::string& value);

  class Impl;

 private:
  explicit Catalog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::catalog
