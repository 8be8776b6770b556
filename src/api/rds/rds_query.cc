#include "api/rds/rds_query.h"

#include <fmt/format.h>

#include <functional>
#include <map>

#include "api/rds/rds_parameters.h"
#include "api/rds/rds_xml.h"
#include "api/wire/public_error.h"
#include "api/wire/xml_writer.h"
#include "control/arn.h"

namespace strata::api {
namespace {

using Handler = std::function<Status(control::ControlPlane&, const QueryParams&, XmlWriter&)>;

struct Action {
  Handler handler;
  bool has_result = true;  // ops with no output shape answer with ResponseMetadata only
};

Result<std::optional<int>> OptInt(const QueryParams& p, std::string_view key, int64_t min, int64_t max) {
  ASSIGN_OR_RETURN(auto v, p.Int(key, min, max));
  if (!v) return std::optional<int>();
  return std::optional<int>(static_cast<int>(*v));
}

Result<std::vector<control::Tag>> TagsParam(const QueryParams& p) {
  ASSIGN_OR_RETURN(auto kvs, p.Tags());
  std::vector<control::Tag> out;
  for (auto& kv : kvs) out.push_back({kv.key, kv.value});
  return out;
}

Status UnknownFilter(const std::string& name) {
  return Status(errors::kInvalidParameterValue, fmt::format("Unrecognized filter name: {}", name));
}

bool AnyOf(const std::vector<std::string>& values, const std::string& v) {
  for (const auto& x : values)
    if (x == v) return true;
  return false;
}

// --- instances ---------------------------------------------------------------

Status CreateDBInstance(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  control::CreateInstanceRequest req;
  ASSIGN_OR_RETURN(req.id, p.Required("DBInstanceIdentifier"));
  ASSIGN_OR_RETURN(req.instance_class, p.Required("DBInstanceClass"));
  ASSIGN_OR_RETURN(req.engine, p.Required("Engine"));
  req.engine_version = p.Get("EngineVersion");
  ASSIGN_OR_RETURN(req.allocated_storage_gib, OptInt(p, "AllocatedStorage", 0, 1 << 30));
  req.db_name = p.Get("DBName");
  req.master_username = p.Get("MasterUsername");
  req.master_password = p.Get("MasterUserPassword");
  ASSIGN_OR_RETURN(req.port, OptInt(p, "Port", 0, 65535));
  ASSIGN_OR_RETURN(req.backup_retention_days, OptInt(p, "BackupRetentionPeriod", 0, 35));
  req.backup_window = p.Get("PreferredBackupWindow");
  req.maintenance_window = p.Get("PreferredMaintenanceWindow");
  ASSIGN_OR_RETURN(req.deletion_protection, p.Bool("DeletionProtection"));
  ASSIGN_OR_RETURN(req.copy_tags_to_snapshot, p.Bool("CopyTagsToSnapshot"));
  ASSIGN_OR_RETURN(req.tags, TagsParam(p));
  ASSIGN_OR_RETURN(auto inst, cp.CreateInstance(req));
  WriteInstance(x, inst);
  return Status::Ok();
}

Status DescribeDBInstances(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  ASSIGN_OR_RETURN(auto max_records, p.Int("MaxRecords", 20, 100));
  ASSIGN_OR_RETURN(auto filters, p.Filters());
  std::vector<control::Instance> all;
  if (auto id = p.Get("DBInstanceIdentifier")) {
    ASSIGN_OR_RETURN(auto one, cp.DescribeInstance(*id));
    all.push_back(std::move(one));
  } else {
    all = cp.ListInstances();
  }
  std::vector<control::Instance> matched;
  for (auto& inst : all) {
    bool keep = true;
    for (const auto& f : filters) {
      if (f.name == "db-instance-id") {
        keep = keep && (AnyOf(f.values, inst.record.id) || AnyOf(f.values, inst.arn));
      } else if (f.name == "dbi-resource-id") {
        keep = keep && AnyOf(f.values, inst.record.resource_id);
      } else if (f.name == "engine") {
        keep = keep && AnyOf(f.values, inst.record.engine);
      } else if (f.name == "db-cluster-id" || f.name == "domain") {
        keep = false;  // Strata has no clusters or directory domains
      } else {
        return UnknownFilter(f.name);
      }
    }
    if (keep) matched.push_back(std::move(inst));
  }
  auto page = Paginate(matched, p.Get("Marker"), max_records.value_or(100),
                       [](const control::Instance& i) { return i.record.id; });
  if (page.next_marker) x.Text("Marker", *page.next_marker);
  x.Open("DBInstances");
  for (const auto* inst : page.items) WriteInstance(x, *inst);
  x.Close();
  return Status::Ok();
}

Status ModifyDBInstance(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  control::ModifyInstanceRequest req;
  ASSIGN_OR_RETURN(req.id, p.Required("DBInstanceIdentifier"));
  ASSIGN_OR_RETURN(req.backup_retention_days, OptInt(p, "BackupRetentionPeriod", 0, 35));
  req.backup_window = p.Get("PreferredBackupWindow");
  req.maintenance_window = p.Get("PreferredMaintenanceWindow");
  req.master_password = p.Get("MasterUserPassword");
  ASSIGN_OR_RETURN(req.deletion_protection, p.Bool("DeletionProtection"));
  ASSIGN_OR_RETURN(req.copy_tags_to_snapshot, p.Bool("CopyTagsToSnapshot"));
  req.instance_class = p.Get("DBInstanceClass");
  req.new_id = p.Get("NewDBInstanceIdentifier");
  ASSIGN_OR_RETURN(req.allocated_storage_gib, OptInt(p, "AllocatedStorage", 0, 1 << 30));
  ASSIGN_OR_RETURN(auto apply, p.Bool("ApplyImmediately"));
  req.apply_immediately = apply.value_or(false);
  ASSIGN_OR_RETURN(auto inst, cp.ModifyInstance(req));
  WriteInstance(x, inst);
  return Status::Ok();
}

Status DeleteDBInstance(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  control::DeleteInstanceRequest req;
  ASSIGN_OR_RETURN(req.id, p.Required("DBInstanceIdentifier"));
  ASSIGN_OR_RETURN(auto skip, p.Bool("SkipFinalSnapshot"));
  req.skip_final_snapshot = skip.value_or(false);
  req.final_snapshot_id = p.Get("FinalDBSnapshotIdentifier");
  ASSIGN_OR_RETURN(auto delete_backups, p.Bool("DeleteAutomatedBackups"));
  req.delete_automated_backups = delete_backups.value_or(true);
  ASSIGN_OR_RETURN(auto inst, cp.DeleteInstance(req));
  WriteInstance(x, inst);
  return Status::Ok();
}

Status RebootDBInstance(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  ASSIGN_OR_RETURN(auto id, p.Required("DBInstanceIdentifier"));
  ASSIGN_OR_RETURN(auto failover, p.Bool("ForceFailover"));
  ASSIGN_OR_RETURN(auto inst, cp.RebootInstance(id, failover.value_or(false)));
  WriteInstance(x, inst);
  return Status::Ok();
}

// --- snapshots ---------------------------------------------------------------

Status CreateDBSnapshot(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  control::CreateSnapshotRequest req;
  ASSIGN_OR_RETURN(req.snapshot_id, p.Required("DBSnapshotIdentifier"));
  ASSIGN_OR_RETURN(req.instance_id, p.Required("DBInstanceIdentifier"));
  ASSIGN_OR_RETURN(req.tags, TagsParam(p));
  ASSIGN_OR_RETURN(auto snap, cp.CreateSnapshot(req));
  WriteSnapshot(x, snap);
  return Status::Ok();
}

Status DescribeDBSnapshots(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  ASSIGN_OR_RETURN(auto max_records, p.Int("MaxRecords", 20, 100));
  ASSIGN_OR_RETURN(auto filters, p.Filters());
  control::SnapshotQuery q;
  q.snapshot_id = p.Get("DBSnapshotIdentifier");
  q.instance_id = p.Get("DBInstanceIdentifier");
  if (auto rid = p.Get("DbiResourceId")) q.resource_ids.push_back(*rid);
  if (auto type = p.Get("SnapshotType")) {
    if (*type == "shared" || *type == "public" || *type == "awsbackup") {
      // Strata shares no snapshots across accounts and has no AWS Backup ones yet.
      x.Open("DBSnapshots").Close();
      return Status::Ok();
    }
    auto parsed = catalog::ParseSnapshotType(*type);
    if (!parsed.ok()) {
      return Status(errors::kInvalidParameterValue,
                    fmt::format("Invalid value for parameter SnapshotType: {}", *type));
    }
    q.snapshot_type = *parsed;
  }
  for (const auto& f : filters) {
    if (f.name == "db-instance-id") q.instance_ids = f.values;
    else if (f.name == "db-snapshot-id") q.snapshot_ids = f.values;
    else if (f.name == "dbi-resource-id") q.resource_ids = f.values;
    else if (f.name == "snapshot-type") q.snapshot_types = f.values;
    else if (f.name == "engine") q.engines = f.values;
    else return UnknownFilter(f.name);
  }
  ASSIGN_OR_RETURN(auto snaps, cp.DescribeSnapshots(q));
  auto page = Paginate(snaps, p.Get("Marker"), max_records.value_or(100),
                       [](const control::Snapshot& s) { return s.record.id; });
  if (page.next_marker) x.Text("Marker", *page.next_marker);
  x.Open("DBSnapshots");
  for (const auto* s : page.items) WriteSnapshot(x, *s);
  x.Close();
  return Status::Ok();
}

Status DeleteDBSnapshot(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  ASSIGN_OR_RETURN(auto id, p.Required("DBSnapshotIdentifier"));
  ASSIGN_OR_RETURN(auto snap, cp.DeleteSnapshot(id));
  WriteSnapshot(x, snap);
  return Status::Ok();
}

Status CopyDBSnapshot(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  control::CopySnapshotRequest req;
  ASSIGN_OR_RETURN(req.source_id, p.Required("SourceDBSnapshotIdentifier"));
  ASSIGN_OR_RETURN(req.target_id, p.Required("TargetDBSnapshotIdentifier"));
  ASSIGN_OR_RETURN(auto copy_tags, p.Bool("CopyTags"));
  req.copy_tags = copy_tags.value_or(false);
  ASSIGN_OR_RETURN(req.tags, TagsParam(p));
  ASSIGN_OR_RETURN(auto snap, cp.CopySnapshot(req));
  WriteSnapshot(x, snap);
  return Status::Ok();
}

// The new instance's settings, shared by both kinds of restore.
Status RestoredInstanceParams(const QueryParams& p, control::RestoreFromSnapshotRequest& req) {
  req.engine = p.Get("Engine");
  req.instance_class = p.Get("DBInstanceClass");
  ASSIGN_OR_RETURN(req.port, OptInt(p, "Port", 1150, 65535));
  req.db_name = p.Get("DBName");
  ASSIGN_OR_RETURN(req.allocated_storage_gib, OptInt(p, "AllocatedStorage", 1, 65536));
  ASSIGN_OR_RETURN(req.deletion_protection, p.Bool("DeletionProtection"));
  ASSIGN_OR_RETURN(req.copy_tags_to_snapshot, p.Bool("CopyTagsToSnapshot"));
  ASSIGN_OR_RETURN(req.backup_retention_days, OptInt(p, "BackupRetentionPeriod", 0, 35));
  req.backup_window = p.Get("PreferredBackupWindow");
  ASSIGN_OR_RETURN(req.tags, TagsParam(p));
  return Status::Ok();
}

Status RestoreDBInstanceFromDBSnapshot(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  control::RestoreFromSnapshotRequest req;
  ASSIGN_OR_RETURN(req.instance_id, p.Required("DBInstanceIdentifier"));
  if (p.Has("DBClusterSnapshotIdentifier")) {
    return Status(errors::kInvalidParameterCombination, "Strata has no DB clusters");
  }
  ASSIGN_OR_RETURN(req.snapshot_id, p.Required("DBSnapshotIdentifier"));
  RETURN_IF_ERROR(RestoredInstanceParams(p, req));
  ASSIGN_OR_RETURN(auto inst, cp.RestoreFromSnapshot(req));
  WriteInstance(x, inst);
  return Status::Ok();
}

// --- automated backups and point-in-time restore -----------------------------

Status RestoreDBInstanceToPointInTime(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  control::PointInTimeRestoreRequest req;
  req.source_instance_id = p.Get("SourceDBInstanceIdentifier");
  req.source_resource_id = p.Get("SourceDbiResourceId");
  req.source_backup_arn = p.Get("SourceDBInstanceAutomatedBackupsArn");
  ASSIGN_OR_RETURN(req.target.instance_id, p.Required("TargetDBInstanceIdentifier"));
  if (auto t = p.Get("RestoreTime")) {
    auto parsed = ParseIso8601(*t);
    if (!parsed) {
      return Status(errors::kInvalidParameterValue,
                    fmt::format("Invalid RestoreTime: {} (expected ISO 8601 UTC, e.g. 2026-11-23T09:00:00Z)", *t));
    }
    req.restore_time = *parsed;
  }
  ASSIGN_OR_RETURN(auto latest, p.Bool("UseLatestRestorableTime"));
  req.use_latest_restorable_time = latest.value_or(false);
  RETURN_IF_ERROR(RestoredInstanceParams(p, req.target));
  ASSIGN_OR_RETURN(auto inst, cp.RestoreToPointInTime(req));
  WriteInstance(x, inst);
  return Status::Ok();
}

Status DescribeDBInstanceAutomatedBackups(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  ASSIGN_OR_RETURN(auto max_records, p.Int("MaxRecords", 20, 100));
  ASSIGN_OR_RETURN(auto filters, p.Filters());
  control::AutomatedBackupQuery q;
  q.resource_id = p.Get("DbiResourceId");
  q.instance_id = p.Get("DBInstanceIdentifier");
  q.arn = p.Get("DBInstanceAutomatedBackupsArn");
  for (const auto& f : filters) {
    if (f.name == "status") q.statuses = f.values;
    else if (f.name == "db-instance-id") q.instance_ids = f.values;
    else if (f.name == "dbi-resource-id") q.resource_ids = f.values;
    else return UnknownFilter(f.name);
  }
  ASSIGN_OR_RETURN(auto backups, cp.DescribeAutomatedBackups(q));
  auto page = Paginate(backups, p.Get("Marker"), max_records.value_or(100),
                       [](const control::AutomatedBackup& b) { return b.record.resource_id; });
  if (page.next_marker) x.Text("Marker", *page.next_marker);
  x.Open("DBInstanceAutomatedBackups");
  for (const auto* b : page.items) WriteAutomatedBackup(x, *b, cp.Region());
  x.Close();
  return Status::Ok();
}

Status DeleteDBInstanceAutomatedBackup(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  auto rid = p.Get("DbiResourceId");
  auto arn = p.Get("DBInstanceAutomatedBackupsArn");
  if (rid.has_value() == arn.has_value()) {
    return Status(errors::kInvalidParameterCombination,
                  "Specify either DbiResourceId or DBInstanceAutomatedBackupsArn.");
  }
  ASSIGN_OR_RETURN(auto b, cp.DeleteAutomatedBackup(rid ? *rid : *arn));
  WriteAutomatedBackup(x, b, cp.Region());
  return Status::Ok();
}

// --- tags --------------------------------------------------------------------

Status AddTagsToResource(control::ControlPlane& cp, const QueryParams& p, XmlWriter&) {
  ASSIGN_OR_RETURN(auto arn, p.Required("ResourceName"));
  ASSIGN_OR_RETURN(auto tags, TagsParam(p));
  if (!p.Has("Tags") && tags.empty()) {
    return Status(errors::kMissingParameter, "The request must contain the parameter Tags");
  }
  return cp.AddTags(arn, tags);
}

Status RemoveTagsFromResource(control::ControlPlane& cp, const QueryParams& p, XmlWriter&) {
  ASSIGN_OR_RETURN(auto arn, p.Required("ResourceName"));
  ASSIGN_OR_RETURN(auto keys, p.List("TagKeys", "member"));
  if (!p.Has("TagKeys") && keys.empty()) {
    return Status(errors::kMissingParameter, "The request must contain the parameter TagKeys");
  }
  return cp.RemoveTags(arn, keys);
}

Status ListTagsForResource(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  ASSIGN_OR_RETURN(auto arn, p.Required("ResourceName"));
  ASSIGN_OR_RETURN(auto filters, p.Filters());
  if (!filters.empty()) {
    return Status(errors::kInvalidParameterValue, "ListTagsForResource supports no filters");
  }
  ASSIGN_OR_RETURN(auto tags, cp.ListTags(arn));
  WriteTagList(x, tags);
  return Status::Ok();
}

// --- events ------------------------------------------------------------------

Status DescribeEvents(control::ControlPlane& cp, const QueryParams& p, XmlWriter& x) {
  control::EventFilter f;
  f.source_id = p.Get("SourceIdentifier");
  f.source_type = p.Get("SourceType");
  static const std::vector<std::string> kSourceTypes = {
      "db-instance", "db-parameter-group", "db-security-group", "db-snapshot", "db-cluster",
      "db-cluster-snapshot", "custom-engine-version", "db-proxy", "blue-green-deployment"};
  if (f.source_type && !AnyOf(kSourceTypes, *f.source_type)) {
    return Status(errors::kInvalidParameterValue,
                  fmt::format("Invalid value for parameter SourceType: {}", *f.source_type));
  }
  if (f.source_id && !f.source_type) {
    return Status(errors::kInvalidParameterCombination,
                  "SourceType must be specified when SourceIdentifier is specified");
  }
  ASSIGN_OR_RETURN(f.start, p.Time("StartTime"));
  ASSIGN_OR_RETURN(f.end, p.Time("EndTime"));
  ASSIGN_OR_RETURN(f.duration_minutes, OptInt(p, "Duration", 0, 14 * 24 * 60 * 2));
  ASSIGN_OR_RETURN(f.categories, p.List("EventCategories", "EventCategory"));
  ASSIGN_OR_RETURN(auto max_records, p.Int("MaxRecords", 20, 100));
  auto events = cp.DescribeEvents(f);
  auto page = Paginate(events, p.Get("Marker"), max_records.value_or(100),
                       [](const catalog::EventRecord& e) { return fmt::format("{:020}", e.seq); });
  if (page.next_marker) x.Text("Marker", *page.next_marker);
  x.Open("Events");
  for (const auto* e : page.items) WriteEvent(x, *e);
  x.Close();
  return Status::Ok();
}

const std::map<std::string, Action, std::less<>>& Actions() {
  static const std::map<std::string, Action, std::less<>> kActions = {
      {"CreateDBInstance", {CreateDBInstance}},
      {"DescribeDBInstances", {DescribeDBInstances}},
      {"ModifyDBInstance", {ModifyDBInstance}},
      {"DeleteDBInstance", {DeleteDBInstance}},
      {"RebootDBInstance", {RebootDBInstance}},
      {"CreateDBSnapshot", {CreateDBSnapshot}},
      {"DescribeDBSnapshots", {DescribeDBSnapshots}},
      {"DeleteDBSnapshot", {DeleteDBSnapshot}},
      {"CopyDBSnapshot", {CopyDBSnapshot}},
      {"RestoreDBInstanceFromDBSnapshot", {RestoreDBInstanceFromDBSnapshot}},
      {"RestoreDBInstanceToPointInTime", {RestoreDBInstanceToPointInTime}},
      {"DescribeDBInstanceAutomatedBackups", {DescribeDBInstanceAutomatedBackups}},
      {"DeleteDBInstanceAutomatedBackup", {DeleteDBInstanceAutomatedBackup}},
      {"AddTagsToResource", {AddTagsToResource, false}},
      {"RemoveTagsFromResource", {RemoveTagsFromResource, false}},
      {"ListTagsForResource", {ListTagsForResource}},
      {"DescribeEvents", {DescribeEvents}},
  };
  return kActions;
}

}  // namespace

Result<std::string> RdsQueryApi::Respond(const QueryParams& params, const std::string& request_id) {
  auto action_name = params.Get("Action");
  if (!action_name || action_name->empty()) {
    return Status(errors::kMissingAction, "The request must contain the parameter Action");
  }
  const auto& actions = Actions();
  auto it = actions.find(*action_name);
  if (it == actions.end()) {
    return Status(errors::kInvalidAction,
                  fmt::format("The action {} is not valid for this web service.", *action_name));
  }
  auto version = params.Get("Version");
  if (!version) {
    return Status(errors::kMissingParameter, "The request must contain the parameter Version");
  }
  if (*version != kRdsVersion) {
    return Status(errors::kInvalidParameterValue,
                  fmt::format("Unsupported Version {}; Strata speaks {}", *version, kRdsVersion));
  }
  RETURN_IF_ERROR(CheckUnactedParameters(*action_name, params));
  XmlWriter x;
  x.Open(*action_name + "Response", kRdsXmlns);
  if (it->second.has_result) x.Open(*action_name + "Result");
  RETURN_IF_ERROR(it->second.handler(*control_, params, x));
  if (it->second.has_result) x.Close();
  x.Open("ResponseMetadata").Text("RequestId", request_id).Close();
  return x.Finish();
}

std::string RdsErrorXml(const Status& status, const std::string& request_id) {
  XmlWriter x;
  x.Open("ErrorResponse", kRdsXmlns);
  x.Open("Error");
  x.Text("Type", status.code().http_status >= 500 ? "Receiver" : "Sender");
  x.Text("Code", status.code().aws_code);
  x.Text("Message", status.message());
  x.Close();
  x.Text("RequestId", request_id);
  return x.Finish();
}

namespace {

void SendXml(http::Response& res, int status, std::string body, const std::string& request_id) {
  res.status = status;
  res.set_header("x-amzn-RequestId", request_id);
  res.set_content(std::move(body), "text/xml");
}

// A Query request's parameters: its query string, and for a POST its form
// body too.
Result<QueryParams> ParamsOf(const http::Request& req, std::string_view raw_query) {
  auto params = QueryParams::Parse(std::string(raw_query));
  if (params.ok() && req.method == "POST") {
    auto form = QueryParams::Parse(req.body);
    if (!form.ok()) return form.status();
    params->Merge(*form);
  }
  return params;
}

}  // namespace

Outcome RdsQueryApi::Handle(const Principal& /*caller: IAM authorizes against it*/, const Call& call,
                            http::Response& res) {
  Outcome out;
  std::string body;
  auto params = ParamsOf(call.http, call.raw_query);
  if (!params.ok()) {
    out.status = params.status();
  } else {
    out.action = params->Get("Action").value_or("");
    auto doc = Respond(*params, call.request_id);
    if (doc.ok()) body = std::move(*doc);
    else out.status = doc.status();
  }
  if (out.status.ok()) {
    SendXml(res, 200, std::move(body), call.request_id);
  } else {
    WriteError(PublicError(out.status, call.request_id), call.request_id, res);
  }
  out.http_status = res.status;
  return out;
}

void RdsQueryApi::WriteError(const Status& status, const std::string& request_id, http::Response& res) const {
  SendXml(res, status.code().http_status, RdsErrorXml(status, request_id), request_id);
}

std::string RdsQueryApi::ActionOf(const http::Request& req) const {
  size_t q = req.target.find('?');
  auto params = ParamsOf(req, q == std::string::npos ? std::string_view() : std::string_view(req.target).substr(q + 1));
  return params.ok() ? params->Get("Action").value_or("") : "";
}

std::unique_ptr<Service> NewRdsService(const ServiceContext& context) {
  return std::make_unique<RdsQueryApi>(context.control);
}

}  // namespace strata::api
