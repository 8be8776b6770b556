#include "api/rds/rds_xml.h"

namespace strata::api {

void WriteTagList(XmlWriter& x, const std::vector<control::Tag>& tags) {
  x.Open("TagList");
  for (const auto& t : tags) x.Open("Tag").Text("Key", t.key).Text("Value", t.value).Close();
  x.Close();
}

void WriteInstance(XmlWriter& x, const control::Instance& inst) {
  const auto& r = inst.record;
  x.Open("DBInstance");
  x.Text("DBInstanceIdentifier", r.id);
  x.Text("DBInstanceClass", r.instance_class);
  x.Text("Engine", r.engine);
  x.Text("DBInstanceStatus", ToString(r.status));
  if (!r.master_username.empty()) x.Text("MasterUsername", r.master_username);
  if (!r.db_name.empty()) x.Text("DBName", r.db_name);
  if (!inst.endpoint.address.empty()) {
    x.Open("Endpoint").Text("Address", inst.endpoint.address);
    if (inst.endpoint.port) x.Int("Port", inst.endpoint.port);
    x.Close();
  }
  x.Int("AllocatedStorage", r.allocated_storage_gib);
  x.Time("InstanceCreateTime", r.create_time);
  x.Text("PreferredBackupWindow", r.backup_window);
  x.Int("BackupRetentionPeriod", r.backup_retention_days);
  if (inst.latest_restorable_time) x.Time("LatestRestorableTime", *inst.latest_restorable_time);
  x.Text("PreferredMaintenanceWindow", r.maintenance_window);
  x.Open("PendingModifiedValues");
  if (r.pending_backup_retention_days) x.Int("BackupRetentionPeriod", *r.pending_backup_retention_days);
  x.Close();
  x.Bool("MultiAZ", false);
  x.Text("EngineVersion", r.engine_version);
  x.Bool("AutoMinorVersionUpgrade", false);
  x.Bool("PubliclyAccessible", false);
  x.Text("StorageType", "local");
  if (inst.endpoint.port) x.Int("DbInstancePort", inst.endpoint.port);
  // The database's own storage is not encrypted by Strata; its backups may be.
  x.Bool("StorageEncrypted", false);
  x.Text("DbiResourceId", r.resource_id);
  x.Bool("CopyTagsToSnapshot", r.copy_tags_to_snapshot);
  x.Text("DBInstanceArn", inst.arn);
  WriteTagList(x, inst.tags);
  x.Bool("DeletionProtection", r.deletion_protection);
  x.Text("BackupTarget", "region");
  x.Close();
}

void WriteSnapshot(XmlWriter& x, const control::Snapshot& snap) {
  const auto& r = snap.record;
  x.Open("DBSnapshot");
  x.Text("DBSnapshotIdentifier", r.id);
  x.Text("DBInstanceIdentifier", r.instance_id);
  // RDS reports the creation time once the snapshot is complete.
  if (r.status == control::SnapshotStatus::kAvailable || r.status == control::SnapshotStatus::kDeleted) {
    x.Time("SnapshotCreateTime", r.create_time);
    x.Time("OriginalSnapshotCreateTime", r.original_create_time);
    x.Time("SnapshotDatabaseTime", r.database_time);
  }
  x.Text("Engine", r.engine);
  x.Int("AllocatedStorage", r.allocated_storage_gib);
  x.Text("Status", ToString(r.status));
  if (r.port) x.Int("Port", r.port);
  x.Time("InstanceCreateTime", r.instance_create_time);
  if (!r.master_username.empty()) x.Text("MasterUsername", r.master_username);
  x.Text("EngineVersion", r.engine_version);
  x.Text("SnapshotType", ToString(r.snapshot_type));
  x.Int("PercentProgress", r.percent_progress);
  x.Text("StorageType", "local");
  x.Bool("Encrypted", snap.encrypted);
  x.Text("DBSnapshotArn", snap.arn);
  x.Bool("IAMDatabaseAuthenticationEnabled", false);
  x.Text("DbiResourceId", r.instance_resource_id);
  WriteTagList(x, snap.tags);
  x.Text("SnapshotTarget", "region");
  x.Close();
}

void WriteEvent(XmlWriter& x, const catalog::EventRecord& e) {
  x.Open("Event");
  x.Text("SourceIdentifier", e.source_id);
  x.Text("SourceType", e.source_type);
  x.Text("Message", e.message);
  x.Open("EventCategories");
  for (const auto& c : e.categories) x.Text("EventCategory", c);
  x.Close();
  x.Time("Date", e.time);
  x.Text("SourceArn", e.source_arn);
  x.Close();
}

void WriteAutomatedBackup(XmlWriter& x, const control::AutomatedBackup& b, const std::string& region) {
  const auto& r = b.record;
  x.Open("DBInstanceAutomatedBackup");
  x.Text("DBInstanceArn", b.instance_arn);
  x.Text("DbiResourceId", r.resource_id);
  x.Text("Region", region);
  x.Text("DBInstanceIdentifier", r.instance_id);
  x.Open("RestoreWindow");
  if (b.earliest) x.Time("EarliestTime", *b.earliest);
  if (b.latest) x.Time("LatestTime", *b.latest);
  x.Close();
  x.Int("AllocatedStorage", r.allocated_storage_gib);
  x.Text("Status", ToString(r.status));
  x.Int("Port", r.port);
  x.Time("InstanceCreateTime", r.instance_create_time);
  if (!r.master_username.empty()) x.Text("MasterUsername", r.master_username);
  x.Text("Engine", r.engine);
  x.Text("EngineVersion", r.engine_version);
  x.Bool("Encrypted", b.encrypted);
  x.Text("StorageType", "local");
  x.Int("BackupRetentionPeriod", r.retention_days);
  x.Text("DBInstanceAutomatedBackupsArn", b.arn);
  x.Text("BackupTarget", "region");
  x.Close();
}

}  // namespace strata::api
