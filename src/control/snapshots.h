// Private to control/: DB snapshots (manual, automated, final, copies) and
// instances restored from one. A snapshot runs on a worker while its
// instance reports backing-up and keeps serving; with change-log capture
// running it also records its place in the log, which makes it a base for
// point-in-time restore and lets it store only what changed since an
// earlier one (changelog/incremental_base.h).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "control/changelog/instance_capture.h"
#include "control/context.h"
#include "control/ports.h"

namespace strata::control {

class Snapshots {
 public:
  // What snapshots need of the modules built on them (automated backups,
  // point-in-time restore), passed in by the façade that owns them all.
  struct Hooks {
    // The running change-log capture of a DbiResourceId, or null.
    std::function<std::shared_ptr<InstanceCapture>(const std::string& resource_id)> capture_of;
    // A restored instance with backups on: its first automated backup.
    std::function<void(const catalog::InstanceRecord&)> take_first_backup;
    // After the base's files are restored: the point-in-time part of a
    // restore, if it is one; returns its target time (nullopt: none).
    std::function<Result<std::optional<TimePoint>>(const catalog::InstanceRecord&)>
        finish_point_in_time;
  };

  Snapshots(Context& ctx, Ports& ports, Hooks hooks)
      : ctx_(ctx), ports_(ports), hooks_(std::move(hooks)) {}

  Result<Snapshot> Create(const CreateSnapshotRequest& req);
  Result<std::vector<Snapshot>> Describe(const SnapshotQuery& query);
  Result<Snapshot> Delete(const std::string& id);
  Result<Snapshot> Copy(const CopySnapshotRequest& req);
  // The new instance's record (creating); the restore goes on on a worker.
  Result<catalog::InstanceRecord> RestoreFromSnapshot(const RestoreFromSnapshotRequest& req);

  Snapshot ToSnapshot(const catalog::SnapshotRecord& r);
  int CountManualSnapshots();
  // A snapshot record in `creating` for instance `inst`, not yet stored.
  catalog::SnapshotRecord NewSnapshotRecord(const catalog::InstanceRecord& inst,
                                            const std::string& id, SnapshotType type);
  // Takes the snapshot `snap` of instance `inst` (both already recorded as
  // creating / backing-up) and records the outcome. Returns the final status.
  Status RunSnapshot(const catalog::InstanceRecord& inst, catalog::SnapshotRecord snap);
  // RunSnapshot on a worker, its failure logged (and recorded on the snapshot).
  void SubmitSnapshot(const catalog::InstanceRecord& inst, const catalog::SnapshotRecord& snap);
  // A new instance record (creating) from a snapshot's settings and the request's overrides.
  Result<catalog::InstanceRecord> RestoredInstance(const catalog::SnapshotRecord& snap,
                                                   const RestoreFromSnapshotRequest& req);
  // Brings a restored instance (creating, restore_snapshot set) to available or failed.
  void FinishRestore(const catalog::InstanceRecord& r);
  // After a crash: snapshots under way complete or fail, deletes finish,
  // unrecorded repository snapshots go.
  void Recover();

 private:
  Context& ctx_;
  Ports& ports_;
  Hooks hooks_;
  // PercentProgress of the snapshots being created, by snapshot id. Held
  // here, not in the catalog: every catalog commit is an fsync, and it lands
  // on the disk of the database being snapshotted while its writers wait on
  // theirs. After a crash a creating snapshot completes or fails whatever its
  // progress was, so nothing durable is lost.
  std::mutex progress_mu_;
  std::map<std::string, int> progress_;
};

}  // namespace strata::control
