#include "api/rds_xml.h"

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
  x.Text("DBInstanceStatus", r.status);
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
  x.Bool("StorageEncrypted", false);
  x.Text("DbiResourceId", r.resource_id);
  x.Bool("CopyTagsToSnapshot", r.copy_tags_to_snapshot);
  x.Text("DBInstanceArn", inst.arn);
  WriteTagList(x, inst.tags);
  x.Bool("DeletionProtection", r.deletion_protection);
  x.Text("BackupTarget", "region");
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

}  // namespace strata::api
