// Automated backups: change-log capture per instance, the daily automated
// snapshot in the backup window, retention, retained backups of deleted
// instances, and point-in-time restore (a base snapshot plus the change log
// replayed up to the target time).
//
// Which snapshots can serve as a base: any available snapshot (manual or
// automated) taken while capture ran. It records the log position before its
// view was opened (it holds every transaction up to log_seq_before) and after
// (it holds none past log_seq_after). Replaying seq_before+1 .. N onto it,
// for any N >= log_seq_after, gives the database after transaction N: redo
// records are page images, so re-applying what the base already holds is
// harmless. So a base serves every time from its log_time_after on, up to the
// next break in the log.
#include <algorithm>

#include "control/control_impl.h"

namespace strata::control {
namespace {

constexpr auto kSchedulerInterval = std::chrono::seconds(1);

bool Matches(const std::vector<std::string>& any_of, std::string_view v) {
  return any_of.empty() || std::find(any_of.begin(), any_of.end(), v) != any_of.end();
}

bool IsBase(const catalog::SnapshotRecord& s, const std::string& resource_id) {
  return s.instance_resource_id == resource_id && s.status == SnapshotStatus::kAvailable && s.log_seq_after >= 0;
}

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

Result<std::optional<TimePoint>> ControlPlane::Impl::FinishPointInTime(const catalog::InstanceRecord& r) {
  const auto& p = r.restore_replay;
  if (!p) return std::optional<TimePoint>();
  RETURN_IF_ERROR(ReplayChangeLog(r, p->resource_id, p->seq_before, p->time_before, p->target));
  return std::optional<TimePoint>(p->target);
}

std::string ControlPlane::Impl::AutomatedBackupArn(const std::string& resource_id) const {
  std::string suffix = ToLower(resource_id.rfind("db-", 0) == 0 ? resource_id.substr(3) : resource_id);
  return FormatArn(config.region, account_id, "auto-backup", "ab-" + suffix);
}

Status ControlPlane::Impl::EnsureCapture(const catalog::InstanceRecord& r) {
  if (r.backup_retention_days <= 0) return Status::Ok();
  if (CaptureOf(r.resource_id)) return Status::Ok();
  engine::Engine* eng = engine::FindEngine(r.engine);
  if (!eng) return Status(errors::kInternalFailure, "unknown engine " + r.engine);
  auto ab = catalog->GetAutomatedBackup(r.resource_id);
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
  RETURN_IF_ERROR(catalog->PutAutomatedBackup(rec));
  ASSIGN_OR_RETURN(auto engine_capture, eng->StartCapture(SpecOf(r), *config.clock, rec.capture_position));
  std::string rid = r.resource_id, id = r.id;
  auto on_gap = [this, rid, id](const catalog::LogGap& gap) {
    (void)catalog->InTransaction([&]() -> Status {
      ASSIGN_OR_RETURN(auto cur, catalog->GetAutomatedBackup(rid));
      if (gap.from != TimePoint{}) cur.gaps.push_back(gap);
      return catalog->PutAutomatedBackup(cur);
    });
    if (gap.from != TimePoint{}) {
      Event("db-instance", id, InstanceArn(id),
            fmt::format("Point-in-time restore is not possible between {} and {}: {}", FormatIso8601(gap.from),
                        FormatIso8601(gap.to), gap.reason),
            {"backup", "notification"});
    }
    // The scheduler's next pass sees no base after the break and takes one.
    if (gap.breaks) scheduler_cv.notify_all();
  };
  auto capture = std::make_shared<InstanceCapture>(r.resource_id, std::move(engine_capture), backups.get(),
                                                   catalog.get(), *config.clock, on_gap);
  {
    std::lock_guard lock(capture_mu);
    if (captures.count(r.resource_id)) return Status::Ok();
    captures[r.resource_id] = capture;
  }
  capture->Start();
  log::Info("change-log capture started", {{"instance", r.id}});
  return Status::Ok();
}

void ControlPlane::Impl::StopCapture(const std::string& resource_id) {
  std::shared_ptr<InstanceCapture> c;
  {
    std::lock_guard lock(capture_mu);
    auto it = captures.find(resource_id);
    if (it == captures.end()) return;
    c = it->second;
    captures.erase(it);
  }
  c->Stop();
}

Status ControlPlane::Impl::DeleteAutomatedBackups(const std::string& resource_id) {
  StopCapture(resource_id);
  for (auto s : catalog->ListSnapshots()) {
    if (s.instance_resource_id == resource_id && s.snapshot_type != SnapshotType::kAutomated && s.log_seq_after >= 0) {
      // A manual snapshot stays, but its place in this change log goes with
      // the log: a new log after automated backups come back numbers afresh.
      s.log_seq_before = s.log_seq_after = -1;
      RETURN_IF_ERROR(catalog->UpdateSnapshot(s));
      continue;
    }
    if (s.instance_resource_id != resource_id || s.snapshot_type != SnapshotType::kAutomated) continue;
    Status st = backups->DeleteSnapshot(s.repo_snapshot_id);
    if (!st.ok() && !st.Is(errors::kObjectNotFound)) return st;
    RETURN_IF_ERROR(catalog->InTransaction([&]() -> Status {
      RETURN_IF_ERROR(catalog->DeleteAllTags(SnapshotArn(s.id)));
      return catalog->DeleteSnapshot(s.id);
    }));
  }
  RETURN_IF_ERROR(backups->DeleteLogSegmentsBefore(resource_id, TimePoint::max()).status());
  RETURN_IF_ERROR(catalog->DeleteAutomatedBackup(resource_id));
  ScheduleGarbageCollection();
  return Status::Ok();
}

std::optional<ControlPlane::Impl::RestoreWindow> ControlPlane::Impl::WindowOf(
    const catalog::AutomatedBackupRecord& ab) {
  TimePoint latest = ab.restorable_until;
  if (auto c = CaptureOf(ab.resource_id)) latest = c->RestorableUntil();
  // From the oldest base on; breaks and holes inside are reported as events
  // and refused by RestoreToPointInTime with the reason.
  std::optional<TimePoint> earliest;
  for (const auto& s : catalog->ListSnapshots()) {
    if (!IsBase(s, ab.resource_id)) continue;
    if (!earliest || s.log_time_after < *earliest) earliest = s.log_time_after;
  }
  if (!earliest || *earliest > latest) return std::nullopt;
  TimePoint retention_start = Now() - std::chrono::hours(24) * ab.retention_days;
  return RestoreWindow{std::max(*earliest, std::min(retention_start, latest)), latest};
}

Result<std::pair<catalog::InstanceRecord, catalog::SnapshotRecord>> ControlPlane::Impl::BeginAutomatedSnapshot(
    const catalog::InstanceRecord& inst_in, InstanceStatus from_status) {
  catalog::InstanceRecord inst;
  catalog::SnapshotRecord snap;
  RETURN_IF_ERROR(catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(inst, catalog->GetInstance(inst_in.id));
    if (inst.status != from_status || inst.resource_id != inst_in.resource_id) {
      return Status(errors::kInvalidDBInstanceState,
                    fmt::format("{} is {}, not {}", inst.id, ToString(inst.status), ToString(from_status)));
    }
    std::string id = FormatAutomatedId(inst.id, Now());
    for (int n = 2; catalog->GetSnapshot(id).ok(); ++n) id = FormatAutomatedId(inst.id, Now()) + "-" + std::to_string(n);
    snap = NewSnapshotRecord(inst, id, SnapshotType::kAutomated);
    RETURN_IF_ERROR(catalog->InsertSnapshot(snap));
    if (inst.copy_tags_to_snapshot) {
      RETURN_IF_ERROR(catalog->SetTags(SnapshotArn(snap.id), catalog->ListTags(InstanceArn(inst.id))));
    }
    inst.status = InstanceStatus::kBackingUp;
    return catalog->UpdateInstance(inst);
  }));
  return std::make_pair(inst, snap);
}

void ControlPlane::Impl::StartAutomatedSnapshot(const catalog::InstanceRecord& inst_in) {
  auto begun = BeginAutomatedSnapshot(inst_in, InstanceStatus::kAvailable);
  if (!begun.ok()) return;  // no longer available: the next pass looks again
  workers->Submit([this, begun = *begun] { (void)RunSnapshot(begun.first, begun.second); });
}

void ControlPlane::Impl::TakeFirstBackup(const catalog::InstanceRecord& r) {
  Status st = disk_paused ? Status(errors::kNoSpace, "the disk is below its low-water mark") : EnsureCapture(r);
  if (st.ok()) {
    auto begun = BeginAutomatedSnapshot(r, r.status);
    st = begun.status();
    if (st.ok()) st = RunSnapshot(begun->first, begun->second);  // it ends with the instance available
    if (auto capture = CaptureOf(r.resource_id); st.ok() && capture) st = capture->Settle();
  }
  if (st.ok()) return;
  log::Warn("first automated backup not taken; the scheduler tries again",
            {{"instance", r.id}, {"error", st.ToString()}});
  if (Status set = SetStatus(r.id, InstanceStatus::kAvailable); !set.ok()) {
    log::Error("instance status update failed", {{"instance", r.id}, {"error", set.ToString()}});
  }
}

void ControlPlane::Impl::ApplyRetention(const catalog::AutomatedBackupRecord& ab) {
  // A point-in-time restore under way may need the oldest base and segments:
  // retention waits for it.
  for (const auto& inst : catalog->ListInstances()) {
    const auto& p = inst.restore_replay;
    if (inst.status == InstanceStatus::kCreating && p && p->resource_id == ab.resource_id) return;
  }
  TimePoint cutoff = Now() - std::chrono::hours(24) * ab.retention_days;
  if (ab.status == AutomatedBackupStatus::kRetained && ab.restorable_until < cutoff) {
    log::Info("retained automated backups expired", {{"resource", ab.resource_id}});
    Status st = DeleteAutomatedBackups(ab.resource_id);
    if (!st.ok()) log::Warn("expiring retained backups failed", {{"error", st.ToString()}});
    return;
  }
  // Keep the newest base that serves the window's first moment; everything
  // older goes, with the log segments only it needed.
  auto snaps = catalog->ListSnapshots();
  std::optional<catalog::SnapshotRecord> keep;
  for (const auto& s : snaps) {
    if (s.snapshot_type != SnapshotType::kAutomated || !IsBase(s, ab.resource_id) || s.log_time_after > cutoff) continue;
    if (!keep || s.log_time_after > keep->log_time_after) keep = s;
  }
  bool deleted = false;
  for (const auto& s : snaps) {
    if (s.instance_resource_id != ab.resource_id || s.snapshot_type != SnapshotType::kAutomated ||
        s.status != SnapshotStatus::kAvailable) {
      continue;
    }
    bool expired = keep ? s.log_time_after < keep->log_time_after : false;
    // Automated snapshots taken without capture serve no window: plain age.
    if (s.log_seq_after < 0) expired = s.create_time < cutoff;
    if (!expired) continue;
    if (Status d = backups->DeleteSnapshot(s.repo_snapshot_id); !d.ok() && !d.Is(errors::kObjectNotFound)) continue;
    (void)catalog->InTransaction([&]() -> Status {
      RETURN_IF_ERROR(catalog->DeleteAllTags(SnapshotArn(s.id)));
      return catalog->DeleteSnapshot(s.id);
    });
    Event("db-snapshot", s.id, SnapshotArn(s.id), "Automated snapshot deleted: past the backup retention period",
          {"deletion"});
    deleted = true;
  }
  if (keep) {
    auto n = backups->DeleteLogSegmentsBefore(ab.resource_id, keep->log_time_before);
    deleted = deleted || (n.ok() && *n > 0);
    // Gaps before the oldest base no longer matter.
    (void)catalog->InTransaction([&]() -> Status {
      ASSIGN_OR_RETURN(auto cur, catalog->GetAutomatedBackup(ab.resource_id));
      auto old = std::remove_if(cur.gaps.begin(), cur.gaps.end(),
                                [&](const catalog::LogGap& g) { return g.to < keep->log_time_before; });
      if (old == cur.gaps.end()) return Status::Ok();
      cur.gaps.erase(old, cur.gaps.end());
      return catalog->PutAutomatedBackup(cur);
    });
  }
  if (deleted) ScheduleGarbageCollection();
}

void ControlPlane::Impl::WatchDisk() {
  if (!config.disk) return;
  disk::SpaceState s = config.disk->Poll();
  if (!s.low) {
    // Restores a start on a low disk left waiting (Recover).
    std::vector<catalog::InstanceRecord> restores;
    {
      std::lock_guard lock(deferred_mu);
      restores.swap(deferred_restores);
    }
    for (const auto& r : restores) {
      log::Info("resuming restore", {{"instance", r.id}});
      workers->Submit([this, r] { FinishRestore(r); });
    }
  }
  if (s.low == disk_paused.load()) return;
  disk_paused = s.low;
  const double free_mib = static_cast<double>(s.free_bytes) / (1 << 20);
  const double low_mib = static_cast<double>(config.disk->options().low_water_bytes) / (1 << 20);
  std::string message;
  if (s.low) {
    message = fmt::format(
        "Automated backups paused: {:.1f} MiB of disk space free on {}, below the low-water mark of {:.1f} MiB. "
        "New snapshots and restores are refused until space is freed; deleting snapshots and instances works.",
        free_mib, s.where.string(), low_mib);
    log::Warn("disk space low: automatic work paused", {{"free_mib", free_mib}, {"path", s.where.string()},
                                                        {"low_water_mib", low_mib}});
    // The events below are writes too.
    (void)config.disk->MakeRoom("the low-disk events");
  } else {
    message = fmt::format("Automated backups resumed: {:.1f} MiB of disk space free on {}.", free_mib,
                          s.where.string());
    log::Info("disk space back: automatic work resumed", {{"free_mib", free_mib}, {"path", s.where.string()}});
  }
  // RDS reports storage running out per DB instance, in the "low storage" category.
  for (const auto& r : catalog->ListInstances()) Event("db-instance", r.id, InstanceArn(r.id), message, {"low storage"});
}

void ControlPlane::Impl::Tick() {
  WatchDisk();
  std::lock_guard tick_lock(tick_mu);
  TimePoint now = Now();
  auto snaps = catalog->ListSnapshots();
  for (auto r : catalog->ListInstances()) {
    Supervise(r);
    // A 0 <-> non-zero retention change waits for the maintenance window.
    if (r.pending_backup_retention_days && r.status == InstanceStatus::kAvailable) {
      auto mw = ParseWeeklyWindow("PreferredMaintenanceWindow", r.maintenance_window);
      if (mw.ok() && InWindow(*mw, now)) {
        int days = *r.pending_backup_retention_days;
        (void)catalog->InTransaction([&]() -> Status {
          ASSIGN_OR_RETURN(auto cur, catalog->GetInstance(r.id));
          cur.backup_retention_days = days;
          cur.pending_backup_retention_days.reset();
          r = cur;
          return catalog->UpdateInstance(cur);
        });
        OnRetentionChanged(r);
      }
    }
    if (r.backup_retention_days <= 0 ||
        (r.status != InstanceStatus::kAvailable && r.status != InstanceStatus::kBackingUp)) {
      continue;
    }
    if (Status st = EnsureCapture(r); !st.ok()) {
      log::Warn("cannot start change-log capture", {{"instance", r.id}, {"error", st.ToString()}});
      continue;
    }
    // Below the low-water mark: no compaction (it writes the merged segment
    // before it deletes its members) and no automated snapshot; the change
    // log itself goes on being captured.
    if (disk_paused) continue;
    if (auto capture = CaptureOf(r.resource_id)) {
      if (auto before = capture->TakeCompaction()) ScheduleLogCompaction(r.resource_id, *before);
    }
    if (r.status != InstanceStatus::kAvailable) continue;
    auto ab = catalog->GetAutomatedBackup(r.resource_id);
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
      if (s.snapshot_type == SnapshotType::kAutomated && s.status != SnapshotStatus::kFailed) {
        newest_automated = std::max(newest_automated, s.create_time);
      }
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
  for (const auto& ab : catalog->ListAutomatedBackups()) ApplyRetention(ab);
}

void ControlPlane::Impl::OnRetentionChanged(const catalog::InstanceRecord& r) {
  if (r.backup_retention_days > 0) {
    (void)catalog->InTransaction([&]() -> Status {
      auto ab = catalog->GetAutomatedBackup(r.resource_id);
      if (!ab.ok()) return Status::Ok();
      ab->retention_days = r.backup_retention_days;
      ab->backup_window = r.backup_window;
      return catalog->PutAutomatedBackup(*ab);
    });
    std::lock_guard lock(scheduler_mu);
    scheduler_cv.notify_all();
    return;
  }
  if (!catalog->GetAutomatedBackup(r.resource_id).ok()) return;
  Status st = DeleteAutomatedBackups(r.resource_id);
  if (!st.ok()) log::Warn("deleting automated backups failed", {{"instance", r.id}, {"error", st.ToString()}});
  if (engine::Engine* eng = engine::FindEngine(r.engine)) {
    if (Status rel = eng->ReleaseCapture(SpecOf(r)); !rel.ok()) {
      log::Warn("releasing the capture's hold on the log failed", {{"instance", r.id}, {"error", rel.ToString()}});
    }
  }
  Event("db-instance", r.id, InstanceArn(r.id), "Automated backups for this DB instance have been disabled",
        {"backup"});
}

void ControlPlane::Impl::StartScheduler() {
  scheduler = std::thread([this] {
    std::unique_lock lock(scheduler_mu);
    while (!scheduler_stop) {
      lock.unlock();
      Tick();
      lock.lock();
      scheduler_cv.wait_for(lock, kSchedulerInterval);
    }
  });
}

void ControlPlane::Impl::StopScheduler() {
  {
    std::lock_guard lock(scheduler_mu);
    scheduler_stop = true;
  }
  scheduler_cv.notify_all();
  if (scheduler.joinable()) scheduler.join();
}

void ControlPlane::Impl::StopAllCaptures() {
  std::map<std::string, std::shared_ptr<InstanceCapture>> all;
  {
    std::lock_guard lock(capture_mu);
    all.swap(captures);
  }
  for (auto& [rid, c] : all) c->Stop();
}

Status ControlPlane::Impl::ReplayChangeLog(const catalog::InstanceRecord& r, const std::string& resource_id,
                                           int64_t seq_before, TimePoint base_time_before, TimePoint target) {
  engine::Engine* eng = engine::FindEngine(r.engine);
  if (!eng) return Status(errors::kInternalFailure, "unknown engine " + r.engine);
  // An engine that stops its own replay at the target needs the log a little
  // past it, which may still be on its way from the source's capture.
  const auto lookahead = eng->LogLookahead();
  const TimePoint until = target + lookahead;
  if (lookahead.count() > 0) {
    auto deadline = std::chrono::steady_clock::now() + lookahead + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      auto capture = CaptureOf(resource_id);
      if (!capture || capture->DurableUntil() >= until) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ASSIGN_OR_RETURN(auto segments, backups->ListLogSegments(resource_id, base_time_before, until));
  int64_t applied = seq_before;
  std::vector<std::string> redo;
  size_t redo_bytes = 0;
  for (const auto& seg : segments) {
    ASSIGN_OR_RETURN(auto bytes, backups->ReadLogSegment(resource_id, seg));
    ASSIGN_OR_RETURN(auto records, DecodeLogRecords(bytes));
    for (auto& rec : records) {
      if (rec.seq <= applied) continue;  // in the base already, or stored twice
      if (rec.time > until) break;
      if (rec.seq != applied + 1) {
        return Status(errors::kCorruption,
                      fmt::format("the change log is missing transactions {} to {}", applied + 1, rec.seq - 1));
      }
      applied = rec.seq;
      redo_bytes += rec.redo.size();
      redo.push_back(std::move(rec.redo));
    }
    // Apply in batches so memory stays bounded by a few segments.
    if (redo_bytes >= (64u << 20)) {
      RETURN_IF_ERROR(eng->ApplyTransactions(SpecOf(r), redo));
      redo.clear();
      redo_bytes = 0;
    }
  }
  RETURN_IF_ERROR(eng->ApplyTransactions(SpecOf(r), redo));
  log::Info("change log replayed", {{"instance", r.id}, {"through_seq", applied}});
  return Status::Ok();
}

// Why an incremental snapshot is the same as a full one. The parent holds
// the database after some transaction k with parent.log_seq_before <= k <=
// parent.log_seq_after; the new view holds it after some m with
// snap.log_seq_before <= m <= snap.log_seq_after (the marks are read right
// before and after the view is opened). Every byte that differs between the
// two was changed by a transaction between k and m, all of which lie in
// parent.log_seq_before+1 .. snap.log_seq_after; the engine turns exactly
// those transactions into file ranges (ChangedRanges: for sqlite, every page
// they wrote, and everything past the smallest size they left the file at).
// Pages the view reads from the WAL need no special case: they were
// committed before the after-mark, so they are among those transactions.
// What would break it, and is checked here, each falling back to a full read:
//  - the log loses commits: a breaking gap since the parent's before-mark;
//    or a seq missing in the segments (retention deleted them, a crash);
//  - a different log epoch (backups turned off and on: seqs start again at
//    1 while the parent's marks are from before): the record at the
//    parent's before-mark must be there and stamped no later than the mark;
//    so a parent taken before any transaction (seq 0) is not used.
//  - the engine cannot tell (postgres), or the log to read is larger than
//    the database (a full read is then cheaper).
IncrementalBase ControlPlane::Impl::IncrementalBaseFor(const catalog::InstanceRecord& inst,
                                                       const catalog::SnapshotRecord& snap,
                                                       const engine::Engine& eng, InstanceCapture& capture,
                                                       const std::vector<engine::FileSource>& files) {
  auto full = [&](const std::string& why) {
    log::Info("snapshot reads every file", {{"snapshot", snap.id}, {"reason", why}});
    return IncrementalBase{};
  };
  if (snap.log_seq_before < 0 || snap.log_seq_after < snap.log_seq_before) return full("no change-log position");
  std::optional<catalog::SnapshotRecord> parent;
  for (const auto& s : catalog->ListSnapshots()) {
    if (s.id == snap.id || s.instance_resource_id != inst.resource_id || s.status != SnapshotStatus::kAvailable ||
        s.engine != inst.engine) {
      continue;
    }
    if (s.log_seq_before < 1 || s.log_seq_after < s.log_seq_before) continue;
    if (s.log_seq_before > snap.log_seq_before || s.log_seq_after > snap.log_seq_after ||
        s.log_time_before > snap.log_time_before) {
      continue;
    }
    if (!parent || s.log_seq_before > parent->log_seq_before) parent = s;
  }
  if (!parent) return full("no earlier snapshot with a change-log position");
  auto ab = catalog->GetAutomatedBackup(inst.resource_id);
  if (!ab.ok()) return full("no automated-backups record");
  for (const auto& g : ab->gaps) {
    if (g.breaks && g.to >= parent->log_time_before) return full("the change log breaks after " + parent->id);
  }
  if (Status st = capture.Flush(); !st.ok()) return full("cannot ship the change log: " + st.ToString());
  auto segments = backups->ListLogSegments(inst.resource_id, TimePoint::min(), TimePoint::max());
  if (!segments.ok()) return full(segments.status().ToString());
  // Records after the parent's before-mark are stamped after it; the record
  // at the mark may sit in the last segment that ends before it.
  size_t start = 0;
  for (size_t i = 0; i < segments->size(); ++i) {
    if ((*segments)[i].last < parent->log_time_before) start = i;
  }
  uint64_t log_bytes = 0, db_bytes = 0;
  for (size_t i = start; i < segments->size(); ++i) log_bytes += (*segments)[i].stored_bytes;
  for (const auto& f : files) db_bytes += f.size;
  if (log_bytes > db_bytes) return full("the change log since the parent is larger than the database");

  engine::FileRanges changed;
  bool covered = false;
  std::vector<std::string> redo;
  size_t redo_bytes = 0;
  // Adds what the engine says `redo` changed; false: unknown.
  auto absorb = [&]() -> bool {
    auto ranges = eng.ChangedRanges(redo);
    redo.clear();
    redo_bytes = 0;
    if (!ranges.ok() || !ranges->has_value()) return false;
    if (covered) {
      // The files answered for must be the same for every stretch.
      if ((*ranges)->size() != changed.size()) return false;
      for (const auto& [path, r] : **ranges) {
        if (!changed.count(path)) return false;
      }
    }
    covered = true;
    for (auto& [path, r] : **ranges) changed[path].insert(changed[path].end(), r.begin(), r.end());
    return true;
  };
  int64_t next = parent->log_seq_before;  // the mark's own record first: it proves the epoch
  for (size_t i = start; i < segments->size() && next <= snap.log_seq_after; ++i) {
    auto bytes = backups->ReadLogSegment(inst.resource_id, (*segments)[i]);
    if (!bytes.ok()) return full(bytes.status().ToString());
    auto records = DecodeLogRecords(*bytes);
    if (!records.ok()) return full(records.status().ToString());
    for (auto& rec : *records) {
      if (rec.seq < next) continue;  // before the parent, or stored twice
      if (rec.seq > snap.log_seq_after) break;
      if (rec.seq != next) return full(fmt::format("the change log is missing transaction {}", next));
      ++next;
      if (rec.seq == parent->log_seq_before) {
        if (rec.time > parent->log_time_before) return full("the change log was restarted after " + parent->id);
        continue;
      }
      redo_bytes += rec.redo.size();
      redo.push_back(std::move(rec.redo));
    }
    if (redo_bytes >= (64u << 20) && !absorb()) return full("the engine cannot tell what its log changed");
  }
  if (next != snap.log_seq_after + 1) {
    return full(fmt::format("the change log does not hold transactions {} to {}", next, snap.log_seq_after));
  }
  if (!absorb()) return full("the engine cannot tell what its log changed");
  return IncrementalBase{parent->repo_snapshot_id, std::move(changed)};
}

// --- the API ---

void ControlPlane::RunScheduler() { impl_->Tick(); }

Result<Instance> ControlPlane::RestoreToPointInTime(const PointInTimeRestoreRequest& req) {
  RETURN_IF_ERROR(ValidateIdentifier("TargetDBInstanceIdentifier", req.target.instance_id, 63));
  for (const auto& t : req.target.tags) RETURN_IF_ERROR(ValidateTag(t.key, t.value));
  int sources = req.source_instance_id.has_value() + req.source_resource_id.has_value() +
                req.source_backup_arn.has_value();
  if (sources != 1) {
    return InvalidCombination(
        "Specify exactly one of SourceDBInstanceIdentifier, SourceDbiResourceId and "
        "SourceDBInstanceAutomatedBackupsArn.");
  }
  if (req.restore_time && req.use_latest_restorable_time) {
    return InvalidCombination("Cannot specify both RestoreTime and UseLatestRestorableTime.");
  }
  if (!req.restore_time && !req.use_latest_restorable_time) {
    return InvalidCombination("Specify RestoreTime or UseLatestRestorableTime.");
  }
  // Find the automated backups of the source.
  std::string resource_id;
  if (req.source_instance_id) {
    ASSIGN_OR_RETURN(auto src, impl_->catalog->GetInstance(ToLower(*req.source_instance_id)));
    if (src.backup_retention_days == 0) {
      return Status(errors::kPointInTimeRestoreNotEnabled,
                    fmt::format("Point-in-time restore is not enabled for {}: its backup retention period is 0.",
                                src.id));
    }
    resource_id = src.resource_id;
  } else if (req.source_resource_id) {
    resource_id = *req.source_resource_id;
  } else {
    ASSIGN_OR_RETURN(auto arn, ParseOwnArn(*req.source_backup_arn, impl_->Owner(), "auto-backup"));
    for (const auto& ab : impl_->catalog->ListAutomatedBackups()) {
      if (impl_->AutomatedBackupArn(ab.resource_id) == arn.Text()) resource_id = ab.resource_id;
    }
    if (resource_id.empty()) {
      return Status(errors::kDBInstanceAutomatedBackupNotFound,
                    fmt::format("Automated backup {} not found.", *req.source_backup_arn));
    }
  }
  // The restorable time is recorded on a pace; a restore brings it up to
  // what the log holds now, so a time the log serves is never refused for
  // having come less than a recording interval ago.
  if (auto capture = impl_->CaptureOf(resource_id)) {
    if (Status settled = capture->Settle(); !settled.ok()) {
      log::Warn("restorable time not brought up to date", {{"resource", resource_id}, {"error", settled.ToString()}});
    }
  }
  ASSIGN_OR_RETURN(auto ab, impl_->catalog->GetAutomatedBackup(resource_id));
  auto window = impl_->WindowOf(ab);
  if (!window) {
    return Status(errors::kInvalidRestoreFault,
                  fmt::format("{} has no restorable time yet: its first automated backup is not finished.",
                              ab.instance_id));
  }
  TimePoint target = req.use_latest_restorable_time ? window->latest : *req.restore_time;
  if (target < window->earliest || target > window->latest) {
    return Status(errors::kInvalidRestoreFault,
                  fmt::format("The restore time {} is outside the restorable window {} to {}.", FormatIso8601(target),
                              FormatIso8601(window->earliest), FormatIso8601(window->latest)));
  }
  for (const auto& g : ab.gaps) {
    if (target > g.from && target < g.to) {
      return Status(errors::kInvalidRestoreFault,
                    fmt::format("The restore time {} falls in a gap of the change log ({} to {}): {}.",
                                FormatIso8601(target), FormatIso8601(g.from), FormatIso8601(g.to), g.reason));
    }
  }
  // The newest base that reaches the target without crossing a break.
  std::optional<catalog::SnapshotRecord> base;
  for (const auto& s : impl_->catalog->ListSnapshots()) {
    if (!IsBase(s, resource_id) || s.log_time_after > target) continue;
    bool crosses = std::any_of(ab.gaps.begin(), ab.gaps.end(), [&](const catalog::LogGap& g) {
      return g.breaks && g.to > s.log_time_after && g.from < target;
    });
    if (!crosses && (!base || s.log_time_after > base->log_time_after)) base = s;
  }
  if (!base) {
    return Status(errors::kInvalidRestoreFault,
                  fmt::format("No backup of {} can reach {}.", ab.instance_id, FormatIso8601(target)));
  }
  RETURN_IF_ERROR(impl_->RefuseIfDiskLow(errors::kStorageQuotaExceeded, "a restore"));
  catalog::InstanceRecord r;
  RETURN_IF_ERROR(impl_->catalog->InTransaction([&]() -> Status {
    RestoreFromSnapshotRequest overrides = req.target;
    if (!overrides.backup_retention_days) overrides.backup_retention_days = ab.retention_days;
    ASSIGN_OR_RETURN(r, impl_->RestoredInstance(*base, overrides));
    r.restore_snapshot = base->repo_snapshot_id;
    r.restore_replay =
        catalog::PointInTimeReplay{resource_id, base->log_seq_before, base->log_time_before, target};
    RETURN_IF_ERROR(impl_->catalog->InsertInstance(r));
    return impl_->catalog->SetTags(impl_->InstanceArn(r.id), req.target.tags);
  }));
  log::Info("restoring instance to a point in time",
            {{"instance", r.id}, {"source", ab.instance_id}, {"time", FormatIso8601(target)}});
  impl_->workers->Submit([this, r] { impl_->FinishRestore(r); });
  return impl_->ToInstance(r);
}

Result<std::vector<AutomatedBackup>> ControlPlane::DescribeAutomatedBackups(const AutomatedBackupQuery& q) {
  std::vector<AutomatedBackup> out;
  bool named = q.resource_id || q.instance_id || q.arn;
  std::optional<std::string> canonical_arn;
  if (q.arn) {
    ASSIGN_OR_RETURN(auto arn, ParseOwnArn(*q.arn, impl_->Owner(), "auto-backup"));
    canonical_arn = arn.Text();
  }
  for (const auto& ab : impl_->catalog->ListAutomatedBackups()) {
    if (q.resource_id && ab.resource_id != *q.resource_id) continue;
    if (q.instance_id && ab.instance_id != ToLower(*q.instance_id)) continue;
    std::string arn = impl_->AutomatedBackupArn(ab.resource_id);
    if (canonical_arn && arn != *canonical_arn) continue;
    AutomatedBackup b;
    b.record = ab;
    b.arn = arn;
    b.instance_arn = impl_->InstanceArn(ab.instance_id);
    b.encrypted = impl_->config.backups_encrypted;
    if (auto w = impl_->WindowOf(ab)) {
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

Result<AutomatedBackup> ControlPlane::DeleteAutomatedBackup(const std::string& id_or_arn) {
  AutomatedBackupQuery q;
  if (id_or_arn.rfind("arn:", 0) == 0) q.arn = id_or_arn; else q.resource_id = id_or_arn;
  ASSIGN_OR_RETURN(auto found, DescribeAutomatedBackups(q));
  impl_->MakeRoom("DeleteDBInstanceAutomatedBackup");
  AutomatedBackup b = found.front();
  if (b.record.status != AutomatedBackupStatus::kRetained) {
    return Status(errors::kInvalidDBInstanceAutomatedBackupState,
                  fmt::format("The automated backups of {} belong to an instance that exists; they are deleted "
                              "by setting its BackupRetentionPeriod to 0 or by deleting it.",
                              b.record.instance_id));
  }
  RETURN_IF_ERROR(impl_->DeleteAutomatedBackups(b.record.resource_id));
  b.record.status = AutomatedBackupStatus::kDeleting;
  return b;
}

}  // namespace strata::control
