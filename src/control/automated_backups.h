// Private to control/: automated backups. Change-log capture per instance
// with backups on (changelog/), the daily automated snapshot in the backup
// window, retention, retained backups of deleted instances, and the
// restorable window point-in-time restore (point_in_time.h) serves.
//
// Which snapshots can serve as a base: any available snapshot (manual or
// automated) taken while capture ran. It records the log position before its
// view was opened (it holds every transaction up to log_seq_before) and after
// (it holds none past log_seq_after). Replaying seq_before+1 .. N onto it,
// for any N >= log_seq_after, gives the database after transaction N: redo
// records are page images, so re-applying what the base already holds is
// harmless. So a base serves every time from its log_time_after on, up to the
// next break in the log.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

#include "control/changelog/instance_capture.h"
#include "control/context.h"
#include "control/snapshots.h"

namespace strata::control {

// An available snapshot of `resource_id` with its place in the change log.
bool IsBase(const catalog::SnapshotRecord& s, const std::string& resource_id);

class AutomatedBackups {
 public:
  AutomatedBackups(Context& ctx, Snapshots& snapshots) : ctx_(ctx), snapshots_(snapshots) {}

  // The scheduler's jobs: pending retention changes (in the maintenance
  // window), captures and their compactions, daily automated snapshots (in
  // the backup window, or at once after a break in the log), retention expiry.
  void RegisterJobs(scheduler::Scheduler& scheduler);

  Result<std::vector<AutomatedBackup>> Describe(const AutomatedBackupQuery& query);
  Result<AutomatedBackup> Delete(const std::string& resource_id_or_arn);

  std::shared_ptr<InstanceCapture> CaptureOf(const std::string& resource_id);
  // Starts change-log capture for an instance with backups on (idempotent).
  Status EnsureCapture(const catalog::InstanceRecord& r);
  // Stops it, shipping what it holds.
  void StopCapture(const std::string& resource_id);
  void StopAllCaptures();
  // After a Data API commit: numbers and stamps it before the caller hears back.
  void CatchUpCapture(const catalog::InstanceRecord& r);

  struct RestoreWindow {
    TimePoint earliest{}, latest{};
  };
  std::optional<RestoreWindow> WindowOf(const catalog::AutomatedBackupRecord& ab);
  // Deletes every automated snapshot and log segment of a DbiResourceId, and its record.
  Status DeleteAutomatedBackups(const std::string& resource_id);
  // Turns automated backups on (capture starts with the next pass) or off (all deleted).
  void OnRetentionChanged(const catalog::InstanceRecord& r);
  // A new or restored instance (still `creating`) with backups on: its first
  // automated snapshot, with capture running and the restorable time
  // recorded, before it is reported available, as RDS does. Ends with the
  // instance available whether the backup worked or not (the scheduler
  // tries again); on a low disk it leaves the backup to the scheduler.
  void TakeFirstBackup(const catalog::InstanceRecord& r);

 private:
  // Records an automated snapshot of `r` as creating and the instance, which
  // must be in `from_status`, as backing-up, in one commit.
  Result<std::pair<catalog::InstanceRecord, catalog::SnapshotRecord>> BeginAutomatedSnapshot(
      const catalog::InstanceRecord& r, InstanceStatus from_status);
  void StartAutomatedSnapshot(const catalog::InstanceRecord& r);
  void ApplyRetention(const catalog::AutomatedBackupRecord& ab);
  // The scheduler's jobs.
  void ApplyPendingRetention(TimePoint now);      // 0 <-> non-zero, in the maintenance window
  void RunCaptures();                             // captures running, their compactions queued
  void TakeDueAutomatedSnapshots(TimePoint now);  // in the backup window, or after a break
  // Queues one compaction of the stream's log segments that end before
  // `before` (coalesced per stream while queued).
  void ScheduleLogCompaction(const std::string& stream, TimePoint before);
  void CompactLog(const std::string& stream, TimePoint before);

  Context& ctx_;
  Snapshots& snapshots_;
  std::mutex capture_mu_;
  std::map<std::string, std::shared_ptr<InstanceCapture>>
      captures_;  // by DbiResourceId, under capture_mu_
};

}  // namespace strata::control
