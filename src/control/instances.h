// Private to control/: DB instances and their state machines (creating,
// modifying, rebooting, deleting), and the supervision that restarts a
// server that stopped. Long work runs on the workers; the caller gets the
// record in its transitional state at once, as RDS answers.
#pragma once

#include "control/automated_backups.h"
#include "control/context.h"
#include "control/ports.h"
#include "control/snapshots.h"

namespace strata::control {

class Instances {
 public:
  Instances(Context& ctx, Ports& ports, Snapshots& snapshots, AutomatedBackups& automated)
      : ctx_(ctx), ports_(ports), snapshots_(snapshots), automated_(automated) {}

  // The scheduler's supervision job.
  void RegisterJobs(scheduler::Scheduler& scheduler);

  Result<Instance> Create(const CreateInstanceRequest& req);
  Result<Instance> Describe(const std::string& id);
  std::vector<Instance> List();
  Result<Instance> Modify(const ModifyInstanceRequest& req);
  Result<Instance> Delete(const DeleteInstanceRequest& req);
  Result<Instance> Reboot(const std::string& id, bool force_failover);
  Result<engine::Endpoint> Endpoint(const std::string& id);

  Instance ToInstance(const catalog::InstanceRecord& r);
  // Brings a record in `creating` to `available` (or `failed`).
  void FinishCreate(catalog::InstanceRecord r);
  void FinishDelete(const catalog::InstanceRecord& r);
  // After a crash: an instance that was available, modifying or backing-up
  // is started again and reported available (or failed).
  Status Restart(const catalog::InstanceRecord& r);
  // At shutdown: engine servers (postgres) stop cleanly, and start again
  // with stratad (Restart).
  void StopServers();

 private:
  void FinishDeleteWithFinalSnapshot(const catalog::InstanceRecord& r,
                                     const catalog::SnapshotRecord& snap);
  // Restarts the server of an instance whose engine says it is not running.
  void Supervise(const catalog::InstanceRecord& r);

  Context& ctx_;
  Ports& ports_;
  Snapshots& snapshots_;
  AutomatedBackups& automated_;
};

}  // namespace strata::control
