// Automated backups: change-log capture per instance, the daily automated
// snapshot in the backup window, retention, retained backups of deleted
// instances (see automated_backups.h for which snapshots serve as bases).
#include "control/automated_backups.h"

#include <fmt/format.h>

#include <algorithm>


namespace strata::control {
namespace {

TimePoint LastBreak(const catalog::AutomatedBackupRecord& ab) {
  TimePoint t{};
  for (const auto& g : ab.gaps)
    if (g.breaks) t = std::max(t, g.to);
  return t;
}

std::string FormatAutomatedId(const std::string& instance_id, TimePoint t) {
  std::string iso = FormatIso8601(t);  // 2026-11-23T09:00:00.000Z
  return fmt::format("rds:{}-{}-{}-{}", instance_id, iso.substr(0, 10), iso.substr(11, 2), iso.substr(14, 2));
}

}  // namespace

bool IsBase(const catalog::SnapshotRecord& s, const std::string& resource_id) {
  return s.instance_resource_id == resource_id && s.status == SnapshotStatus::kAvailable && s.log_seq_after >= 0;
}

void AutomatedBackups::RegisterJobs(scheduler::Scheduler& scheduler) {
  scheduler.EveryPass("pending retention changes", [this](TimePoint now) { ApplyPendingRetention(now); });
  scheduler.EveryPass("change-log captures", [this](TimePoint) { RunCaptures(); });
  scheduler.EveryPass("daily automated snapshots", [this](TimePoint now) { TakeDueAutomatedSnapshots(now); });
  scheduler.EveryPass("retention expiry", [this](TimePoint) {
    for (const auto& ab : ctx_.catalog->ListAutomatedBackups()) ApplyRetention(ab);
  });
}

std::shared_ptr<InstanceCapture> AutomatedBackups::CaptureOf(const std::string& resource_id) {
  std::lock_guard lock(capture_mu_);
  auto it = captures_.find(resource_id);
  return it == captures_.end() ? nullptr : it->second;
}

void AutomatedBackups::CatchUpCapture(const catalog::InstanceRecord& r) {
  auto c = CaptureOf(r.resource_id);
  if (!c) return;
  // The commit is durable in the database either way; a capture that cannot
  // read now numbers it with its next poll, and reports its own failures.
  if (auto mark = c->CatchUp(); !mark.ok()) {
    log::Warn("change-log capture did not catch up", {{"instance", r.id}, {"error", mark.status().ToString()}});
  }
}

void AutomatedBackups::ScheduleLogCompaction(const std::string& stream, TimePoint before) {
  ctx_.queue->Enqueue("log-compaction " + stream, [this, stream, before] { CompactLog(stream, before); });
}

Status AutomatedBackups::EnsureCapture(const catalog::InstanceRecord& r) {
  if (r.backup_retention_days <= 0) return Status::Ok();
  if (CaptureOf(r.resource_id)) return Status::Ok();
  engine::Engine* eng = engine::FindEngine(r.engine);
  if (!eng) return Status(errors::kInternalFailure, "unknown engine " + r.engine);
  auto ab = ctx_.catalog->GetAutomatedBackup(r.resource_id);
  catalog::AutomatedBackupRecord rec = ab.ok() ? *ab : catalog::AutomatedBackupRecord{};
  rec.resource_id = r.resource_id;
  rec.instance_id = r.id;
  rec.status = AutomatedBackupStatus::kActive;
  rec.retention_days = r.backup_retention_days;
  rec.backup_window = r.backup_window;
  rec.engine = r.engine;
  rec.engine_version = r.engine_version;
  rec.instance_class = r.instance_class;
  rec.db_name = r.db_name;
  rec.master_username = r.master_username;
  rec.port = r.port;
  rec.allocated_storage_gib = r.allocated_storage_gib;
  rec.instance_create_time = r.create_time;
  RETURN_IF_ERROR(ctx_.catalog->PutAutomatedBackup(rec));
  ASSIGN_OR_RETURN(auto engine_capture, eng->StartCapture(SpecOf(r), *ctx_.config.clock, rec.capture_position));
  std::string rid = r.resource_id, id = r.id;
  auto on_gap = [this, rid, id](const catalog::LogGap& gap) {
    Status recorded = ctx_.catalog->InTransaction([&]() -> Status {
      ASSIGN_OR_RETURN(auto cur, ctx_.catalog->GetAutomatedBackup(rid));
      if (gap.from != TimePoint{}) cur.gaps.push_back(gap);
      return ctx_.catalog->PutAutomatedBackup(cur);
    });
    WarnIfFailed(recorded, "recording a change-log gap", rid);
    if (gap.from != TimePoint{}) {
      ctx_.Event("db-instance", id, ctx_.InstanceArn(id),
                 fmt::format("Point-in-time restore is not possible between {} and {}: {}", FormatIso8601(gap.from),
                             FormatIso8601(gap.to), gap.reason),
                 {"backup", "notification"});
    }
    // The scheduler's next pass sees no base after the break and takes one.
    if (gap.breaks) ctx_.scheduler->Notify();
  };
  auto capture = std::make_shared<InstanceCapture>(r.resource_id, std::move(engine_capture), ctx_.backups, ctx_.catalog,
                                                   *ctx_.config.clock, on_gap);
  {
    std::lock_guard lock(capture_mu_);
    if (captures_.count(r.resource_id)) return Status::Ok();
    captures_[r.resource_id] = capture;
  }
  capture->Start();
  log::Info("change-log capture started", {{"instance", r.id}});
  return Status::Ok();
}

void AutomatedBackups::StopCapture(const std::string& resource_id) {
  std::shared_ptr<InstanceCapture> c;
  {
    std::lock_guard lock(capture_mu_);
    auto it = captures_.find(resource_id);
    if (it == captures_.end()) return;
    c = it->second;
    captures_.erase(it);
  }
  c->Stop();
}

void AutomatedBackups::StopAllCaptures() {
  std::map<std::string, std::shared_ptr<InstanceCapture>> all;
  {
    std::lock_guard lock(capture_mu_);
    all.swap(captures_);
  }
  for (auto& [rid, c] : all) c->Stop();
}

Status AutomatedBackups::DeleteAutomatedBackups(const std::string& resource_id) {
  StopCapture(resource_id);
  for (auto s : ctx_.catalog->ListSnapshots()) {
    if (s.instance_resource_id == resource_id && s.snapshot_type != SnapshotType::kAutomated && s.log_seq_after >= 0) {
      // A manual snapshot stays, but its place in this change log goes with
      // the log: a new log after automated backups come back numbers afresh.
      s.log_seq_before = s.log_seq_after = -1;
      RETURN_IF_ERROR(ctx_.catalog->UpdateSnapshot(s));
      continue;
    }
    if (s.instance_resource_id != resource_id || s.snapshot_type != SnapshotType::kAutomated) continue;
    Status st = ctx_.backups->DeleteSnapshot(s.repo_snapshot_id);
    if (!st.ok() && !st.Is(errors::kObjectNotFound)) return st;
    RETURN_IF_ERROR(ctx_.catalog->InTransaction([&]() -> Status {
      RETURN_IF_ERROR(ctx_.catalog->DeleteAllTags(ctx_.SnapshotArn(s.id)));
      return ctx_.catalog->DeleteSnapshot(s.id);
    }));
  }
  RETURN_IF_ERROR(ctx_.backups->DeleteLogSegmentsBefore(resource_id, TimePoint::max()).status());
  RETURN_IF_ERROR(ctx_.catalog->DeleteAutomatedBackup(resource_id));
  ctx_.ScheduleGarbageCollection();
  return Status::Ok();
}

std::optional<AutomatedBackups::RestoreWindow> AutomatedBackups::WindowOf(const catalog::AutomatedBackupRecord& ab) {
  TimePoint latest = ab.restorable_until;
  if (auto c = CaptureOf(ab.resource_id)) latest = c->RestorableUntil();
  // From the oldest base on; breaks and holes inside are reported as events
  // and refused by RestoreToPointInTime with the reason.
  std::optional<TimePoint> earliest;
  for (const auto& s : ctx_.catalog->ListSnapshots()) {
    if (!IsBase(s, ab.resource_id)) continue;
    if (!earliest || s.log_time_after < *earliest) earliest = s.log_time_after;
  }
  if (!earliest || *earliest > latest) return std::nullopt;
  TimePoint retention_start = ctx_.Now() - std::chrono::hours(24) * ab.retention_days;
  return RestoreWindow{std::max(*earliest, std::min(retention_start, latest)), latest};
}

Result<std::pair<catalog::InstanceRecord, catalog::SnapshotRecord>> AutomatedBackups::BeginAutomatedSnapshot(
    const catalog::InstanceRecord& inst_in, InstanceStatus from_status) {
  catalog::InstanceRecord inst;
  catalog::SnapshotRecord snap;
  RETURN_IF_ERROR(ctx_.catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(inst, ctx_.catalog->GetInstance(inst_in.id));
    if (inst.status != from_status || inst.resource_id != inst_in.resource_id) {
      return Status(errors::kInvalidDBInstanceState,
                    fmt::format("{} is {}, not {}", inst.id, ToString(inst.status), ToString(from_status)));
    }
    std::string id = FormatAutomatedId(inst.id, ctx_.Now());
    for (int n = 2; ctx_.catalog->GetSnapshot(id).ok(); ++n)
      id = FormatAutomatedId(inst.id, ctx_.Now()) + "-" + std::to_string(n);
    snap = snapshots_.NewSnapshotRecord(inst, id, SnapshotType::kAutomated);
    RETURN_IF_ERROR(ctx_.catalog->InsertSnapshot(snap));
    if (inst.copy_tags_to_snapshot) {
      RETURN_IF_ERROR(
          ctx_.catalog->SetTags(ctx_.SnapshotArn(snap.id), ctx_.catalog->ListTags(ctx_.InstanceArn(inst.id))));
    }
    inst.status = InstanceStatus::kBackingUp;
    return ctx_.catalog->UpdateInstance(inst);
  }));
  return std::make_pair(inst, snap);
}

void AutomatedBackups::StartAutomatedSnapshot(const catalog::InstanceRecord& inst_in) {
  auto begun = BeginAutomatedSnapshot(inst_in, InstanceStatus::kAvailable);
  if (!begun.ok()) return;  // no longer available: the next pass looks again
  snapshots_.SubmitSnapshot(begun->first, begun->second);
}

void AutomatedBackups::TakeFirstBackup(const catalog::InstanceRecord& r) {
  Status st = ctx_.disk_paused ? Status(errors::kNoSpace, "the disk is below its low-water mark") : EnsureCapture(r);
  if (st.ok()) {
    auto begun = BeginAutomatedSnapshot(r, r.status);
    st = begun.status();
    if (st.ok()) st = snapshots_.RunSnapshot(begun->first, begun->second);  // it ends with the instance available
    if (auto capture = CaptureOf(r.resource_id); st.ok() && capture) st = capture->Settle();
  }
  if (st.ok()) return;
  log::Warn("first automated backup not taken; the scheduler tries again",
            {{"instance", r.id}, {"error", st.ToString()}});
  if (Status set = ctx_.SetStatus(r.id, InstanceStatus::kAvailable); !set.ok()) {
    log::Error("instance status update failed", {{"instance", r.id}, {"error", set.ToString()}});
  }
}

void AutomatedBackups::ApplyRetention(const catalog::AutomatedBackupRecord& ab) {
  // A point-in-time restore under way may need the oldest base and segments:
  // retention waits for it.
  for (const auto& inst : ctx_.catalog->ListInstances()) {
    const auto& p = inst.restore_replay;
    if (inst.status == InstanceStatus::kCreating && p && p->resource_id == ab.resource_id) return;
  }
  TimePoint cutoff = ctx_.Now() - std::chrono::hours(24) * ab.retention_days;
  if (ab.status == AutomatedBackupStatus::kRetained && ab.restorable_until < cutoff) {
    log::Info("retained automated backups expired", {{"resource", ab.resource_id}});
    Status st = DeleteAutomatedBackups(ab.resource_id);
    if (!st.ok()) log::Warn("expiring retained backups failed", {{"error", st.ToString()}});
    return;
  }
  // Keep the newest base that serves the window's first moment; everything
  // older goes, with the log segments only it needed.
  auto snaps = ctx_.catalog->ListSnapshots();
  std::optional<catalog::SnapshotRecord> keep;
  for (const auto& s : snaps) {
    if (s.snapshot_type != SnapshotType::kAutomated || !IsBase(s, ab.resource_id) || s.log_time_after > cutoff) continue;
    if (!keep || s.log_time_after > keep->log_time_after) keep = s;
  }
  bool deleted = false;
  for (const auto& s : snaps) {
    if (s.instance_resource_id != ab.resource_id || s.snapshot_type != SnapshotType::kAutomated || s.status != SnapshotStatus::kAvailable) continue;
    bool expired = keep ? s.log_time_after < keep->log_time_after : false;
    // Automated snapshots taken without capture serve no window: plain age.
    if (s.log_seq_after < 0) expired = s.create_time < cutoff;
    if (!expired) continue;
    if (Status d = ctx_.backups->DeleteSnapshot(s.repo_snapshot_id); !d.ok() && !d.Is(errors::kObjectNotFound))
      continue;
    Status forgotten = ctx_.catalog->InTransaction([&]() -> Status {
      RETURN_IF_ERROR(ctx_.catalog->DeleteAllTags(ctx_.SnapshotArn(s.id)));
      return ctx_.catalog->DeleteSnapshot(s.id);
    });
    WarnIfFailed(forgotten, "forgetting an expired automated snapshot", s.id);
    ctx_.Event("db-snapshot", s.id, ctx_.SnapshotArn(s.id),
               "Automated snapshot deleted: past the backup retention period", {"deletion"});
    deleted = true;
  }
  if (keep) {
    auto n = ctx_.backups->DeleteLogSegmentsBefore(ab.resource_id, keep->log_time_before);
    deleted = deleted || (n.ok() && *n > 0);
    // Gaps before the oldest base no longer matter.
    Status trimmed = ctx_.catalog->InTransaction([&]() -> Status {
      ASSIGN_OR_RETURN(auto cur, ctx_.catalog->GetAutomatedBackup(ab.resource_id));
      auto old = std::remove_if(cur.gaps.begin(), cur.gaps.end(),
                                [&](const catalog::LogGap& g) { return g.to < keep->log_time_before; });
      if (old == cur.gaps.end()) return Status::Ok();
      cur.gaps.erase(old, cur.gaps.end());
      return ctx_.catalog->PutAutomatedBackup(cur);
    });
    WarnIfFailed(trimmed, "forgetting change-log gaps before the oldest base", ab.resource_id);
  }
  if (deleted) ctx_.ScheduleGarbageCollection();
}

void AutomatedBackups::OnRetentionChanged(const catalog::InstanceRecord& r) {
  if (r.backup_retention_days > 0) {
    Status updated = ctx_.catalog->InTransaction([&]() -> Status {
      auto ab = ctx_.catalog->GetAutomatedBackup(r.resource_id);
      if (!ab.ok()) return Status::Ok();
      ab->retention_days = r.backup_retention_days;
      ab->backup_window = r.backup_window;
      return ctx_.catalog->PutAutomatedBackup(*ab);
    });
    WarnIfFailed(updated, "recording the new backup retention", r.id);
    ctx_.scheduler->Notify();
    return;
  }
  if (!ctx_.catalog->GetAutomatedBackup(r.resource_id).ok()) return;
  Status st = DeleteAutomatedBackups(r.resource_id);
  if (!st.ok()) log::Warn("deleting automated backups failed", {{"instance", r.id}, {"error", st.ToString()}});
  if (engine::Engine* eng = engine::FindEngine(r.engine)) {
    if (Status rel = eng->ReleaseCapture(SpecOf(r)); !rel.ok()) {
      log::Warn("releasing the capture's hold on the log failed", {{"instance", r.id}, {"error", rel.ToString()}});
    }
  }
  ctx_.Event("db-instance", r.id, ctx_.InstanceArn(r.id), "Automated backups for this DB instance have been disabled",
             {"backup"});
}

void AutomatedBackups::ApplyPendingRetention(TimePoint now) {
  for (auto r : ctx_.catalog->ListInstances()) {
    if (!r.pending_backup_retention_days || r.status != InstanceStatus::kAvailable) continue;
    auto mw = ParseWeeklyWindow("PreferredMaintenanceWindow", r.maintenance_window);
    if (!mw.ok() || !InWindow(*mw, now)) continue;
    int days = *r.pending_backup_retention_days;
    Status st = ctx_.catalog->InTransaction([&]() -> Status {
      ASSIGN_OR_RETURN(auto cur, ctx_.catalog->GetInstance(r.id));
      cur.backup_retention_days = days;
      cur.pending_backup_retention_days.reset();
      r = cur;
      return ctx_.catalog->UpdateInstance(cur);
    });
    if (!st.ok()) {
      log::Warn("pending retention change not applied", {{"instance", r.id}, {"error", st.ToString()}});
      continue;
    }
    OnRetentionChanged(r);
  }
}

void AutomatedBackups::RunCaptures() {
  for (const auto& r : ctx_.catalog->ListInstances()) {
    if (r.backup_retention_days <= 0 || (r.status != InstanceStatus::kAvailable && r.status != InstanceStatus::kBackingUp)) continue;
    if (Status st = EnsureCapture(r); !st.ok()) {
      log::Warn("cannot start change-log capture", {{"instance", r.id}, {"error", st.ToString()}});
      continue;
    }
    // Below the low-water mark no compaction (it writes the merged segment
    // before it deletes its members); the change log itself goes on being captured.
    if (ctx_.disk_paused) continue;
    if (auto capture = CaptureOf(r.resource_id)) {
      if (auto before = capture->TakeCompaction()) ScheduleLogCompaction(r.resource_id, *before);
    }
  }
}

void AutomatedBackups::TakeDueAutomatedSnapshots(TimePoint now) {
  // Below the low-water mark: no automated snapshot.
  if (ctx_.disk_paused) return;
  auto snaps = ctx_.catalog->ListSnapshots();
  for (const auto& r : ctx_.catalog->ListInstances()) {
    if (r.backup_retention_days <= 0 || r.status != InstanceStatus::kAvailable || !CaptureOf(r.resource_id)) continue;
    auto ab = ctx_.catalog->GetAutomatedBackup(r.resource_id);
    if (!ab.ok()) continue;
    // A base is needed now if there is none since the last break in the log;
    // otherwise once a day, in the backup window.
    TimePoint last_break = LastBreak(*ab);
    bool have_base = false, creating = false;
    TimePoint newest_automated{};
    for (const auto& s : snaps) {
      if (s.instance_resource_id != r.resource_id) continue;
      creating = creating || (s.status == SnapshotStatus::kCreating);
      if (IsBase(s, r.resource_id) && s.log_time_after >= last_break) have_base = true;
      if (s.snapshot_type == SnapshotType::kAutomated && s.status != SnapshotStatus::kFailed)
        newest_automated = std::max(newest_automated, s.create_time);
    }
    if (creating) continue;
    bool due = !have_base;
    auto bw = ParseDailyWindow("PreferredBackupWindow", r.backup_window, 30);
    if (!due && bw.ok()) {
      TimePoint window_start = LastDailyWindowStart(*bw, now);
      due = newest_automated < window_start;
    }
    if (due) StartAutomatedSnapshot(r);
  }
}

void AutomatedBackups::CompactLog(const std::string& stream, TimePoint before) {
  // In the background of a database under write load (compaction follows
  // the load): at the lowest CPU priority, so the writers and the capture
  // that keep up with them come first.
  Result<LogCompaction> done = Status(errors::kInternalFailure, "not run");
  RunAtBackgroundPriority([&] { done = ctx_.backups->CompactLog(stream, before); });
  if (!done.ok()) {
    log::Warn("change-log compaction failed", {{"resource", stream}, {"error", done.status().ToString()}});
  } else if (done->segments_written > 0) {
    log::Info("change-log segments merged", {{"resource", stream},
                                             {"merged", static_cast<int64_t>(done->segments_merged)},
                                             {"written", static_cast<int64_t>(done->segments_written)},
                                             {"bytes_before", done->bytes_before},
                                             {"bytes_after", done->bytes_after}});
  }
  // A long backlog is merged over several bounded passes, one after another.
  if (done.ok() && done->more && !ctx_.disk_paused) ScheduleLogCompaction(stream, before);
}

Result<std::vector<AutomatedBackup>> AutomatedBackups::Describe(const AutomatedBackupQuery& q) {
  std::vector<AutomatedBackup> out;
  bool named = q.resource_id || q.instance_id || q.arn;
  std::optional<std::string> canonical_arn;
  if (q.arn) {
    ASSIGN_OR_RETURN(auto arn, ParseOwnArn(*q.arn, ctx_.Owner(), "auto-backup"));
    canonical_arn = arn.Text();
  }
  for (const auto& ab : ctx_.catalog->ListAutomatedBackups()) {
    if (q.resource_id && ab.resource_id != *q.resource_id) continue;
    if (q.instance_id && ab.instance_id != ToLower(*q.instance_id)) continue;
    std::string arn = ctx_.AutomatedBackupArn(ab.resource_id);
    if (canonical_arn && arn != *canonical_arn) continue;
    AutomatedBackup b;
    b.record = ab;
    b.arn = arn;
    b.instance_arn = ctx_.InstanceArn(ab.instance_id);
    b.encrypted = ctx_.config.backups_encrypted;
    if (auto w = WindowOf(ab)) {
      b.earliest = w->earliest;
      b.latest = w->latest;
    } else if (ab.status == AutomatedBackupStatus::kActive) {
      b.record.status = AutomatedBackupStatus::kCreating;  // as RDS: waiting for the first backup
    }
    if (!Matches(q.statuses, ToString(b.record.status)) || !Matches(q.instance_ids, ab.instance_id) ||
        !Matches(q.resource_ids, ab.resource_id)) {
      continue;
    }
    out.push_back(std::move(b));
  }
  if (named && out.empty()) {
    return Status(errors::kDBInstanceAutomatedBackupNotFound, "No automated backup matches the request.");
  }
  return out;
}

Result<AutomatedBackup> AutomatedBackups::Delete(const std::string& id_or_arn) {
  AutomatedBackupQuery q;
  if (id_or_arn.rfind("arn:", 0) == 0)
    q.arn = id_or_arn;
  else
    q.resource_id = id_or_arn;
  ASSIGN_OR_RETURN(auto found, Describe(q));
  ctx_.MakeRoom("DeleteDBInstanceAutomatedBackup");
  AutomatedBackup b = found.front();
  if (b.record.status != AutomatedBackupStatus::kRetained) {
    return Status(errors::kInvalidDBInstanceAutomatedBackupState,
                  fmt::format("The automated backups of {} belong to an instance that exists; they are deleted "
                              "by setting its BackupRetentionPeriod to 0 or by deleting it.",
                              b.record.instance_id));
  }
  RETURN_IF_ERROR(DeleteAutomatedBackups(b.record.resource_id));
  b.record.status = AutomatedBackupStatus::kDeleting;
  return b;
}

}  // namespace strata::control
