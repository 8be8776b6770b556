// Point-in-time restore: a base snapshot plus the change log replayed up to
// the target time.
#include "control/point_in_time.h"

#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "control/changelog/reader.h"

namespace strata::control {

Result<std::optional<TimePoint>> PointInTime::Finish(const catalog::InstanceRecord& r) {
  const auto& p = r.restore_replay;
  if (!p) return std::optional<TimePoint>();
  RETURN_IF_ERROR(ReplayChangeLog(r, p->resource_id, p->seq_before, p->time_before, p->target));
  return std::optional<TimePoint>(p->target);
}

Result<catalog::InstanceRecord> PointInTime::Restore(const PointInTimeRestoreRequest& req) {
  RETURN_IF_ERROR(ValidateIdentifier("TargetDBInstanceIdentifier", req.target.instance_id, 63));
  for (const auto& t : req.target.tags) RETURN_IF_ERROR(ValidateTag(t.key, t.value));
  int sources =
      req.source_instance_id.has_value() + req.source_resource_id.has_value() + req.source_backup_arn.has_value();
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
    ASSIGN_OR_RETURN(auto src, ctx_.catalog->GetInstance(ToLower(*req.source_instance_id)));
    if (src.backup_retention_days == 0) {
      return Status(
          errors::kPointInTimeRestoreNotEnabled,
          fmt::format("Point-in-time restore is not enabled for {}: its backup retention period is 0.", src.id));
    }
    resource_id = src.resource_id;
  } else if (req.source_resource_id) {
    resource_id = *req.source_resource_id;
  } else {
    ASSIGN_OR_RETURN(auto arn, ParseOwnArn(*req.source_backup_arn, ctx_.Owner(), "auto-backup"));
    for (const auto& ab : ctx_.catalog->ListAutomatedBackups()) {
      if (ctx_.AutomatedBackupArn(ab.resource_id) == arn.Text()) resource_id = ab.resource_id;
    }
    if (resource_id.empty()) {
      return Status(errors::kDBInstanceAutomatedBackupNotFound,
                    fmt::format("Automated backup {} not found.", *req.source_backup_arn));
    }
  }
  // The restorable time is recorded on a pace; a restore brings it up to
  // what the log holds now, so a time the log serves is never refused for
  // having come less than a recording interval ago.
  if (auto capture = automated_.CaptureOf(resource_id)) {
    if (Status settled = capture->Settle(); !settled.ok()) {
      log::Warn("restorable time not brought up to date", {{"resource", resource_id}, {"error", settled.ToString()}});
    }
  }
  ASSIGN_OR_RETURN(auto ab, ctx_.catalog->GetAutomatedBackup(resource_id));
  auto window = automated_.WindowOf(ab);
  if (!window) {
    return Status(
        errors::kInvalidRestoreFault,
        fmt::format("{} has no restorable time yet: its first automated backup is not finished.", ab.instance_id));
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
  for (const auto& s : ctx_.catalog->ListSnapshots()) {
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
  RETURN_IF_ERROR(ctx_.RefuseIfDiskLow(errors::kStorageQuotaExceeded, "a restore"));
  catalog::InstanceRecord r;
  RETURN_IF_ERROR(ctx_.catalog->InTransaction([&]() -> Status {
    RestoreFromSnapshotRequest overrides = req.target;
    if (!overrides.backup_retention_days) overrides.backup_retention_days = ab.retention_days;
    ASSIGN_OR_RETURN(r, snapshots_.RestoredInstance(*base, overrides));
    r.restore_snapshot = base->repo_snapshot_id;
    r.restore_replay = catalog::PointInTimeReplay{resource_id, base->log_seq_before, base->log_time_before, target};
    RETURN_IF_ERROR(ctx_.catalog->InsertInstance(r));
    return ctx_.catalog->SetTags(ctx_.InstanceArn(r.id), req.target.tags);
  }));
  log::Info("restoring instance to a point in time",
            {{"instance", r.id}, {"source", ab.instance_id}, {"time", FormatIso8601(target)}});
  ctx_.workers->Submit([this, r] { snapshots_.FinishRestore(r); });
  return r;
}

Status PointInTime::ReplayChangeLog(const catalog::InstanceRecord& r, const std::string& resource_id,
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
      auto capture = automated_.CaptureOf(resource_id);
      if (!capture || capture->DurableUntil() >= until) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ASSIGN_OR_RETURN(auto reader, ChangeLogReader::Open(*ctx_.backups, resource_id, base_time_before, until));
  std::vector<std::string> redo;
  size_t redo_bytes = 0;
  auto take = [&](LogRecord& rec) {
    redo_bytes += rec.redo.size();
    redo.push_back(std::move(rec.redo));
    return Status::Ok();
  };
  // Applied in batches so memory stays bounded by a few segments.
  auto apply_batch = [&]() -> Status {
    if (redo_bytes < (64u << 20)) return Status::Ok();
    RETURN_IF_ERROR(eng->ApplyTransactions(SpecOf(r), redo));
    redo.clear();
    redo_bytes = 0;
    return Status::Ok();
  };
  ASSIGN_OR_RETURN(int64_t applied,
                   reader.Read(ChangeLogRange{seq_before + 1, ChangeLogRange{}.last_seq, until}, take, apply_batch));
  RETURN_IF_ERROR(eng->ApplyTransactions(SpecOf(r), redo));
  log::Info("change log replayed", {{"instance", r.id}, {"through_seq", applied}});
  return Status::Ok();
}

}  // namespace strata::control
