// control/: the model and its state machines. Instances today; snapshots,
// automated backups, restores, plans and costs join here. Every operation
// takes domain requests and returns domain values or a Status with the AWS
// error code the botocore model names; api/ only translates wire <-> these.
//
// Long work (creating, deleting an instance) runs on the control plane's own
// worker threads; the caller gets the record in its transitional state
// (creating, deleting) at once, as RDS answers. After a restart, Recover()
// finishes or fails every transition that was under way (DESIGN invariant 4).
//
// Thread safety: every public method may be called from any thread.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "catalog/catalog.h"
#include "common/clock.h"
#include "common/disk_space.h"
#include "common/status.h"
#include "engine/engine.h"

namespace strata::control {

class BackupStore;

struct Config {
  std::filesystem::path data_dir;
  std::string region = "us-east-1";
  const Clock* clock = nullptr;  // not owned; must outlive the ControlPlane
  int worker_threads = 2;
  int manual_snapshot_quota = 100;  // RDS's default per region
  // The backup repository encrypts at rest (reported as Encrypted / StorageEncrypted).
  bool backups_encrypted = false;
  // What one Data API call may use (statement deadline, lock wait, result size).
  engine::SessionLimits data_api_limits;
  // Free-space watch and reserve (common/disk_space.h); not owned; none: no watch.
  disk::DiskGuard* disk = nullptr;
};

using catalog::Tag;
using catalog::AutomatedBackupStatus;
using catalog::InstanceStatus;
using catalog::SnapshotStatus;
using catalog::SnapshotType;

struct Instance {
  catalog::InstanceRecord record;
  std::string arn;
  engine::Endpoint endpoint;
  std::vector<Tag> tags;
  std::optional<TimePoint> latest_restorable_time;  // unset: nothing restorable yet
  bool backups_encrypted = false;
};

struct Snapshot {
  catalog::SnapshotRecord record;
  std::string arn;
  std::vector<Tag> tags;
  bool encrypted = false;
};

struct CreateSnapshotRequest {
  std::string snapshot_id;
  std::string instance_id;
  std::vector<Tag> tags;
};

// DescribeDBSnapshots: every set field must match (lists: any of).
struct SnapshotQuery {
  std::optional<std::string> snapshot_id;
  std::optional<std::string> instance_id;
  std::optional<SnapshotType> snapshot_type;  // unset: both
  std::vector<std::string> snapshot_ids;
  std::vector<std::string> instance_ids;
  std::vector<std::string> resource_ids;
  std::vector<std::string> snapshot_types;  // wire names (Filters): "manual", "automated"
  std::vector<std::string> engines;
};

struct CopySnapshotRequest {
  std::string source_id;  // an id, "rds:..." automated id, or a snapshot ARN
  std::string target_id;
  bool copy_tags = false;
  std::vector<Tag> tags;
};

struct RestoreFromSnapshotRequest {
  std::string instance_id;
  std::string snapshot_id;
  std::optional<std::string> engine;  // if given, must be the backup's
  std::optional<std::string> instance_class;
  std::optional<int> port;
  std::optional<std::string> db_name;
  std::optional<int> allocated_storage_gib;
  std::optional<bool> deletion_protection;
  std::optional<bool> copy_tags_to_snapshot;
  std::optional<int> backup_retention_days;
  std::optional<std::string> backup_window;
  std::vector<Tag> tags;
};

struct PointInTimeRestoreRequest {
  // The source: exactly one of these.
  std::optional<std::string> source_instance_id;
  std::optional<std::string> source_resource_id;
  std::optional<std::string> source_backup_arn;  // arn:...:auto-backup:ab-...
  std::optional<TimePoint> restore_time;
  bool use_latest_restorable_time = false;
  // The new instance: instance_id is the target; snapshot_id is unused.
  RestoreFromSnapshotRequest target;
};

// The automated backups of one instance, current or deleted (retained).
struct AutomatedBackup {
  catalog::AutomatedBackupRecord record;
  std::string arn;           // arn:aws:rds:REGION:ACCOUNT:auto-backup:ab-...
  std::string instance_arn;
  std::optional<TimePoint> earliest;  // the restore window; unset: none yet
  std::optional<TimePoint> latest;
  bool encrypted = false;
};

struct AutomatedBackupQuery {
  std::optional<std::string> resource_id;
  std::optional<std::string> instance_id;
  std::optional<std::string> arn;
  std::vector<std::string> statuses;  // Filters: wire names ("active", "retained", ...)
  std::vector<std::string> instance_ids;
  std::vector<std::string> resource_ids;
};

struct CreateInstanceRequest {
  std::string id;
  std::string instance_class;
  std::string engine;
  std::optional<std::string> engine_version;
  std::optional<int> allocated_storage_gib;
  std::optional<std::string> db_name;
  std::optional<std::string> master_username;
  std::optional<std::string> master_password;
  std::optional<int> port;
  std::optional<int> backup_retention_days;
  std::optional<std::string> backup_window;
  std::optional<std::string> maintenance_window;
  std::optional<bool> deletion_protection;
  std::optional<bool> copy_tags_to_snapshot;
  std::vector<Tag> tags;
};

struct ModifyInstanceRequest {
  std::string id;
  std::optional<int> backup_retention_days;
  std::optional<std::string> backup_window;
  std::optional<std::string> maintenance_window;
  std::optional<bool> deletion_protection;
  std::optional<bool> copy_tags_to_snapshot;
  std::optional<std::string> instance_class;
  std::optional<int> allocated_storage_gib;
  std::optional<std::string> master_password;  // applied at once, as RDS does
  // Renames the instance (its ARN changes; snapshots keep the old name, as in
  // RDS). Only with apply_immediately, and only while it is available.
  std::optional<std::string> new_id;
  bool apply_immediately = false;
};

struct DeleteInstanceRequest {
  std::string id;
  bool skip_final_snapshot = false;
  std::optional<std::string> final_snapshot_id;
  bool delete_automated_backups = true;
};

struct EventFilter {
  std::optional<std::string> source_type;
  std::optional<std::string> source_id;
  std::optional<TimePoint> start;
  std::optional<TimePoint> end;
  std::optional<int> duration_minutes;
  std::vector<std::string> categories;
};

// A Data API transaction or statement target.
struct DataTarget {
  std::string resource_arn;
  std::string database;
};

class ControlPlane {
 public:
  static Result<std::unique_ptr<ControlPlane>> Open(Config config,
                                                    std::unique_ptr<catalog::Catalog> catalog,
                                                    std::unique_ptr<BackupStore> backups);
  ~ControlPlane();

  const std::string& AccountId() const;
  const std::string& Region() const;
  std::string InstanceArn(const std::string& id) const;

  // Finishes or fails transitions interrupted by a crash; starts engines of
  // available instances. Called once by Open.
  Status Recover();
  // Waits for running work to finish and stops the workers.
  void Shutdown();

  Result<Instance> CreateInstance(const CreateInstanceRequest& req);
  Result<Instance> DescribeInstance(const std::string& id);
  std::vector<Instance> ListInstances();
  Result<Instance> ModifyInstance(const ModifyInstanceRequest& req);
  Result<Instance> DeleteInstance(const DeleteInstanceRequest& req);
  // Restarts the instance's server (rebooting -> available); the change log
  // carries on across it.
  Result<Instance> RebootInstance(const std::string& id, bool force_failover);

  // Snapshots. Create answers `creating` at once; the copy runs on a worker
  // while the instance reports `backing-up` and keeps serving.
  Result<Snapshot> CreateSnapshot(const CreateSnapshotRequest& req);
  // nullopt snapshot_id: all; an unknown snapshot_id: DBSnapshotNotFound.
  Result<std::vector<Snapshot>> DescribeSnapshots(const SnapshotQuery& query);
  Result<Snapshot> DeleteSnapshot(const std::string& id);
  Result<Snapshot> CopySnapshot(const CopySnapshotRequest& req);
  // Always a new instance; the snapshot and its source are not touched.
  Result<Instance> RestoreFromSnapshot(const RestoreFromSnapshotRequest& req);
  std::string SnapshotArn(const std::string& id) const;

  // Automated backups and point-in-time restore. Always a new instance.
  Result<Instance> RestoreToPointInTime(const PointInTimeRestoreRequest& req);
  Result<std::vector<AutomatedBackup>> DescribeAutomatedBackups(const AutomatedBackupQuery& query);
  // Only retained backups (of a deleted instance) can be deleted.
  Result<AutomatedBackup> DeleteAutomatedBackup(const std::string& resource_id_or_arn);
  // One scheduling pass (daily automated snapshots, retention, captures).
  // A background thread runs it every second; tests driving a ManualClock call it.
  void RunScheduler();

  // Tags on any resource ARN Strata owns (instances and snapshots).
  Status AddTags(const std::string& arn, const std::vector<Tag>& tags);
  Status RemoveTags(const std::string& arn, const std::vector<std::string>& keys);
  Result<std::vector<Tag>> ListTags(const std::string& arn);

  std::vector<catalog::EventRecord> DescribeEvents(const EventFilter& filter);

  // RDS Data API.
  Result<engine::StatementResult> ExecuteStatement(const DataTarget& target,
                                                   const std::string& sql,
                                                   const std::vector<engine::Parameter>& params,
                                                   const std::optional<std::string>& transaction_id);
  Result<std::string> BeginTransaction(const DataTarget& target);
  Status CommitTransaction(const std::string& resource_arn, const std::string& transaction_id);
  Status RollbackTransaction(const std::string& resource_arn, const std::string& transaction_id);

  // The database file or server of an instance, for `strata instance path`.
  Result<engine::Endpoint> InstanceEndpoint(const std::string& id);

  class Impl;

 private:
  explicit ControlPlane(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::control
