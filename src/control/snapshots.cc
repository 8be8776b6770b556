// Manual snapshots, copies, restores from a snapshot, final snapshots: the
// state machines of DB snapshots and of instances born from them.
#include <algorithm>
#include <set>

#include "control/control_impl.h"

namespace strata::control {
namespace {

bool Matches(const std::vector<std::string>& any_of, std::string_view v) {
  return any_of.empty() || std::find(any_of.begin(), any_of.end(), v) != any_of.end();
}

std::map<std::string, std::string> ManifestMetadata(const catalog::SnapshotRecord& s) {
  return {{"snapshot_id", s.id},
          {"instance_id", s.instance_id},
          {"dbi_resource_id", s.instance_resource_id},
          {"engine", s.engine},
          {"engine_version", s.engine_version},
          {"snapshot_type", std::string(ToString(s.snapshot_type))},
          {"database_time", FormatIso8601(s.database_time)}};
}

}  // namespace

Snapshot ControlPlane::Impl::ToSnapshot(const catalog::SnapshotRecord& r) {
  Snapshot s;
  s.record = r;
  s.arn = SnapshotArn(r.id);
  s.tags = catalog->ListTags(s.arn);
  s.encrypted = config.backups_encrypted;
  if (r.status == SnapshotStatus::kCreating) {
    std::lock_guard lock(progress_mu);
    if (auto it = snapshot_progress.find(r.id); it != snapshot_progress.end()) s.record.percent_progress = it->second;
  }
  return s;
}

int ControlPlane::Impl::CountManualSnapshots() {
  int n = 0;
  for (const auto& s : catalog->ListSnapshots()) n += s.snapshot_type == SnapshotType::kManual;
  return n;
}

catalog::SnapshotRecord ControlPlane::Impl::NewSnapshotRecord(const catalog::InstanceRecord& inst,
                                                              const std::string& id,
                                                              SnapshotType type) {
  catalog::SnapshotRecord s;
  s.id = id;
  s.instance_id = inst.id;
  s.instance_resource_id = inst.resource_id;
  s.snapshot_type = type;
  s.status = SnapshotStatus::kCreating;
  s.engine = inst.engine;
  s.engine_version = inst.engine_version;
  s.allocated_storage_gib = inst.allocated_storage_gib;
  s.port = inst.port;
  s.db_name = inst.db_name;
  s.master_username = inst.master_username;
  s.instance_class = inst.instance_class;
  s.instance_create_time = inst.create_time;
  s.create_time = Now();
  s.original_create_time = s.create_time;
  s.repo_snapshot_id = RandomUuid();
  s.backup_retention_days = inst.backup_retention_days;
  s.backup_window = inst.backup_window;
  return s;
}

Status ControlPlane::Impl::RunSnapshot(const catalog::InstanceRecord& inst,
                                       catalog::SnapshotRecord snap) {
  const std::string kind(ToString(snap.snapshot_type));
  // One catalog commit (one fsync) for both events; the same at the end.
  (void)catalog->InTransaction([&]() -> Status {
    Event("db-instance", inst.id, InstanceArn(inst.id), "Backing up DB instance", {"backup"});
    Event("db-snapshot", snap.id, SnapshotArn(snap.id), "Creating " + kind + " snapshot", {"creation"});
    return Status::Ok();
  });
  engine::Engine* eng = engine::FindEngine(inst.engine);
  Status st = eng ? Status::Ok() : Status(errors::kInternalFailure, "unknown engine " + inst.engine);
  Result<StoredSnapshot> stored = st.ok() ? Status(errors::kInternalFailure, "snapshot did not run") : st;
  if (st.ok()) {
    // With capture running, the snapshot also records where it sits in the
    // change log, which makes it a base for point-in-time restore.
    auto capture = CaptureOf(inst.resource_id);
    std::optional<InstanceCapture::Mark> before;
    if (capture) {
      if (auto m = capture->CatchUp(); m.ok()) before = *m;
    }
    auto view = eng->OpenSnapshot(SpecOf(inst), Now());
    IncrementalBase base;
    if (view.ok() && before) {
      if (auto after = capture->CatchUp(); after.ok()) {
        snap.log_seq_before = before->seq;
        snap.log_time_before = before->time;
        snap.log_seq_after = after->seq;
        snap.log_time_after = after->time;
        // The same marks tell what changed since an earlier snapshot.
        base = IncrementalBaseFor(inst, snap, *eng, *capture, (*view)->Files());
      }
    }
    if (!view.ok()) {
      stored = view.status();
    } else {
      snap.database_time = (*view)->DatabaseTime();
      Progress progress = [&](int percent) {
        if (percent >= 100) return;  // 100 is for available, which the catalog records
        std::lock_guard lock(progress_mu);
        int& shown = snapshot_progress[snap.id];
        shown = std::max(shown, percent);
      };
      RunAtBackgroundPriority([&] {
        stored = backups->PutSnapshot(snap.repo_snapshot_id, ManifestMetadata(snap), (*view)->Files(),
                                      (*view)->PageSize(), base, progress, [&] { return (*view)->Complete(); });
      });
    }
  }
  // Forgotten only once the catalog has the outcome: until then a describe
  // still shows the snapshot creating, and its progress must not fall back.
  auto forget_progress = [&] {
    std::lock_guard lock(progress_mu);
    snapshot_progress.erase(snap.id);
  };
  // Whatever happened, the instance is no longer backing up.
  auto instance_available = [&]() -> Status {
    auto cur = catalog->GetInstance(inst.id);
    if (!cur.ok() || cur->status != InstanceStatus::kBackingUp) return Status::Ok();
    cur->status = InstanceStatus::kAvailable;
    return catalog->UpdateInstance(*cur);
  };
  if (!stored.ok()) {
    log::Error("snapshot failed", {{"snapshot", snap.id}, {"error", stored.status().ToString()}});
    snap.status = SnapshotStatus::kFailed;
    snap.status_reason = stored.status().message();
    (void)catalog->InTransaction([&]() -> Status {
      (void)instance_available();
      (void)catalog->UpdateSnapshot(snap);
      Event("db-snapshot", snap.id, SnapshotArn(snap.id), "Snapshot failed: " + stored.status().message(),
            {"failure"});
      return Status::Ok();
    });
    forget_progress();
    return stored.status();
  }
  snap.status = SnapshotStatus::kAvailable;
  snap.percent_progress = 100;
  snap.logical_bytes = stored->logical_bytes;
  snap.stored_bytes = stored->stored_bytes;
  Status recorded = catalog->InTransaction([&]() -> Status {
    (void)instance_available();
    RETURN_IF_ERROR(catalog->UpdateSnapshot(snap));
    Event("db-snapshot", snap.id, SnapshotArn(snap.id),
          snap.snapshot_type == SnapshotType::kManual ? "Manual snapshot created" : "Automated snapshot created", {"creation"});
    Event("db-instance", inst.id, InstanceArn(inst.id), "Finished DB Instance backup", {"backup"});
    return Status::Ok();
  });
  forget_progress();
  if (!recorded.ok()) {
    (void)catalog->InTransaction(instance_available);  // the rollback took it back to backing-up
    return recorded;
  }
  log::Info("snapshot available", {{"snapshot", snap.id},
                                   {"logical_bytes", snap.logical_bytes},
                                   {"stored_bytes", snap.stored_bytes},
                                   {"read_bytes", stored->read_bytes},
                                   {"incremental", stored->incremental}});
  return Status::Ok();
}

void ControlPlane::Impl::FinishRestore(const catalog::InstanceRecord& r) {
  engine::Engine* eng = engine::FindEngine(r.engine);
  engine::InstanceSpec spec = SpecOf(r);
  Status st = eng ? Status::Ok() : Status(errors::kInternalFailure, "unknown engine " + r.engine);
  // A restore resumed after a crash may find its server still recovering.
  if (st.ok() && std::filesystem::exists(spec.data_dir)) st = eng->Stop(spec);
  if (st.ok()) {
    st = backups->RestoreSnapshot(r.restore_snapshot, spec.data_dir, nullptr,
                                  !eng->ReadsRestoredFilesWhole());
  }
  std::optional<TimePoint> point_in_time;
  if (st.ok()) {
    auto pit = FinishPointInTime(r);
    st = pit.status();
    if (pit.ok()) point_in_time = *pit;
  }
  if (st.ok()) st = eng->FinishRestore(spec, point_in_time);
  catalog::InstanceRecord started = r;
  if (st.ok()) st = StartOnPickedPort(started, *eng);
  if (!st.ok()) {
    log::Error("restore failed", {{"instance", r.id}, {"error", st.ToString()}});
    (void)SetStatus(r.id, InstanceStatus::kFailed, st.message());
    Event("db-instance", r.id, InstanceArn(r.id), "Restore failed: " + st.message(), {"failure"});
    return;
  }
  catalog::InstanceRecord restored;
  Status done = catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(restored, catalog->GetInstance(r.id));
    // With backups on, it stays creating until its first backup (TakeFirstBackup).
    if (restored.backup_retention_days <= 0) restored.status = InstanceStatus::kAvailable;
    restored.restore_snapshot.clear();
    restored.restore_replay.reset();
    return catalog->UpdateInstance(restored);
  });
  if (!done.ok()) {
    log::Error("restore bookkeeping failed", {{"instance", r.id}, {"error", done.ToString()}});
    return;
  }
  if (restored.backup_retention_days > 0) TakeFirstBackup(restored);
  Event("db-instance", r.id, InstanceArn(r.id),
        r.restore_replay ? "Restored from DB instance to a point in time" : "Restored from snapshot",
        {"restoration"});
  std::lock_guard wake(scheduler_mu);
  scheduler_cv.notify_all();
  log::Info("instance restored", {{"instance", r.id}});
}

void ControlPlane::Impl::FinishDeleteWithFinalSnapshot(const catalog::InstanceRecord& r,
                                                       const catalog::SnapshotRecord& snap) {
  catalog::InstanceRecord backing_up = r;
  Status st = RunSnapshot(backing_up, snap);
  if (!st.ok()) {
    // RDS refuses to delete an instance whose final snapshot failed.
    (void)SetStatus(r.id, InstanceStatus::kAvailable);
    Event("db-instance", r.id, InstanceArn(r.id),
          "DB instance not deleted: the final snapshot failed: " + st.message(), {"failure"});
    return;
  }
  FinishDelete(r);
}

void ControlPlane::Impl::RecoverSnapshots() {
  auto stored = backups->ListSnapshots();
  if (!stored.ok()) {
    log::Error("cannot list repository snapshots", {{"error", stored.status().ToString()}});
    return;
  }
  std::set<std::string> in_repo(stored->begin(), stored->end());
  std::set<std::string> known;
  for (auto s : catalog->ListSnapshots()) {
    known.insert(s.repo_snapshot_id);
    if (s.status == SnapshotStatus::kCreating) {
      // Stored whole before the crash: the data is complete, only the catalog lagged.
      if (in_repo.count(s.repo_snapshot_id)) {
        s.status = SnapshotStatus::kAvailable;
        s.percent_progress = 100;
      } else {
        s.status = SnapshotStatus::kFailed;
        s.status_reason = "stratad stopped while the snapshot was being created";
      }
      (void)catalog->UpdateSnapshot(s);
      log::Info("recovered snapshot", {{"snapshot", s.id}, {"status", std::string(ToString(s.status))}});
    } else if (s.status == SnapshotStatus::kDeleting) {
      (void)backups->DeleteSnapshot(s.repo_snapshot_id);
      (void)catalog->InTransaction([&]() -> Status {
        RETURN_IF_ERROR(catalog->DeleteAllTags(SnapshotArn(s.id)));
        return catalog->DeleteSnapshot(s.id);
      });
    }
  }
  // Manifests the catalog never recorded (a crash between the two) are dropped;
  // garbage collection then reclaims their chunks.
  for (const auto& id : in_repo) {
    if (!known.count(id)) {
      log::Info("dropping unrecorded repository snapshot", {{"repo_snapshot", id}});
      (void)backups->DeleteSnapshot(id);
    }
  }
  // Instances left backing-up lost their snapshot job with the crash.
  for (auto inst : catalog->ListInstances()) {
    if (inst.status == InstanceStatus::kBackingUp) {
      inst.status = InstanceStatus::kAvailable;
      (void)catalog->UpdateInstance(inst);
    }
  }
}

std::string ControlPlane::SnapshotArn(const std::string& id) const { return impl_->SnapshotArn(id); }

Result<Snapshot> ControlPlane::CreateSnapshot(const CreateSnapshotRequest& req) {
  RETURN_IF_ERROR(ValidateIdentifier("DBSnapshotIdentifier", req.snapshot_id, 255));
  for (const auto& t : req.tags) RETURN_IF_ERROR(ValidateTag(t.key, t.value));
  if (req.tags.size() > kMaxTagsPerResource) {
    return InvalidValue(fmt::format("A resource may have at most {} tags", kMaxTagsPerResource));
  }
  catalog::InstanceRecord inst;
  catalog::SnapshotRecord snap;
  RETURN_IF_ERROR(impl_->catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(inst, impl_->catalog->GetInstance(ToLower(req.instance_id)));
    if (inst.status != InstanceStatus::kAvailable) {
      return Status(errors::kInvalidDBInstanceState,
                    fmt::format("Cannot create a snapshot because the database instance {} is not "
                                "currently in the available state (it is {}).",
                                inst.id, ToString(inst.status)));
    }
    if (impl_->CountManualSnapshots() >= impl_->config.manual_snapshot_quota) {
      return Status(errors::kSnapshotQuotaExceeded,
                    fmt::format("Cannot create more than {} manual snapshots",
                                impl_->config.manual_snapshot_quota));
    }
    // Refused before it is recorded: no snapshot half-written on a full disk.
    RETURN_IF_ERROR(impl_->RefuseIfDiskLow(errors::kSnapshotQuotaExceeded, "a snapshot"));
    snap = impl_->NewSnapshotRecord(inst, ToLower(req.snapshot_id), SnapshotType::kManual);
    RETURN_IF_ERROR(impl_->catalog->InsertSnapshot(snap));
    std::vector<Tag> tags = req.tags;
    if (inst.copy_tags_to_snapshot && tags.empty()) {
      tags = impl_->catalog->ListTags(impl_->InstanceArn(inst.id));
    }
    RETURN_IF_ERROR(impl_->catalog->SetTags(impl_->SnapshotArn(snap.id), tags));
    inst.status = InstanceStatus::kBackingUp;
    return impl_->catalog->UpdateInstance(inst);
  }));
  impl_->workers->Submit([this, inst, snap] { (void)impl_->RunSnapshot(inst, snap); });
  return impl_->ToSnapshot(snap);
}

Result<std::vector<Snapshot>> ControlPlane::DescribeSnapshots(const SnapshotQuery& q) {
  std::vector<catalog::SnapshotRecord> records;
  if (q.snapshot_id) {
    ASSIGN_OR_RETURN(auto id, impl_->IdFrom(*q.snapshot_id, "snapshot"));
    ASSIGN_OR_RETURN(auto one, impl_->catalog->GetSnapshot(ToLower(id)));
    records.push_back(std::move(one));
  } else {
    records = impl_->catalog->ListSnapshots();
  }
  std::vector<Snapshot> out;
  for (const auto& r : records) {
    if (q.instance_id && r.instance_id != ToLower(*q.instance_id)) continue;
    if (q.snapshot_type && r.snapshot_type != *q.snapshot_type) continue;
    if (!Matches(q.snapshot_ids, r.id) && !Matches(q.snapshot_ids, impl_->SnapshotArn(r.id))) continue;
    if (!Matches(q.instance_ids, r.instance_id) && !Matches(q.instance_ids, impl_->InstanceArn(r.instance_id)))
      continue;
    if (!Matches(q.resource_ids, r.instance_resource_id)) continue;
    if (!Matches(q.snapshot_types, ToString(r.snapshot_type))) continue;
    if (!Matches(q.engines, r.engine)) continue;
    out.push_back(impl_->ToSnapshot(r));
  }
  return out;
}

Result<Snapshot> ControlPlane::DeleteSnapshot(const std::string& id_in) {
  ASSIGN_OR_RETURN(std::string id, impl_->IdFrom(id_in, "snapshot"));
  id = ToLower(id);
  catalog::SnapshotRecord snap;
  impl_->MakeRoom("DeleteDBSnapshot");
  RETURN_IF_ERROR(impl_->catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(snap, impl_->catalog->GetSnapshot(id));
    if (snap.snapshot_type != SnapshotType::kManual) {
      return Status(errors::kInvalidDBSnapshotState,
                    fmt::format("Automated snapshot {} cannot be deleted; it expires with the "
                                "instance's backup retention period.",
                                id));
    }
    if (snap.status != SnapshotStatus::kAvailable && snap.status != SnapshotStatus::kFailed) {
      return Status(errors::kInvalidDBSnapshotState,
                    fmt::format("Snapshot {} is {}; only available or failed snapshots can be deleted.",
                                id, ToString(snap.status)));
    }
    snap.status = SnapshotStatus::kDeleting;
    return impl_->catalog->UpdateSnapshot(snap);
  }));
  // Forgetting a manifest is quick; the chunks go with the next garbage collection.
  Status gone = impl_->backups->DeleteSnapshot(snap.repo_snapshot_id);
  if (!gone.ok() && !gone.Is(errors::kObjectNotFound)) {
    snap.status = SnapshotStatus::kAvailable;
    (void)impl_->catalog->UpdateSnapshot(snap);
    return gone;
  }
  Snapshot out = impl_->ToSnapshot(snap);
  RETURN_IF_ERROR(impl_->catalog->InTransaction([&]() -> Status {
    RETURN_IF_ERROR(impl_->catalog->DeleteAllTags(impl_->SnapshotArn(id)));
    return impl_->catalog->DeleteSnapshot(id);
  }));
  impl_->Event("db-snapshot", id, impl_->SnapshotArn(id), "Deleted manual snapshot", {"deletion"});
  impl_->ScheduleGarbageCollection();
  out.record.status = SnapshotStatus::kDeleted;
  return out;
}

Result<Snapshot> ControlPlane::CopySnapshot(const CopySnapshotRequest& req) {
  RETURN_IF_ERROR(ValidateIdentifier("TargetDBSnapshotIdentifier", req.target_id, 255));
  for (const auto& t : req.tags) RETURN_IF_ERROR(ValidateTag(t.key, t.value));
  catalog::SnapshotRecord copy;
  ASSIGN_OR_RETURN(std::string source_id, impl_->IdFrom(req.source_id, "snapshot"));
  source_id = ToLower(source_id);
  RETURN_IF_ERROR(impl_->catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto src, impl_->catalog->GetSnapshot(source_id));
    if (src.status != SnapshotStatus::kAvailable) {
      return Status(errors::kInvalidDBSnapshotState,
                    fmt::format("Snapshot {} is {}; only an available snapshot can be copied.",
                                src.id, ToString(src.status)));
    }
    if (impl_->CountManualSnapshots() >= impl_->config.manual_snapshot_quota) {
      return Status(errors::kSnapshotQuotaExceeded,
                    fmt::format("Cannot create more than {} manual snapshots",
                                impl_->config.manual_snapshot_quota));
    }
    RETURN_IF_ERROR(impl_->RefuseIfDiskLow(errors::kSnapshotQuotaExceeded, "a snapshot copy"));
    copy = src;
    copy.id = ToLower(req.target_id);
    copy.snapshot_type = SnapshotType::kManual;  // a copy of an automated snapshot is manual
    copy.create_time = impl_->Now();
    copy.repo_snapshot_id = RandomUuid();
    copy.source_snapshot_id = src.id;
    copy.stored_bytes = 0;  // shares every chunk with its source
    RETURN_IF_ERROR(impl_->catalog->InsertSnapshot(copy));
    // As RDS does: the request's tags when it gives any, else the source's with CopyTags.
    std::vector<Tag> tags = req.tags;
    if (tags.empty() && req.copy_tags) tags = impl_->catalog->ListTags(impl_->SnapshotArn(src.id));
    RETURN_IF_ERROR(impl_->catalog->SetTags(impl_->SnapshotArn(copy.id), tags));
    return impl_->backups->CopySnapshot(src.repo_snapshot_id, copy.repo_snapshot_id,
                                        ManifestMetadata(copy));
  }));
  impl_->Event("db-snapshot", copy.id, impl_->SnapshotArn(copy.id),
               fmt::format("Finished copy of snapshot {}", source_id), {"creation"});
  return impl_->ToSnapshot(copy);
}

Result<catalog::InstanceRecord> ControlPlane::Impl::RestoredInstance(const catalog::SnapshotRecord& snap,
                                                                     const RestoreFromSnapshotRequest& req) {
  if (req.engine && ToLower(*req.engine) != snap.engine) {
    return Status(errors::kInvalidParameterCombination,
                  fmt::format("Engine {} differs from the backup's engine {}: a restore keeps its engine.",
                              *req.engine, snap.engine));
  }
  catalog::InstanceRecord r;
  r.id = ToLower(req.instance_id);
  r.engine = snap.engine;
  r.engine_version = snap.engine_version;
  r.instance_class = req.instance_class.value_or(snap.instance_class);
  if (r.instance_class.rfind("db.", 0) != 0 || r.instance_class.size() < 4) {
    return InvalidValue(fmt::format("Invalid DB instance class: {}", r.instance_class));
  }
  r.allocated_storage_gib = req.allocated_storage_gib.value_or(snap.allocated_storage_gib);
  if (r.allocated_storage_gib < snap.allocated_storage_gib) {
    return InvalidValue("Invalid storage size: AllocatedStorage cannot be smaller than the snapshot's");
  }
  r.db_name = req.db_name.value_or(snap.db_name);
  r.master_username = snap.master_username;
  if (engine::Engine* eng = engine::FindEngine(snap.engine); eng && eng->UsesPort()) {
    ASSIGN_OR_RETURN(r.port, AssignPort(req.port));
  } else {
    r.port = req.port.value_or(snap.port);
  }
  r.backup_retention_days = req.backup_retention_days.value_or(snap.backup_retention_days);
  if (r.backup_retention_days < 0 || r.backup_retention_days > 35) {
    return InvalidValue("Invalid BackupRetentionPeriod: must be from 0 to 35 days");
  }
  r.backup_window = req.backup_window.value_or(snap.backup_window.empty() ? DefaultBackupWindow()
                                                                          : snap.backup_window);
  RETURN_IF_ERROR(ParseDailyWindow("PreferredBackupWindow", r.backup_window, 30).status());
  r.maintenance_window = DefaultMaintenanceWindow(r.backup_window);
  r.deletion_protection = req.deletion_protection.value_or(false);
  r.copy_tags_to_snapshot = req.copy_tags_to_snapshot.value_or(false);
  r.status = InstanceStatus::kCreating;
  r.create_time = Now();
  r.resource_id = "db-" + RandomAlnumUpper(26);
  r.data_path = (config.data_dir / "instances" / r.resource_id).string();
  return r;
}

Result<Instance> ControlPlane::RestoreFromSnapshot(const RestoreFromSnapshotRequest& req) {
  RETURN_IF_ERROR(ValidateIdentifier("DBInstanceIdentifier", req.instance_id, 63));
  for (const auto& t : req.tags) RETURN_IF_ERROR(ValidateTag(t.key, t.value));
  catalog::InstanceRecord r;
  RETURN_IF_ERROR(impl_->catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto snap_id, impl_->IdFrom(req.snapshot_id, "snapshot"));
    ASSIGN_OR_RETURN(auto snap, impl_->catalog->GetSnapshot(ToLower(snap_id)));
    if (snap.status != SnapshotStatus::kAvailable) {
      return Status(errors::kInvalidDBSnapshotState,
                    fmt::format("Snapshot {} is {}; only an available snapshot can be restored.",
                                snap.id, ToString(snap.status)));
    }
    RETURN_IF_ERROR(impl_->RefuseIfDiskLow(errors::kStorageQuotaExceeded, "a restore"));
    ASSIGN_OR_RETURN(r, impl_->RestoredInstance(snap, req));
    r.restore_snapshot = snap.repo_snapshot_id;
    RETURN_IF_ERROR(impl_->catalog->InsertInstance(r));
    return impl_->catalog->SetTags(impl_->InstanceArn(r.id), req.tags);
  }));
  log::Info("restoring instance", {{"instance", r.id}, {"snapshot", req.snapshot_id}});
  impl_->workers->Submit([this, r] { impl_->FinishRestore(r); });
  return impl_->ToInstance(r);
}

}  // namespace strata::control
