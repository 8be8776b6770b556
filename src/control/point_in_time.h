// Private to control/: point-in-time restore. A new instance from the
// newest base snapshot that reaches the target time without crossing a
// break in the change log, then the log replayed onto it up to the target
// (changelog/reader.h).
#pragma once

#include <optional>

#include "control/automated_backups.h"
#include "control/context.h"
#include "control/snapshots.h"

namespace strata::control {

class PointInTime {
 public:
  PointInTime(Context& ctx, AutomatedBackups& automated, Snapshots& snapshots)
      : ctx_(ctx), automated_(automated), snapshots_(snapshots) {}

  // The new instance's record (creating); the restore goes on on a worker.
  Result<catalog::InstanceRecord> Restore(const PointInTimeRestoreRequest& req);
  // For a point-in-time restore: replays the log onto the restored base (no-op otherwise).
  // Returns the restore's target time (nullopt for a restore from a snapshot).
  Result<std::optional<TimePoint>> Finish(const catalog::InstanceRecord& r);

 private:
  // The rest of a point-in-time restore after the base snapshot's files are in place.
  Status ReplayChangeLog(const catalog::InstanceRecord& r, const std::string& resource_id,
                         int64_t seq_before, TimePoint base_time_before, TimePoint target);

  Context& ctx_;
  AutomatedBackups& automated_;
  Snapshots& snapshots_;
};

}  // namespace strata::control
