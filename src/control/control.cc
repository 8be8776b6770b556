// The façade: owns the shared context and one module per resource family,
// wires them together, and forwards each public call to its module.
#include "control/control.h"

#include <algorithm>

#include "common/ids.h"
#include "control/automated_backups.h"
#include "control/context.h"
#include "control/data_api_sessions.h"
#include "control/disk_watch.h"
#include "control/instances.h"
#include "control/point_in_time.h"
#include "control/ports.h"
#include "control/snapshots.h"
#include "control/tags_events.h"

namespace strata::control {

// Built in the order the modules depend on each other; Snapshots reaches
// the modules built on it (automated backups, point-in-time restore)
// through the hooks it is given here.
class ControlPlane::Impl {
 public:
  Impl(Config config, std::unique_ptr<catalog::Catalog> catalog_in, std::unique_ptr<BackupStore> backups_in)
      : catalog(std::move(catalog_in)),
        backups(std::move(backups_in)),
        workers(std::max(1, config.worker_threads)),
        scheduler(*config.clock),
        queue(workers) {
    ctx.config = std::move(config);
    ctx.catalog = catalog.get();
    ctx.backups = backups.get();
    ctx.workers = &workers;
    ctx.scheduler = &scheduler;
    ctx.queue = &queue;
  }

  std::unique_ptr<catalog::Catalog> catalog;
  std::unique_ptr<BackupStore> backups;
  TaskPool workers;
  scheduler::Scheduler scheduler;
  scheduler::WorkQueue queue;
  Context ctx;
  Ports ports{ctx};
  Snapshots snapshots{ctx, ports,
                      Snapshots::Hooks{
                          [this](const std::string& resource_id) { return automated.CaptureOf(resource_id); },
                          [this](const catalog::InstanceRecord& r) { automated.TakeFirstBackup(r); },
                          [this](const catalog::InstanceRecord& r) { return point_in_time.Finish(r); },
                      }};
  AutomatedBackups automated{ctx, snapshots};
  PointInTime point_in_time{ctx, automated, snapshots};
  Instances instances{ctx, ports, snapshots, automated};
  DataApiSessions data_api{ctx, [this](const catalog::InstanceRecord& r) { automated.CatchUpCapture(r); }};
  TagsEvents tags_events{ctx};
  DiskWatch disk_watch{ctx, [this](const catalog::InstanceRecord& r) { snapshots.FinishRestore(r); }};
};

ControlPlane::ControlPlane(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ControlPlane::~ControlPlane() { Shutdown(); }

Result<std::unique_ptr<ControlPlane>> ControlPlane::Open(Config config, std::unique_ptr<catalog::Catalog> catalog,
                                                         std::unique_ptr<BackupStore> backups) {
  auto impl = std::make_unique<Impl>(std::move(config), std::move(catalog), std::move(backups));
  Context& ctx = impl->ctx;
  auto account = ctx.catalog->GetSetting("account_id");
  if (!account) {
    std::string digits;
    for (char c : RandomHex(6)) digits.push_back(static_cast<char>('0' + (c % 10)));
    RETURN_IF_ERROR(ctx.catalog->PutSetting("account_id", digits));
    account = digits;
  }
  ctx.account_id = *account;
  if (disk::DiskGuard* guard = ctx.config.disk) {
    ctx.catalog->SetNoSpaceHandler([guard] { return guard->MakeRoom("a catalog write"); });
  }
  // The order of a pass: the disk first (it pauses what follows), then the
  // servers, then backups.
  impl->disk_watch.RegisterJobs(impl->scheduler);
  impl->instances.RegisterJobs(impl->scheduler);
  impl->automated.RegisterJobs(impl->scheduler);
  auto cp = std::unique_ptr<ControlPlane>(new ControlPlane(std::move(impl)));
  RETURN_IF_ERROR(cp->Recover());
  cp->impl_->scheduler.Start();
  return cp;
}

const std::string& ControlPlane::AccountId() const { return impl_->ctx.account_id; }
const std::string& ControlPlane::Region() const { return impl_->ctx.config.region; }
std::string ControlPlane::InstanceArn(const std::string& id) const { return impl_->ctx.InstanceArn(id); }
std::string ControlPlane::SnapshotArn(const std::string& id) const { return impl_->ctx.SnapshotArn(id); }

Status ControlPlane::Recover() {
  impl_->snapshots.Recover();
  for (const auto& r : impl_->ctx.catalog->ListInstances()) {
    if (r.status == InstanceStatus::kCreating && !r.restore_snapshot.empty() && impl_->disk_watch.Low()) {
      impl_->disk_watch.DeferRestore(r);
    } else if (r.status == InstanceStatus::kCreating && !r.restore_snapshot.empty()) {
      log::Info("resuming restore", {{"instance", r.id}});
      impl_->workers.Submit([this, r] { impl_->snapshots.FinishRestore(r); });
    } else if (r.status == InstanceStatus::kCreating) {
      log::Info("resuming instance create", {{"instance", r.id}});
      impl_->workers.Submit([this, r] { impl_->instances.FinishCreate(r); });
    } else if (r.status == InstanceStatus::kDeleting) {
      log::Info("resuming instance delete", {{"instance", r.id}});
      impl_->workers.Submit([this, r] { impl_->instances.FinishDelete(r); });
    } else if (r.status != InstanceStatus::kFailed) {
      // available, modifying, backing-up: whatever was under way is over.
      RETURN_IF_ERROR(impl_->instances.Restart(r));
    }
  }
  return Status::Ok();
}

void ControlPlane::Shutdown() {
  impl_->scheduler.Stop();
  impl_->workers.Shutdown();
  impl_->automated.StopAllCaptures();
  impl_->instances.StopServers();
  impl_->data_api.RollbackAll();
}

void ControlPlane::RunScheduler() { impl_->scheduler.RunOnce(); }

Result<Instance> ControlPlane::CreateInstance(const CreateInstanceRequest& req) {
  return impl_->instances.Create(req);
}
Result<Instance> ControlPlane::DescribeInstance(const std::string& id) { return impl_->instances.Describe(id); }
std::vector<Instance> ControlPlane::ListInstances() { return impl_->instances.List(); }
Result<Instance> ControlPlane::ModifyInstance(const ModifyInstanceRequest& req) {
  return impl_->instances.Modify(req);
}
Result<Instance> ControlPlane::DeleteInstance(const DeleteInstanceRequest& req) {
  return impl_->instances.Delete(req);
}
Result<Instance> ControlPlane::RebootInstance(const std::string& id, bool force_failover) {
  return impl_->instances.Reboot(id, force_failover);
}
Result<engine::Endpoint> ControlPlane::InstanceEndpoint(const std::string& id) {
  return impl_->instances.Endpoint(id);
}

Result<Snapshot> ControlPlane::CreateSnapshot(const CreateSnapshotRequest& req) {
  return impl_->snapshots.Create(req);
}
Result<std::vector<Snapshot>> ControlPlane::DescribeSnapshots(const SnapshotQuery& query) {
  return impl_->snapshots.Describe(query);
}
Result<Snapshot> ControlPlane::DeleteSnapshot(const std::string& id) { return impl_->snapshots.Delete(id); }
Result<Snapshot> ControlPlane::CopySnapshot(const CopySnapshotRequest& req) { return impl_->snapshots.Copy(req); }
Result<Instance> ControlPlane::RestoreFromSnapshot(const RestoreFromSnapshotRequest& req) {
  ASSIGN_OR_RETURN(auto r, impl_->snapshots.RestoreFromSnapshot(req));
  return impl_->instances.ToInstance(r);
}

Result<Instance> ControlPlane::RestoreToPointInTime(const PointInTimeRestoreRequest& req) {
  ASSIGN_OR_RETURN(auto r, impl_->point_in_time.Restore(req));
  return impl_->instances.ToInstance(r);
}
Result<std::vector<AutomatedBackup>> ControlPlane::DescribeAutomatedBackups(const AutomatedBackupQuery& query) {
  return impl_->automated.Describe(query);
}
Result<AutomatedBackup> ControlPlane::DeleteAutomatedBackup(const std::string& resource_id_or_arn) {
  return impl_->automated.Delete(resource_id_or_arn);
}

Status ControlPlane::AddTags(const std::string& arn, const std::vector<Tag>& tags) {
  return impl_->tags_events.AddTags(arn, tags);
}
Status ControlPlane::RemoveTags(const std::string& arn, const std::vector<std::string>& keys) {
  return impl_->tags_events.RemoveTags(arn, keys);
}
Result<std::vector<Tag>> ControlPlane::ListTags(const std::string& arn) { return impl_->tags_events.ListTags(arn); }
std::vector<catalog::EventRecord> ControlPlane::DescribeEvents(const EventFilter& filter) {
  return impl_->tags_events.DescribeEvents(filter);
}

Result<engine::StatementResult> ControlPlane::ExecuteStatement(const DataTarget& target, const std::string& sql,
                                                               const std::vector<engine::Parameter>& params,
                                                               const std::optional<std::string>& transaction_id) {
  return impl_->data_api.Execute(target, sql, params, transaction_id);
}
Result<std::string> ControlPlane::BeginTransaction(const DataTarget& target) { return impl_->data_api.Begin(target); }
Status ControlPlane::CommitTransaction(const std::string& resource_arn, const std::string& transaction_id) {
  return impl_->data_api.Commit(resource_arn, transaction_id);
}
Status ControlPlane::RollbackTransaction(const std::string& resource_arn, const std::string& transaction_id) {
  return impl_->data_api.Rollback(resource_arn, transaction_id);
}

}  // namespace strata::control
