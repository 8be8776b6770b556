#include "control/instances.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "common/ids.h"

namespace strata::control {

void Instances::RegisterJobs(scheduler::Scheduler& scheduler) {
  scheduler.EveryPass("supervision", [this](TimePoint) {
    for (const auto& r : ctx_.catalog->ListInstances()) Supervise(r);
  });
}

Result<Instance> Instances::Create(const CreateInstanceRequest& req) {
  RETURN_IF_ERROR(ValidateIdentifier("DBInstanceIdentifier", req.id, 63));
  catalog::InstanceRecord r;
  r.id = ToLower(req.id);
  engine::Engine* eng = engine::FindEngine(req.engine);
  if (!eng) {
    return InvalidValue(
        fmt::format("Invalid DB engine: {}. Strata runs: {}", req.engine, fmt::join(engine::EngineNames(), ", ")));
  }
  r.engine = eng->Name();
  r.engine_version = req.engine_version.value_or(eng->DefaultVersion());
  if (!eng->SupportsVersion(r.engine_version)) {
    return InvalidCombination(fmt::format("Cannot find version {} for {}", r.engine_version, r.engine));
  }
  if (req.engine_version) r.engine_version = eng->DefaultVersion();
  if (req.instance_class.rfind("db.", 0) != 0 || req.instance_class.size() < 4) {
    return InvalidValue(fmt::format("Invalid DB instance class: {}", req.instance_class));
  }
  r.instance_class = req.instance_class;
  r.allocated_storage_gib = req.allocated_storage_gib.value_or(20);
  if (r.allocated_storage_gib < 1 || r.allocated_storage_gib > 65536) {
    return InvalidValue("Invalid storage size: AllocatedStorage must be from 1 to 65536 GiB");
  }
  r.backup_retention_days = req.backup_retention_days.value_or(1);
  if (r.backup_retention_days < 0 || r.backup_retention_days > 35) {
    return InvalidValue("Invalid BackupRetentionPeriod: must be from 0 to 35 days");
  }
  if (req.backup_window) {
    RETURN_IF_ERROR(ParseDailyWindow("PreferredBackupWindow", *req.backup_window, 30).status());
    r.backup_window = *req.backup_window;
  } else {
    r.backup_window = DefaultBackupWindow();
  }
  if (req.maintenance_window) {
    RETURN_IF_ERROR(ParseWeeklyWindow("PreferredMaintenanceWindow", *req.maintenance_window).status());
    r.maintenance_window = ToLower(*req.maintenance_window);
  } else {
    r.maintenance_window = DefaultMaintenanceWindow(r.backup_window);
  }
  if (Overlaps(*ParseDailyWindow("", r.backup_window, 30), *ParseWeeklyWindow("", r.maintenance_window))) {
    return InvalidValue("The backup window and maintenance window must not overlap.");
  }
  if (req.db_name) {
    const std::string& name = *req.db_name;
    bool word = std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isalnum(c) || c == '_'; });
    if (name.empty() || name.size() > 63 || !std::isalpha(static_cast<unsigned char>(name[0])) || !word) {
      return InvalidValue(
          "Invalid DBName: it must begin with a letter, contain only letters, digits and underscores, and be 1 to "
          "63 characters long");
    }
    r.db_name = *req.db_name;
  }
  if (req.master_username) {
    if (req.master_username->empty() || req.master_username->size() > 16 ||
        !std::isalpha(static_cast<unsigned char>((*req.master_username)[0]))) {
      return InvalidValue("Invalid MasterUsername: must begin with a letter and contain 1 to 16 characters");
    }
    r.master_username = *req.master_username;
  }
  if (req.master_password && req.master_password->size() < 8) {
    return InvalidValue("Invalid MasterUserPassword: must contain at least 8 characters");
  }
  if (req.port && (*req.port < 1150 || *req.port > 65535)) {
    return InvalidValue("Invalid Port: must be from 1150 to 65535");
  }
  if (eng->UsesPort()) {
    // A server engine needs its master user, as RDS requires for it.
    if (r.master_username.empty()) {
      return InvalidValue("The parameter MasterUsername must be provided and must not be blank.");
    }
    if (!req.master_password) {
      return InvalidValue("The parameter MasterUserPassword must be provided and must not be blank.");
    }
    ASSIGN_OR_RETURN(r.engine_state, eng->SealCredentials(r.master_username, *req.master_password));
    ASSIGN_OR_RETURN(r.port, ports_.Assign(req.port));
  } else {
    r.port = req.port.value_or(0);
  }
  if (req.tags.size() > kMaxTagsPerResource) {
    return InvalidValue(fmt::format("A resource may have at most {} tags", kMaxTagsPerResource));
  }
  for (const auto& t : req.tags) RETURN_IF_ERROR(ValidateTag(t.key, t.value));
  r.deletion_protection = req.deletion_protection.value_or(false);
  r.copy_tags_to_snapshot = req.copy_tags_to_snapshot.value_or(false);
  ctx_.StartInstanceRecord(r);

  RETURN_IF_ERROR(ctx_.RefuseIfDiskLow(errors::kStorageQuotaExceeded, "a new DB instance"));
  std::string arn = ctx_.InstanceArn(r.id);
  RETURN_IF_ERROR(ctx_.catalog->InTransaction([&]() -> Status {
    RETURN_IF_ERROR(ctx_.catalog->InsertInstance(r));
    return ctx_.catalog->SetTags(arn, req.tags);
  }));
  log::Info("instance creating", {{"instance", r.id}, {"engine", r.engine}});
  ctx_.workers->Submit([this, r] { FinishCreate(r); });
  return ToInstance(r);
}

Result<Instance> Instances::Describe(const std::string& id) {
  ASSIGN_OR_RETURN(auto r, ctx_.catalog->GetInstance(ToLower(id)));
  return ToInstance(r);
}

std::vector<Instance> Instances::List() {
  std::vector<Instance> out;
  for (const auto& r : ctx_.catalog->ListInstances()) out.push_back(ToInstance(r));
  return out;
}

Result<Instance> Instances::Modify(const ModifyInstanceRequest& req) {
  catalog::InstanceRecord updated;
  std::optional<std::string> renamed_from;
  RETURN_IF_ERROR(ctx_.catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto r, ctx_.catalog->GetInstance(ToLower(req.id)));
    if (r.status != InstanceStatus::kAvailable && r.status != InstanceStatus::kBackingUp) {
      return Status(errors::kInvalidDBInstanceState,
                    fmt::format("Database instance is not in available state (status {}).", ToString(r.status)));
    }
    if (req.backup_retention_days) {
      int days = *req.backup_retention_days;
      if (days < 0 || days > 35) {
        return InvalidValue("Invalid BackupRetentionPeriod: must be from 0 to 35 days");
      }
      // RDS applies 0 <-> non-zero in the next maintenance window unless told
      // to apply it now; any other change applies at once.
      bool toggles = (days == 0) != (r.backup_retention_days == 0);
      if (toggles && !req.apply_immediately) {
        r.pending_backup_retention_days = days;
      } else {
        r.backup_retention_days = days;
        r.pending_backup_retention_days.reset();
      }
    }
    std::string backup_window = req.backup_window.value_or(r.backup_window);
    std::string maintenance_window = req.maintenance_window ? ToLower(*req.maintenance_window) : r.maintenance_window;
    ASSIGN_OR_RETURN(auto bw, ParseDailyWindow("PreferredBackupWindow", backup_window, 30));
    ASSIGN_OR_RETURN(auto mw, ParseWeeklyWindow("PreferredMaintenanceWindow", maintenance_window));
    if (Overlaps(bw, mw)) {
      return InvalidValue("The backup window and maintenance window must not overlap.");
    }
    r.backup_window = backup_window;
    r.maintenance_window = maintenance_window;
    engine::Engine* password_engine = nullptr;
    if (req.master_password) {
      password_engine = engine::FindEngine(r.engine);
      if (!password_engine || !password_engine->UsesPort()) {
        return InvalidCombination(fmt::format("A {} instance has no master password.", r.engine));
      }
      ASSIGN_OR_RETURN(r.engine_state, password_engine->SealCredentials(r.master_username, *req.master_password));
    }
    if (req.deletion_protection) r.deletion_protection = *req.deletion_protection;
    if (req.copy_tags_to_snapshot) r.copy_tags_to_snapshot = *req.copy_tags_to_snapshot;
    if (req.instance_class) {
      if (req.instance_class->rfind("db.", 0) != 0 || req.instance_class->size() < 4) {
        return InvalidValue(fmt::format("Invalid DB instance class: {}", *req.instance_class));
      }
      r.instance_class = *req.instance_class;
    }
    if (req.allocated_storage_gib) {
      if (*req.allocated_storage_gib < r.allocated_storage_gib) {
        return InvalidValue("Invalid storage size: AllocatedStorage cannot be reduced");
      }
      if (*req.allocated_storage_gib > 65536) {
        return InvalidValue("Invalid storage size: AllocatedStorage must be at most 65536 GiB");
      }
      r.allocated_storage_gib = *req.allocated_storage_gib;
    }
    RETURN_IF_ERROR(ctx_.catalog->UpdateInstance(r));
    if (req.new_id && ToLower(*req.new_id) != r.id) {
      RETURN_IF_ERROR(ValidateIdentifier("NewDBInstanceIdentifier", *req.new_id, 63));
      if (!req.apply_immediately) {
        return InvalidCombination(
            "Strata renames an instance only with ApplyImmediately; it does not defer a rename to the "
            "maintenance window.");
      }
      if (r.status != InstanceStatus::kAvailable) {
        return Status(
            errors::kInvalidDBInstanceState,
            fmt::format("Database instance {} can be renamed only while available (it is {}).", r.id, ToString(r.status)));
      }
      std::string new_id = ToLower(*req.new_id);
      RETURN_IF_ERROR(ctx_.catalog->RenameInstance(r.id, new_id, ctx_.InstanceArn(r.id), ctx_.InstanceArn(new_id)));
      renamed_from = r.id;
      r.id = new_id;
    }
    // The server's password changes last: a request refused above changes
    // nothing, and if the server refuses, the catalog's change rolls back.
    if (password_engine) RETURN_IF_ERROR(password_engine->SetMasterPassword(SpecOf(r), r.engine_state));
    updated = r;
    return Status::Ok();
  }));
  if (renamed_from) {
    ctx_.Event("db-instance", updated.id, ctx_.InstanceArn(updated.id),
               fmt::format("Renamed instance from {} to {}", *renamed_from, updated.id), {"configuration change"});
    log::Info("instance renamed", {{"from", *renamed_from}, {"to", updated.id}});
  }
  ctx_.Event("db-instance", updated.id, ctx_.InstanceArn(updated.id), "Finished applying modification to DB instance",
             {"configuration change"});
  if (req.backup_retention_days && !updated.pending_backup_retention_days) automated_.OnRetentionChanged(updated);
  return ToInstance(updated);
}

Result<Instance> Instances::Delete(const DeleteInstanceRequest& req) {
  catalog::InstanceRecord deleting;
  std::optional<catalog::SnapshotRecord> final_snapshot;
  ctx_.MakeRoom("DeleteDBInstance");
  RETURN_IF_ERROR(ctx_.catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto r, ctx_.catalog->GetInstance(ToLower(req.id)));
    if (r.deletion_protection) {
      return InvalidCombination(
          "Cannot delete protected DB Instance, please disable deletion protection and try again.");
    }
    if (req.skip_final_snapshot && req.final_snapshot_id) {
      return InvalidCombination(
          "FinalDBSnapshotIdentifier can not be specified when deleting a DB instance with "
          "SkipFinalSnapshot set to true.");
    }
    if (!req.skip_final_snapshot && !req.final_snapshot_id) {
      return InvalidCombination("FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified.");
    }
    if (r.status == InstanceStatus::kDeleting) {
      return Status(errors::kInvalidDBInstanceState, fmt::format("Instance {} is already being deleted.", r.id));
    }
    if (!req.skip_final_snapshot) {
      RETURN_IF_ERROR(ValidateIdentifier("FinalDBSnapshotIdentifier", *req.final_snapshot_id, 255));
      if (r.status != InstanceStatus::kAvailable) {
        return Status(errors::kInvalidDBInstanceState,
                      fmt::format("Instance {} is {}; a final snapshot needs it available.", r.id, ToString(r.status)));
      }
      if (snapshots_.CountManualSnapshots() >= ctx_.config.manual_snapshot_quota) {
        return Status(errors::kSnapshotQuotaExceeded,
                      "Cannot create the final snapshot: the manual snapshot quota is reached.");
      }
      RETURN_IF_ERROR(ctx_.RefuseIfDiskLow(errors::kSnapshotQuotaExceeded,
                                           "a final snapshot (SkipFinalSnapshot deletes without one)"));
      final_snapshot = snapshots_.NewSnapshotRecord(r, ToLower(*req.final_snapshot_id), SnapshotType::kManual);
      RETURN_IF_ERROR(ctx_.catalog->InsertSnapshot(*final_snapshot));
      if (r.copy_tags_to_snapshot) {
        RETURN_IF_ERROR(ctx_.catalog->SetTags(ctx_.SnapshotArn(final_snapshot->id),
                                              ctx_.catalog->ListTags(ctx_.InstanceArn(r.id))));
      }
    }
    r.status = InstanceStatus::kDeleting;
    RETURN_IF_ERROR(ctx_.catalog->UpdateInstance(r));
    if (auto ab = ctx_.catalog->GetAutomatedBackup(r.resource_id); ab.ok()) {
      // Kept as retained, or deleted with the instance (RDS's default).
      ab->status = req.delete_automated_backups ? AutomatedBackupStatus::kDeleting : AutomatedBackupStatus::kRetained;
      RETURN_IF_ERROR(ctx_.catalog->PutAutomatedBackup(*ab));
    }
    deleting = r;
    return Status::Ok();
  }));
  log::Info("instance deleting", {{"instance", deleting.id}});
  if (final_snapshot) {
    ctx_.workers->Submit([this, deleting, snap = *final_snapshot] { FinishDeleteWithFinalSnapshot(deleting, snap); });
  } else {
    ctx_.workers->Submit([this, deleting] { FinishDelete(deleting); });
  }
  return ToInstance(deleting);
}

Result<Instance> Instances::Reboot(const std::string& id, bool force_failover) {
  catalog::InstanceRecord rebooting;
  RETURN_IF_ERROR(ctx_.catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto r, ctx_.catalog->GetInstance(ToLower(id)));
    if (force_failover) {
      return InvalidCombination(fmt::format("DB instance {} is not Multi-AZ: it cannot fail over.", r.id));
    }
    if (r.status != InstanceStatus::kAvailable) {
      return Status(errors::kInvalidDBInstanceState,
                    fmt::format("DB instance {} is {}; only an available instance can be rebooted.", r.id, ToString(r.status)));
    }
    r.status = InstanceStatus::kRebooting;
    RETURN_IF_ERROR(ctx_.catalog->UpdateInstance(r));
    rebooting = r;
    return Status::Ok();
  }));
  ctx_.Event("db-instance", rebooting.id, ctx_.InstanceArn(rebooting.id), "DB instance shutdown", {"availability"});
  ctx_.workers->Submit([this, rebooting] {
    engine::Engine* e = engine::FindEngine(rebooting.engine);
    Status st = e ? e->Stop(SpecOf(rebooting)) : Status(errors::kInternalFailure, "unknown engine");
    if (st.ok()) st = e->Start(SpecOf(rebooting));
    ctx_.SetStatusOrLog(rebooting.id, st.ok() ? InstanceStatus::kAvailable : InstanceStatus::kFailed, st.message());
    ctx_.Event("db-instance", rebooting.id, ctx_.InstanceArn(rebooting.id),
               st.ok() ? "DB instance restarted" : "DB instance reboot failed: " + st.message(),
               {st.ok() ? "availability" : "failure"});
  });
  return ToInstance(rebooting);
}

void Instances::Supervise(const catalog::InstanceRecord& r) {
  if (r.status != InstanceStatus::kAvailable && r.status != InstanceStatus::kBackingUp && r.status != InstanceStatus::kModifying) return;
  engine::Engine* e = engine::FindEngine(r.engine);
  if (!e || e->CheckRunning(SpecOf(r)).ok()) return;
  log::Warn("server not running: restarting it", {{"instance", r.id}});
  Status st = e->Start(SpecOf(r));
  if (st.ok()) {
    ctx_.Event("db-instance", r.id, ctx_.InstanceArn(r.id), "DB instance restarted: its server had stopped",
               {"availability"});
  } else {
    log::Error("restart failed", {{"instance", r.id}, {"error", st.ToString()}});
    ctx_.Event("db-instance", r.id, ctx_.InstanceArn(r.id), "DB instance restart failed: " + st.message(), {"failure"});
  }
}

Result<engine::Endpoint> Instances::Endpoint(const std::string& id) {
  ASSIGN_OR_RETURN(auto r, ctx_.catalog->GetInstance(ToLower(id)));
  engine::Engine* e = engine::FindEngine(r.engine);
  if (!e) return Status(errors::kInternalFailure, "unknown engine " + r.engine);
  return e->GetEndpoint(SpecOf(r));
}

Instance Instances::ToInstance(const catalog::InstanceRecord& r) {
  Instance out;
  out.record = r;
  if (r.backup_retention_days > 0) {
    if (auto ab = ctx_.catalog->GetAutomatedBackup(r.resource_id); ab.ok()) {
      if (auto w = automated_.WindowOf(*ab)) out.latest_restorable_time = w->latest;
    }
  }
  out.arn = ctx_.InstanceArn(r.id);
  out.tags = ctx_.catalog->ListTags(out.arn);
  out.backups_encrypted = ctx_.config.backups_encrypted;
  if (auto* e = engine::FindEngine(r.engine)) out.endpoint = e->GetEndpoint(SpecOf(r));
  return out;
}

void Instances::FinishCreate(catalog::InstanceRecord r) {
  engine::Engine* e = engine::FindEngine(r.engine);
  Status st = e ? e->Create(SpecOf(r)) : Status(errors::kInternalFailure, "unknown engine " + r.engine);
  if (st.ok()) st = ports_.StartOnPickedPort(r, *e);
  if (!st.ok()) {
    log::Error("instance create failed", {{"instance", r.id}, {"error", st.ToString()}});
    ctx_.SetStatusOrLog(r.id, InstanceStatus::kFailed, st.message());
    ctx_.Event("db-instance", r.id, ctx_.InstanceArn(r.id), "DB instance creation failed: " + st.message(),
               {"failure"});
    return;
  }
  if (r.backup_retention_days > 0) {
    automated_.TakeFirstBackup(r);
  } else if (Status s2 = ctx_.SetStatus(r.id, InstanceStatus::kAvailable); !s2.ok()) {
    log::Error("instance status update failed", {{"instance", r.id}, {"error", s2.ToString()}});
    return;
  }
  ctx_.Event("db-instance", r.id, ctx_.InstanceArn(r.id), "DB instance created", {"creation"});
  log::Info("instance available", {{"instance", r.id}});
}

void Instances::FinishDelete(const catalog::InstanceRecord& r) {
  engine::Engine* e = engine::FindEngine(r.engine);
  engine::InstanceSpec spec = SpecOf(r);
  // Capture ships what it holds while the database still exists.
  automated_.StopCapture(r.resource_id);
  Status st = Status::Ok();
  if (e) {
    st = e->Stop(spec);
    if (st.ok()) st = e->Destroy(spec);
  }
  if (!st.ok()) {
    log::Error("instance delete failed", {{"instance", r.id}, {"error", st.ToString()}});
    ctx_.SetStatusOrLog(r.id, InstanceStatus::kFailed, st.message());
    return;
  }
  std::string arn = ctx_.InstanceArn(r.id);
  if (auto ab = ctx_.catalog->GetAutomatedBackup(r.resource_id); ab.ok()) {
    if (ab->status == AutomatedBackupStatus::kRetained) {
      ctx_.Event("db-instance", r.id, arn, "Automated backups retained after the DB instance was deleted", {"backup"});
    } else if (Status d = automated_.DeleteAutomatedBackups(r.resource_id); !d.ok()) {
      log::Warn("deleting automated backups failed", {{"instance", r.id}, {"error", d.ToString()}});
    }
  }
  Status gone = ctx_.catalog->InTransaction([&]() -> Status {
    RETURN_IF_ERROR(ctx_.catalog->DeleteAllTags(arn));
    return ctx_.catalog->DeleteInstance(r.id);
  });
  if (!gone.ok()) {
    log::Error("instance delete failed", {{"instance", r.id}, {"error", gone.ToString()}});
    return;
  }
  ctx_.Event("db-instance", r.id, arn, "DB instance deleted", {"deletion"});
  log::Info("instance deleted", {{"instance", r.id}});
}

void Instances::FinishDeleteWithFinalSnapshot(const catalog::InstanceRecord& r, const catalog::SnapshotRecord& snap) {
  catalog::InstanceRecord backing_up = r;
  Status st = snapshots_.RunSnapshot(backing_up, snap);
  if (!st.ok()) {
    // RDS refuses to delete an instance whose final snapshot failed.
    ctx_.SetStatusOrLog(r.id, InstanceStatus::kAvailable);
    ctx_.Event("db-instance", r.id, ctx_.InstanceArn(r.id),
               "DB instance not deleted: the final snapshot failed: " + st.message(), {"failure"});
    return;
  }
  FinishDelete(r);
}

Status Instances::Restart(const catalog::InstanceRecord& r) {
  engine::Engine* e = engine::FindEngine(r.engine);
  Status st = e ? e->Start(SpecOf(r)) : Status(errors::kInternalFailure, "unknown engine");
  // Written only when it changes: a start on a full disk writes nothing
  // it need not.
  if (st.ok() && r.status == InstanceStatus::kAvailable && r.status_reason.empty()) return Status::Ok();
  return ctx_.SetStatus(r.id, st.ok() ? InstanceStatus::kAvailable : InstanceStatus::kFailed, st.message());
}

void Instances::StopServers() {
  for (const auto& r : ctx_.catalog->ListInstances()) {
    engine::Engine* e = engine::FindEngine(r.engine);
    if (!e || !e->UsesPort() || r.status == InstanceStatus::kDeleting) continue;
    if (Status st = e->Stop(SpecOf(r)); !st.ok()) {
      log::Warn("stopping the server failed", {{"instance", r.id}, {"error", st.ToString()}});
    }
  }
}

}  // namespace strata::control
