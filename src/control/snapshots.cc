// Manual snapshots, copies, restores from a snapshot, final snapshots: the
// state machines of DB snapshots and of instances born from them.
#include "control/snapshots.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "common/ids.h"
#include "control/changelog/incremental_base.h"

namespace strata::control {
namespace {

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

Snapshot Snapshots::ToSnapshot(const catalog::SnapshotRecord& r) {
  Snapshot s;
  s.record = r;
  s.arn = ctx_.SnapshotArn(r.id);
  s.tags = ctx_.catalog->ListTags(s.arn);
  s.encrypted = ctx_.config.backups_encrypted;
  if (r.status == SnapshotStatus::kCreating) {
    std::lock_guard lock(progress_mu_);
    if (auto it = progress_.find(r.id); it != progress_.end()) s.record.percent_progress = it->second;
  }
  return s;
}

int Snapshots::CountManualSnapshots() {
  int n = 0;
  for (const auto& s : ctx_.catalog->ListSnapshots()) n += s.snapshot_type == SnapshotType::kManual;
  return n;
}

catalog::SnapshotRecord Snapshots::NewSnapshotRecord(const catalog::InstanceRecord& inst, const std::string& id,
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
  s.create_time = ctx_.Now();
  s.original_create_time = s.create_time;
  s.repo_snapshot_id = RandomUuid();
  s.backup_retention_days = inst.backup_retention_days;
  s.backup_window = inst.backup_window;
  return s;
}

Status Snapshots::RunSnapshot(const catalog::InstanceRecord& inst, catalog::SnapshotRecord snap) {
  const std::string kind(ToString(snap.snapshot_type));
  // One catalog commit (one fsync) for both events; the same at the end.
  Status begun = ctx_.catalog->InTransaction([&]() -> Status {
    ctx_.Event("db-instance", inst.id, ctx_.InstanceArn(inst.id), "Backing up DB instance", {"backup"});
    ctx_.Event("db-snapshot", snap.id, ctx_.SnapshotArn(snap.id), "Creating " + kind + " snapshot", {"creation"});
    return Status::Ok();
  });
  WarnIfFailed(begun, "recording a snapshot start", snap.id);
  engine::Engine* eng = engine::FindEngine(inst.engine);
  Status st = eng ? Status::Ok() : Status(errors::kInternalFailure, "unknown engine " + inst.engine);
  Result<StoredSnapshot> stored = st.ok() ? Status(errors::kInternalFailure, "snapshot did not run") : st;
  if (st.ok()) {
    // With capture running, the snapshot also records where it sits in the
    // change log, which makes it a base for point-in-time restore.
    auto capture = hooks_.capture_of(inst.resource_id);
    std::optional<InstanceCapture::Mark> before;
    if (capture) {
      if (auto m = capture->CatchUp(); m.ok()) before = *m;
    }
    auto view = eng->OpenSnapshot(SpecOf(inst), ctx_.Now());
    IncrementalBase base;
    if (view.ok() && before) {
      if (auto after = capture->CatchUp(); after.ok()) {
        snap.log_seq_before = before->seq;
        snap.log_time_before = before->time;
        snap.log_seq_after = after->seq;
        snap.log_time_after = after->time;
        // The same marks tell what changed since an earlier snapshot.
        base = IncrementalBaseFor(*ctx_.catalog, *ctx_.backups, inst, snap, *eng, *capture, (*view)->Files());
      }
    }
    if (!view.ok()) {
      stored = view.status();
    } else {
      snap.database_time = (*view)->DatabaseTime();
      Progress progress = [&](int percent) {
        if (percent >= 100) return;  // 100 is for available, which the catalog records
        std::lock_guard lock(progress_mu_);
        int& shown = progress_[snap.id];
        shown = std::max(shown, percent);
      };
      RunAtBackgroundPriority([&] {
        stored = ctx_.backups->PutSnapshot(snap.repo_snapshot_id, ManifestMetadata(snap), (*view)->Files(),
                                           (*view)->PageSize(), base, progress, [&] { return (*view)->Complete(); });
      });
    }
  }
  // Forgotten only once the catalog has the outcome: until then a describe
  // still shows the snapshot creating, and its progress must not fall back.
  auto forget_progress = [&] {
    std::lock_guard lock(progress_mu_);
    progress_.erase(snap.id);
  };
  // Whatever happened, the instance is no longer backing up.
  auto instance_available = [&]() -> Status {
    auto cur = ctx_.catalog->GetInstance(inst.id);
    if (!cur.ok() || cur->status != InstanceStatus::kBackingUp) return Status::Ok();
    cur->status = InstanceStatus::kAvailable;
    return ctx_.catalog->UpdateInstance(*cur);
  };
  if (!stored.ok()) {
    log::Error("snapshot failed", {{"snapshot", snap.id}, {"error", stored.status().ToString()}});
    snap.status = SnapshotStatus::kFailed;
    snap.status_reason = stored.status().message();
    Status failed = ctx_.catalog->InTransaction([&]() -> Status {
      // Each recorded as far as it goes: a failure here must not undo the others.
      WarnIfFailed(instance_available(), "ending backing-up", inst.id);
      WarnIfFailed(ctx_.catalog->UpdateSnapshot(snap), "recording a failed snapshot", snap.id);
      ctx_.Event("db-snapshot", snap.id, ctx_.SnapshotArn(snap.id), "Snapshot failed: " + stored.status().message(),
                 {"failure"});
      return Status::Ok();
    });
    WarnIfFailed(failed, "recording a failed snapshot", snap.id);
    forget_progress();
    return stored.status();
  }
  snap.status = SnapshotStatus::kAvailable;
  snap.percent_progress = 100;
  snap.logical_bytes = stored->logical_bytes;
  snap.stored_bytes = stored->stored_bytes;
  Status recorded = ctx_.catalog->InTransaction([&]() -> Status {
    WarnIfFailed(instance_available(), "ending backing-up", inst.id);
    RETURN_IF_ERROR(ctx_.catalog->UpdateSnapshot(snap));
    ctx_.Event("db-snapshot", snap.id, ctx_.SnapshotArn(snap.id),
               snap.snapshot_type == SnapshotType::kManual ? "Manual snapshot created" : "Automated snapshot created", {"creation"});
    ctx_.Event("db-instance", inst.id, ctx_.InstanceArn(inst.id), "Finished DB Instance backup", {"backup"});
    return Status::Ok();
  });
  forget_progress();
  if (!recorded.ok()) {
    // The rollback took it back to backing-up.
    WarnIfFailed(ctx_.catalog->InTransaction(instance_available), "ending backing-up", inst.id);
    return recorded;
  }
  log::Info("snapshot available", {{"snapshot", snap.id},
                                   {"logical_bytes", snap.logical_bytes},
                                   {"stored_bytes", snap.stored_bytes},
                                   {"read_bytes", stored->read_bytes},
                                   {"incremental", stored->incremental}});
  return Status::Ok();
}

void Snapshots::FinishRestore(const catalog::InstanceRecord& r) {
  engine::Engine* eng = engine::FindEngine(r.engine);
  engine::InstanceSpec spec = SpecOf(r);
  Status st = eng ? Status::Ok() : Status(errors::kInternalFailure, "unknown engine " + r.engine);
  // A restore resumed after a crash may find its server still recovering.
  if (st.ok() && std::filesystem::exists(spec.data_dir)) st = eng->Stop(spec);
  if (st.ok()) {
    st = ctx_.backups->RestoreSnapshot(r.restore_snapshot, spec.data_dir, nullptr,
                                       !eng->ReadsRestoredFilesWhole());
  }
  std::optional<TimePoint> point_in_time;
  if (st.ok()) {
    auto pit = hooks_.finish_point_in_time(r);
    st = pit.status();
    if (pit.ok()) point_in_time = *pit;
  }
  if (st.ok()) st = eng->FinishRestore(spec, point_in_time);
  catalog::InstanceRecord started = r;
  if (st.ok()) st = ports_.StartOnPickedPort(started, *eng);
  if (!st.ok()) {
    log::Error("restore failed", {{"instance", r.id}, {"error", st.ToString()}});
    ctx_.SetStatusOrLog(r.id, InstanceStatus::kFailed, st.message());
    ctx_.Event("db-instance", r.id, ctx_.InstanceArn(r.id), "Restore failed: " + st.message(), {"failure"});
    return;
  }
  catalog::InstanceRecord restored;
  Status done = ctx_.catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(restored, ctx_.catalog->GetInstance(r.id));
    // With backups on, it stays creating until its first backup (TakeFirstBackup).
    if (restored.backup_retention_days <= 0) restored.status = InstanceStatus::kAvailable;
    restored.restore_snapshot.clear();
    restored.restore_replay.reset();
    return ctx_.catalog->UpdateInstance(restored);
  });
  if (!done.ok()) {
    log::Error("restore bookkeeping failed", {{"instance", r.id}, {"error", done.ToString()}});
    return;
  }
  if (restored.backup_retention_days > 0) hooks_.take_first_backup(restored);
  ctx_.Event("db-instance", r.id, ctx_.InstanceArn(r.id),
             r.restore_replay ? "Restored from DB instance to a point in time"
                                                    : "Restored from snapshot",
             {"restoration"});
  ctx_.scheduler->Notify();
  log::Info("instance restored", {{"instance", r.id}});
}

void Snapshots::Recover() {
  auto stored = ctx_.backups->ListSnapshots();
  if (!stored.ok()) {
    log::Error("cannot list repository snapshots", {{"error", stored.status().ToString()}});
    return;
  }
  std::set<std::string> in_repo(stored->begin(), stored->end());
  std::set<std::string> known;
  for (auto s : ctx_.catalog->ListSnapshots()) {
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
      WarnIfFailed(ctx_.catalog->UpdateSnapshot(s), "recovering a snapshot", s.id);
      log::Info("recovered snapshot", {{"snapshot", s.id}, {"status", std::string(ToString(s.status))}});
    } else if (s.status == SnapshotStatus::kDeleting) {
      if (Status st = ctx_.backups->DeleteSnapshot(s.repo_snapshot_id); !st.Is(errors::kObjectNotFound)) {
        WarnIfFailed(st, "finishing a snapshot delete", s.id);
      }
      Status forgotten = ctx_.catalog->InTransaction([&]() -> Status {
        RETURN_IF_ERROR(ctx_.catalog->DeleteAllTags(ctx_.SnapshotArn(s.id)));
        return ctx_.catalog->DeleteSnapshot(s.id);
      });
      WarnIfFailed(forgotten, "finishing a snapshot delete", s.id);
    }
  }
  // Manifests the catalog never recorded (a crash between the two) are dropped;
  // garbage collection then reclaims their chunks.
  for (const auto& id : in_repo) {
    if (!known.count(id)) {
      log::Info("dropping unrecorded repository snapshot", {{"repo_snapshot", id}});
      WarnIfFailed(ctx_.backups->DeleteSnapshot(id), "dropping an unrecorded repository snapshot", id);
    }
  }
  // Instances left backing-up lost their snapshot job with the crash.
  for (auto inst : ctx_.catalog->ListInstances()) {
    if (inst.status == InstanceStatus::kBackingUp) {
      inst.status = InstanceStatus::kAvailable;
      WarnIfFailed(ctx_.catalog->UpdateInstance(inst), "ending backing-up", inst.id);
    }
  }
}

Result<Snapshot> Snapshots::Create(const CreateSnapshotRequest& req) {
  RETURN_IF_ERROR(ValidateIdentifier("DBSnapshotIdentifier", req.snapshot_id, 255));
  for (const auto& t : req.tags) RETURN_IF_ERROR(ValidateTag(t.key, t.value));
  if (req.tags.size() > kMaxTagsPerResource) {
    return InvalidValue(fmt::format("A resource may have at most {} tags", kMaxTagsPerResource));
  }
  catalog::InstanceRecord inst;
  catalog::SnapshotRecord snap;
  RETURN_IF_ERROR(ctx_.catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(inst, ctx_.catalog->GetInstance(ToLower(req.instance_id)));
    if (inst.status != InstanceStatus::kAvailable) {
      return Status(errors::kInvalidDBInstanceState,
                    fmt::format("Cannot create a snapshot because the database instance {} is not "
                                "currently in the available state (it is {}).",
                                inst.id, ToString(inst.status)));
    }
    if (CountManualSnapshots() >= ctx_.config.manual_snapshot_quota) {
      return Status(errors::kSnapshotQuotaExceeded,
                    fmt::format("Cannot create more than {} manual snapshots", ctx_.config.manual_snapshot_quota));
    }
    // Refused before it is recorded: no snapshot half-written on a full disk.
    RETURN_IF_ERROR(ctx_.RefuseIfDiskLow(errors::kSnapshotQuotaExceeded, "a snapshot"));
    snap = NewSnapshotRecord(inst, ToLower(req.snapshot_id), SnapshotType::kManual);
    RETURN_IF_ERROR(ctx_.catalog->InsertSnapshot(snap));
    std::vector<Tag> tags = req.tags;
    if (inst.copy_tags_to_snapshot && tags.empty()) {
      tags = ctx_.catalog->ListTags(ctx_.InstanceArn(inst.id));
    }
    RETURN_IF_ERROR(ctx_.catalog->SetTags(ctx_.SnapshotArn(snap.id), tags));
    inst.status = InstanceStatus::kBackingUp;
    return ctx_.catalog->UpdateInstance(inst);
  }));
  SubmitSnapshot(inst, snap);
  return ToSnapshot(snap);
}

Result<std::vector<Snapshot>> Snapshots::Describe(const SnapshotQuery& q) {
  std::vector<catalog::SnapshotRecord> records;
  if (q.snapshot_id) {
    ASSIGN_OR_RETURN(auto id, ctx_.IdFrom(*q.snapshot_id, "snapshot"));
    ASSIGN_OR_RETURN(auto one, ctx_.catalog->GetSnapshot(ToLower(id)));
    records.push_back(std::move(one));
  } else {
    records = ctx_.catalog->ListSnapshots();
  }
  std::vector<Snapshot> out;
  for (const auto& r : records) {
    if (q.instance_id && r.instance_id != ToLower(*q.instance_id)) continue;
    if (q.snapshot_type && r.snapshot_type != *q.snapshot_type) continue;
    if (!Matches(q.snapshot_ids, r.id) && !Matches(q.snapshot_ids, ctx_.SnapshotArn(r.id))) continue;
    if (!Matches(q.instance_ids, r.instance_id) && !Matches(q.instance_ids, ctx_.InstanceArn(r.instance_id))) continue;
    if (!Matches(q.resource_ids, r.instance_resource_id)) continue;
    if (!Matches(q.snapshot_types, ToString(r.snapshot_type))) continue;
    if (!Matches(q.engines, r.engine)) continue;
    out.push_back(ToSnapshot(r));
  }
  return out;
}

Result<Snapshot> Snapshots::Delete(const std::string& id_in) {
  ASSIGN_OR_RETURN(std::string id, ctx_.IdFrom(id_in, "snapshot"));
  id = ToLower(id);
  catalog::SnapshotRecord snap;
  ctx_.MakeRoom("DeleteDBSnapshot");
  RETURN_IF_ERROR(ctx_.catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(snap, ctx_.catalog->GetSnapshot(id));
    if (snap.snapshot_type != SnapshotType::kManual) {
      return Status(errors::kInvalidDBSnapshotState,
                    fmt::format("Automated snapshot {} cannot be deleted; it expires with the "
                                "instance's backup retention period.",
                                id));
    }
    if (snap.status != SnapshotStatus::kAvailable && snap.status != SnapshotStatus::kFailed) {
      return Status(
          errors::kInvalidDBSnapshotState,
          fmt::format("Snapshot {} is {}; only available or failed snapshots can be deleted.", id, ToString(snap.status)));
    }
    snap.status = SnapshotStatus::kDeleting;
    return ctx_.catalog->UpdateSnapshot(snap);
  }));
  // Forgetting a manifest is quick; the chunks go with the next garbage collection.
  Status gone = ctx_.backups->DeleteSnapshot(snap.repo_snapshot_id);
  if (!gone.ok() && !gone.Is(errors::kObjectNotFound)) {
    snap.status = SnapshotStatus::kAvailable;
    WarnIfFailed(ctx_.catalog->UpdateSnapshot(snap), "putting back a snapshot not deleted", snap.id);
    return gone;
  }
  Snapshot out = ToSnapshot(snap);
  RETURN_IF_ERROR(ctx_.catalog->InTransaction([&]() -> Status {
    RETURN_IF_ERROR(ctx_.catalog->DeleteAllTags(ctx_.SnapshotArn(id)));
    return ctx_.catalog->DeleteSnapshot(id);
  }));
  ctx_.Event("db-snapshot", id, ctx_.SnapshotArn(id), "Deleted manual snapshot", {"deletion"});
  ctx_.ScheduleGarbageCollection();
  out.record.status = SnapshotStatus::kDeleted;
  return out;
}

Result<Snapshot> Snapshots::Copy(const CopySnapshotRequest& req) {
  RETURN_IF_ERROR(ValidateIdentifier("TargetDBSnapshotIdentifier", req.target_id, 255));
  for (const auto& t : req.tags) RETURN_IF_ERROR(ValidateTag(t.key, t.value));
  catalog::SnapshotRecord copy;
  ASSIGN_OR_RETURN(std::string source_id, ctx_.IdFrom(req.source_id, "snapshot"));
  source_id = ToLower(source_id);
  RETURN_IF_ERROR(ctx_.catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto src, ctx_.catalog->GetSnapshot(source_id));
    if (src.status != SnapshotStatus::kAvailable) {
      return Status(errors::kInvalidDBSnapshotState,
                    fmt::format("Snapshot {} is {}; only an available snapshot can be copied.", src.id, ToString(src.status)));
    }
    if (CountManualSnapshots() >= ctx_.config.manual_snapshot_quota) {
      return Status(errors::kSnapshotQuotaExceeded,
                    fmt::format("Cannot create more than {} manual snapshots", ctx_.config.manual_snapshot_quota));
    }
    RETURN_IF_ERROR(ctx_.RefuseIfDiskLow(errors::kSnapshotQuotaExceeded, "a snapshot copy"));
    copy = src;
    copy.id = ToLower(req.target_id);
    copy.snapshot_type = SnapshotType::kManual;  // a copy of an automated snapshot is manual
    copy.create_time = ctx_.Now();
    copy.repo_snapshot_id = RandomUuid();
    copy.source_snapshot_id = src.id;
    copy.stored_bytes = 0;  // shares every chunk with its source
    RETURN_IF_ERROR(ctx_.catalog->InsertSnapshot(copy));
    // As RDS does: the request's tags when it gives any, else the source's with CopyTags.
    std::vector<Tag> tags = req.tags;
    if (tags.empty() && req.copy_tags) tags = ctx_.catalog->ListTags(ctx_.SnapshotArn(src.id));
    RETURN_IF_ERROR(ctx_.catalog->SetTags(ctx_.SnapshotArn(copy.id), tags));
    return ctx_.backups->CopySnapshot(src.repo_snapshot_id, copy.repo_snapshot_id, ManifestMetadata(copy));
  }));
  ctx_.Event("db-snapshot", copy.id, ctx_.SnapshotArn(copy.id), fmt::format("Finished copy of snapshot {}", source_id),
             {"creation"});
  return ToSnapshot(copy);
}

Result<catalog::InstanceRecord> Snapshots::RestoredInstance(const catalog::SnapshotRecord& snap,
                                                            const RestoreFromSnapshotRequest& req) {
  if (req.engine && ToLower(*req.engine) != snap.engine) {
    return Status(errors::kInvalidParameterCombination,
                  fmt::format("Engine {} differs from the backup's engine {}: a restore keeps its engine.", *req.engine,
                              snap.engine));
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
    ASSIGN_OR_RETURN(r.port, ports_.Assign(req.port));
  } else {
    r.port = req.port.value_or(snap.port);
  }
  r.backup_retention_days = req.backup_retention_days.value_or(snap.backup_retention_days);
  if (r.backup_retention_days < 0 || r.backup_retention_days > 35) {
    return InvalidValue("Invalid BackupRetentionPeriod: must be from 0 to 35 days");
  }
  r.backup_window = req.backup_window.value_or(snap.backup_window.empty() ? DefaultBackupWindow() : snap.backup_window);
  RETURN_IF_ERROR(ParseDailyWindow("PreferredBackupWindow", r.backup_window, 30).status());
  r.maintenance_window = DefaultMaintenanceWindow(r.backup_window);
  r.deletion_protection = req.deletion_protection.value_or(false);
  r.copy_tags_to_snapshot = req.copy_tags_to_snapshot.value_or(false);
  ctx_.StartInstanceRecord(r);
  return r;
}

Result<catalog::InstanceRecord> Snapshots::RestoreFromSnapshot(const RestoreFromSnapshotRequest& req) {
  RETURN_IF_ERROR(ValidateIdentifier("DBInstanceIdentifier", req.instance_id, 63));
  for (const auto& t : req.tags) RETURN_IF_ERROR(ValidateTag(t.key, t.value));
  catalog::InstanceRecord r;
  RETURN_IF_ERROR(ctx_.catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto snap_id, ctx_.IdFrom(req.snapshot_id, "snapshot"));
    ASSIGN_OR_RETURN(auto snap, ctx_.catalog->GetSnapshot(ToLower(snap_id)));
    if (snap.status != SnapshotStatus::kAvailable) {
      return Status(
          errors::kInvalidDBSnapshotState,
          fmt::format("Snapshot {} is {}; only an available snapshot can be restored.", snap.id, ToString(snap.status)));
    }
    RETURN_IF_ERROR(ctx_.RefuseIfDiskLow(errors::kStorageQuotaExceeded, "a restore"));
    ASSIGN_OR_RETURN(r, RestoredInstance(snap, req));
    r.restore_snapshot = snap.repo_snapshot_id;
    RETURN_IF_ERROR(ctx_.catalog->InsertInstance(r));
    return ctx_.catalog->SetTags(ctx_.InstanceArn(r.id), req.tags);
  }));
  log::Info("restoring instance", {{"instance", r.id}, {"snapshot", req.snapshot_id}});
  ctx_.workers->Submit([this, r] { FinishRestore(r); });
  return r;
}

void Snapshots::SubmitSnapshot(const catalog::InstanceRecord& inst, const catalog::SnapshotRecord& snap) {
  // RunSnapshot logs a failure and records it on the snapshot.
  ctx_.workers->Submit([this, inst, snap] { (void)RunSnapshot(inst, snap); });
}

}  // namespace strata::control
