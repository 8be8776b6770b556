#include "control/control.h"

#include "control/control_impl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <set>

namespace strata::control {
ControlPlane::ControlPlane(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ControlPlane::~ControlPlane() { Shutdown(); }

Result<std::unique_ptr<ControlPlane>> ControlPlane::Open(Config config,
                                                         std::unique_ptr<catalog::Catalog> catalog,
                                                         std::unique_ptr<BackupStore> backups) {
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  impl->catalog = std::move(catalog);
  impl->backups = std::move(backups);
  auto account = impl->catalog->GetSetting("account_id");
  if (!account) {
    std::string digits;
    for (char c : RandomHex(6)) digits.push_back(static_cast<char>('0' + (c % 10)));
    RETURN_IF_ERROR(impl->catalog->PutSetting("account_id", digits));
    account = digits;
  }
  impl->account_id = *account;
  if (disk::DiskGuard* guard = impl->config.disk) {
    impl->catalog->SetNoSpaceHandler([guard] { return guard->MakeRoom("a catalog write"); });
  }
  impl->workers = std::make_unique<TaskPool>(std::max(1, impl->config.worker_threads));
  auto cp = std::unique_ptr<ControlPlane>(new ControlPlane(std::move(impl)));
  RETURN_IF_ERROR(cp->Recover());
  cp->impl_->StartScheduler();
  return cp;
}

const std::string& ControlPlane::AccountId() const { return impl_->account_id; }
const std::string& ControlPlane::Region() const { return impl_->config.region; }
std::string ControlPlane::InstanceArn(const std::string& id) const { return impl_->InstanceArn(id); }

Status ControlPlane::Recover() {
  impl_->RecoverSnapshots();
  for (const auto& r : impl_->catalog->ListInstances()) {
    if (r.status == InstanceStatus::kCreating && !r.restore_snapshot.empty() && impl_->config.disk &&
        impl_->config.disk->Low()) {
      log::Warn("restore waits for disk space", {{"instance", r.id}});
      std::lock_guard lock(impl_->deferred_mu);
      impl_->deferred_restores.push_back(r);
    } else if (r.status == InstanceStatus::kCreating && !r.restore_snapshot.empty()) {
      log::Info("resuming restore", {{"instance", r.id}});
      impl_->workers->Submit([this, r] { impl_->FinishRestore(r); });
    } else if (r.status == InstanceStatus::kCreating) {
      log::Info("resuming instance create", {{"instance", r.id}});
      impl_->workers->Submit([this, r] { impl_->FinishCreate(r); });
    } else if (r.status == InstanceStatus::kDeleting) {
      log::Info("resuming instance delete", {{"instance", r.id}});
      impl_->workers->Submit([this, r] { impl_->FinishDelete(r); });
    } else if (r.status == InstanceStatus::kFailed) {
      continue;
    } else {
      // available, modifying, backing-up: whatever was under way is over.
      engine::Engine* e = engine::FindEngine(r.engine);
      Status st = e ? e->Start(SpecOf(r)) : Status(errors::kInternalFailure, "unknown engine");
      // Written only when it changes: a start on a full disk writes nothing
      // it need not.
      if (st.ok() && r.status == InstanceStatus::kAvailable && r.status_reason.empty()) continue;
      RETURN_IF_ERROR(
          impl_->SetStatus(r.id, st.ok() ? InstanceStatus::kAvailable : InstanceStatus::kFailed, st.message()));
    }
  }
  return Status::Ok();
}

void ControlPlane::Shutdown() {
  impl_->StopScheduler();
  if (impl_->workers) impl_->workers->Shutdown();
  impl_->StopAllCaptures();
  // Engine servers (postgres) stop cleanly with stratad and start again with it (Recover).
  for (const auto& r : impl_->catalog->ListInstances()) {
    engine::Engine* e = engine::FindEngine(r.engine);
    if (!e || !e->UsesPort() || r.status == InstanceStatus::kDeleting) continue;
    if (Status st = e->Stop(SpecOf(r)); !st.ok()) {
      log::Warn("stopping the server failed", {{"instance", r.id}, {"error", st.ToString()}});
    }
  }
  std::lock_guard lock(impl_->tx_mu);
  for (auto& [id, tx] : impl_->transactions) {
    std::lock_guard tx_lock(tx->mu);
    (void)tx->session->Rollback();
  }
  impl_->transactions.clear();
}

Result<Instance> ControlPlane::CreateInstance(const CreateInstanceRequest& req) {
  RETURN_IF_ERROR(ValidateIdentifier("DBInstanceIdentifier", req.id, 63));
  catalog::InstanceRecord r;
  r.id = ToLower(req.id);
  engine::Engine* eng = engine::FindEngine(req.engine);
  if (!eng) {
    return InvalidValue(fmt::format("Invalid DB engine: {}. Strata runs: {}", req.engine,
                                    fmt::join(engine::EngineNames(), ", ")));
  }
  r.engine = eng->Name();
  r.engine_version = req.engine_version.value_or(eng->DefaultVersion());
  if (!eng->SupportsVersion(r.engine_version)) {
    return InvalidCombination(
        fmt::format("Cannot find version {} for {}", r.engine_version, r.engine));
  }
  if (req.engine_version) r.engine_version = eng->DefaultVersion();
  if (req.instance_class.rfind("db.", 0) != 0 || req.instance_class.size() < 4) {
    return InvalidValue(fmt::format("Invalid DB instance class: {}", req.instance_class));
  }
  r.instance_class = req.instance_class;
  r.allocated_storage_gib = req.allocated_storage_gib.value_or(20);
  if (r.allocated_storage_gib < 1 || r.allocated_storage_gib > 65536) {
    return InvalidValue("Invalid storage size: AllocatedStorage must be from 1 to 65536 GiB");
  }
  r.backup_retention_days = req.backup_retention_days.value_or(1);
  if (r.backup_retention_days < 0 || r.backup_retention_days > 35) {
    return InvalidValue("Invalid BackupRetentionPeriod: must be from 0 to 35 days");
  }
  if (req.backup_window) {
    RETURN_IF_ERROR(ParseDailyWindow("PreferredBackupWindow", *req.backup_window, 30).status());
    r.backup_window = *req.backup_window;
  } else {
    r.backup_window = impl_->DefaultBackupWindow();
  }
  if (req.maintenance_window) {
    RETURN_IF_ERROR(ParseWeeklyWindow("PreferredMaintenanceWindow", *req.maintenance_window).status());
    r.maintenance_window = ToLower(*req.maintenance_window);
  } else {
    r.maintenance_window = impl_->DefaultMaintenanceWindow(r.backup_window);
  }
  if (Overlaps(*ParseDailyWindow("", r.backup_window, 30), *ParseWeeklyWindow("", r.maintenance_window))) {
    return InvalidValue("The backup window and maintenance window must not overlap.");
  }
  if (req.db_name) {
    const std::string& name = *req.db_name;
    bool word = std::all_of(name.begin(), name.end(), [](unsigned char c) { return std::isalnum(c) || c == '_'; });
    if (name.empty() || name.size() > 63 || !std::isalpha(static_cast<unsigned char>(name[0])) || !word) {
      return InvalidValue(
          "Invalid DBName: it must begin with a letter, contain only letters, digits and underscores, and be 1 to "
          "63 characters long");
    }
    r.db_name = *req.db_name;
  }
  if (req.master_username) {
    if (req.master_username->empty() || req.master_username->size() > 16 ||
        !std::isalpha(static_cast<unsigned char>((*req.master_username)[0]))) {
      return InvalidValue("Invalid MasterUsername: must begin with a letter and contain 1 to 16 characters");
    }
    r.master_username = *req.master_username;
  }
  if (req.master_password && req.master_password->size() < 8) {
    return InvalidValue("Invalid MasterUserPassword: must contain at least 8 characters");
  }
  if (req.port && (*req.port < 1150 || *req.port > 65535)) {
    return InvalidValue("Invalid Port: must be from 1150 to 65535");
  }
  if (eng->UsesPort()) {
    // A server engine needs its master user, as RDS requires for it.
    if (r.master_username.empty()) {
      return InvalidValue("The parameter MasterUsername must be provided and must not be blank.");
    }
    if (!req.master_password) {
      return InvalidValue("The parameter MasterUserPassword must be provided and must not be blank.");
    }
    ASSIGN_OR_RETURN(r.engine_state, eng->SealCredentials(r.master_username, *req.master_password));
    ASSIGN_OR_RETURN(r.port, impl_->AssignPort(req.port));
  } else {
    r.port = req.port.value_or(0);
  }
  if (req.tags.size() > kMaxTagsPerResource) {
    return InvalidValue(fmt::format("A resource may have at most {} tags", kMaxTagsPerResource));
  }
  for (const auto& t : req.tags) RETURN_IF_ERROR(ValidateTag(t.key, t.value));
  r.deletion_protection = req.deletion_protection.value_or(false);
  r.copy_tags_to_snapshot = req.copy_tags_to_snapshot.value_or(false);
  r.status = InstanceStatus::kCreating;
  r.create_time = impl_->Now();
  r.resource_id = "db-" + RandomAlnumUpper(26);
  r.data_path = (impl_->config.data_dir / "instances" / r.resource_id).string();

  RETURN_IF_ERROR(impl_->RefuseIfDiskLow(errors::kStorageQuotaExceeded, "a new DB instance"));
  std::string arn = impl_->InstanceArn(r.id);
  RETURN_IF_ERROR(impl_->catalog->InTransaction([&]() -> Status {
    RETURN_IF_ERROR(impl_->catalog->InsertInstance(r));
    return impl_->catalog->SetTags(arn, req.tags);
  }));
  log::Info("instance creating", {{"instance", r.id}, {"engine", r.engine}});
  impl_->workers->Submit([this, r] { impl_->FinishCreate(r); });
  return impl_->ToInstance(r);
}

Result<Instance> ControlPlane::DescribeInstance(const std::string& id) {
  ASSIGN_OR_RETURN(auto r, impl_->catalog->GetInstance(ToLower(id)));
  return impl_->ToInstance(r);
}

std::vector<Instance> ControlPlane::ListInstances() {
  std::vector<Instance> out;
  for (const auto& r : impl_->catalog->ListInstances()) out.push_back(impl_->ToInstance(r));
  return out;
}

Result<Instance> ControlPlane::ModifyInstance(const ModifyInstanceRequest& req) {
  catalog::InstanceRecord updated;
  std::optional<std::string> renamed_from;
  RETURN_IF_ERROR(impl_->catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto r, impl_->catalog->GetInstance(ToLower(req.id)));
    if (r.status != InstanceStatus::kAvailable && r.status != InstanceStatus::kBackingUp) {
      return Status(errors::kInvalidDBInstanceState,
                    fmt::format("Database instance is not in available state (status {}).", ToString(r.status)));
    }
    if (req.backup_retention_days) {
      int days = *req.backup_retention_days;
      if (days < 0 || days > 35) {
        return InvalidValue("Invalid BackupRetentionPeriod: must be from 0 to 35 days");
      }
      // RDS applies 0 <-> non-zero in the next maintenance window unless told
      // to apply it now; any other change applies at once.
      bool toggles = (days == 0) != (r.backup_retention_days == 0);
      if (toggles && !req.apply_immediately) {
        r.pending_backup_retention_days = days;
      } else {
        r.backup_retention_days = days;
        r.pending_backup_retention_days.reset();
      }
    }
    std::string backup_window = req.backup_window.value_or(r.backup_window);
    std::string maintenance_window = req.maintenance_window ? ToLower(*req.maintenance_window)
                                                            : r.maintenance_window;
    ASSIGN_OR_RETURN(auto bw, ParseDailyWindow("PreferredBackupWindow", backup_window, 30));
    ASSIGN_OR_RETURN(auto mw, ParseWeeklyWindow("PreferredMaintenanceWindow", maintenance_window));
    if (Overlaps(bw, mw)) {
      return InvalidValue("The backup window and maintenance window must not overlap.");
    }
    r.backup_window = backup_window;
    r.maintenance_window = maintenance_window;
    engine::Engine* password_engine = nullptr;
    if (req.master_password) {
      password_engine = engine::FindEngine(r.engine);
      if (!password_engine || !password_engine->UsesPort()) {
        return InvalidCombination(fmt::format("A {} instance has no master password.", r.engine));
      }
      ASSIGN_OR_RETURN(r.engine_state, password_engine->SealCredentials(r.master_username, *req.master_password));
    }
    if (req.deletion_protection) r.deletion_protection = *req.deletion_protection;
    if (req.copy_tags_to_snapshot) r.copy_tags_to_snapshot = *req.copy_tags_to_snapshot;
    if (req.instance_class) {
      if (req.instance_class->rfind("db.", 0) != 0 || req.instance_class->size() < 4) {
        return InvalidValue(fmt::format("Invalid DB instance class: {}", *req.instance_class));
      }
      r.instance_class = *req.instance_class;
    }
    if (req.allocated_storage_gib) {
      if (*req.allocated_storage_gib < r.allocated_storage_gib) {
        return InvalidValue("Invalid storage size: AllocatedStorage cannot be reduced");
      }
      if (*req.allocated_storage_gib > 65536) {
        return InvalidValue("Invalid storage size: AllocatedStorage must be at most 65536 GiB");
      }
      r.allocated_storage_gib = *req.allocated_storage_gib;
    }
    RETURN_IF_ERROR(impl_->catalog->UpdateInstance(r));
    if (req.new_id && ToLower(*req.new_id) != r.id) {
      RETURN_IF_ERROR(ValidateIdentifier("NewDBInstanceIdentifier", *req.new_id, 63));
      if (!req.apply_immediately) {
        return InvalidCombination(
            "Strata renames an instance only with ApplyImmediately; it does not defer a rename to the "
            "maintenance window.");
      }
      if (r.status != InstanceStatus::kAvailable) {
        return Status(errors::kInvalidDBInstanceState,
                      fmt::format("Database instance {} can be renamed only while available (it is {}).", r.id,
                                  ToString(r.status)));
      }
      std::string new_id = ToLower(*req.new_id);
      RETURN_IF_ERROR(impl_->catalog->RenameInstance(r.id, new_id, impl_->InstanceArn(r.id),
                                                     impl_->InstanceArn(new_id)));
      renamed_from = r.id;
      r.id = new_id;
    }
    // The server's password changes last: a request refused above changes
    // nothing, and if the server refuses, the catalog's change rolls back.
    if (password_engine) RETURN_IF_ERROR(password_engine->SetMasterPassword(SpecOf(r), r.engine_state));
    updated = r;
    return Status::Ok();
  }));
  if (renamed_from) {
    impl_->Event("db-instance", updated.id, impl_->InstanceArn(updated.id),
                 fmt::format("Renamed instance from {} to {}", *renamed_from, updated.id), {"configuration change"});
    log::Info("instance renamed", {{"from", *renamed_from}, {"to", updated.id}});
  }
  impl_->Event("db-instance", updated.id, impl_->InstanceArn(updated.id),
               "Finished applying modification to DB instance", {"configuration change"});
  if (req.backup_retention_days && !updated.pending_backup_retention_days) impl_->OnRetentionChanged(updated);
  return impl_->ToInstance(updated);
}

Result<Instance> ControlPlane::DeleteInstance(const DeleteInstanceRequest& req) {
  catalog::InstanceRecord deleting;
  std::optional<catalog::SnapshotRecord> final_snapshot;
  impl_->MakeRoom("DeleteDBInstance");
  RETURN_IF_ERROR(impl_->catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto r, impl_->catalog->GetInstance(ToLower(req.id)));
    if (r.deletion_protection) {
      return InvalidCombination(
          "Cannot delete protected DB Instance, please disable deletion protection and try again.");
    }
    if (req.skip_final_snapshot && req.final_snapshot_id) {
      return InvalidCombination(
          "FinalDBSnapshotIdentifier can not be specified when deleting a DB instance with "
          "SkipFinalSnapshot set to true.");
    }
    if (!req.skip_final_snapshot && !req.final_snapshot_id) {
      return InvalidCombination(
          "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified.");
    }
    if (r.status == InstanceStatus::kDeleting) {
      return Status(errors::kInvalidDBInstanceState,
                    fmt::format("Instance {} is already being deleted.", r.id));
    }
    if (!req.skip_final_snapshot) {
      RETURN_IF_ERROR(ValidateIdentifier("FinalDBSnapshotIdentifier", *req.final_snapshot_id, 255));
      if (r.status != InstanceStatus::kAvailable) {
        return Status(errors::kInvalidDBInstanceState,
                      fmt::format("Instance {} is {}; a final snapshot needs it available.", r.id,
                                  ToString(r.status)));
      }
      if (impl_->CountManualSnapshots() >= impl_->config.manual_snapshot_quota) {
        return Status(errors::kSnapshotQuotaExceeded,
                      "Cannot create the final snapshot: the manual snapshot quota is reached.");
      }
      RETURN_IF_ERROR(impl_->RefuseIfDiskLow(errors::kSnapshotQuotaExceeded,
                                             "a final snapshot (SkipFinalSnapshot deletes without one)"));
      final_snapshot = impl_->NewSnapshotRecord(r, ToLower(*req.final_snapshot_id), SnapshotType::kManual);
      RETURN_IF_ERROR(impl_->catalog->InsertSnapshot(*final_snapshot));
      if (r.copy_tags_to_snapshot) {
        RETURN_IF_ERROR(impl_->catalog->SetTags(impl_->SnapshotArn(final_snapshot->id),
                                                impl_->catalog->ListTags(impl_->InstanceArn(r.id))));
      }
    }
    r.status = InstanceStatus::kDeleting;
    RETURN_IF_ERROR(impl_->catalog->UpdateInstance(r));
    if (auto ab = impl_->catalog->GetAutomatedBackup(r.resource_id); ab.ok()) {
      // Kept as retained, or deleted with the instance (RDS's default).
      ab->status = req.delete_automated_backups ? AutomatedBackupStatus::kDeleting : AutomatedBackupStatus::kRetained;
      RETURN_IF_ERROR(impl_->catalog->PutAutomatedBackup(*ab));
    }
    deleting = r;
    return Status::Ok();
  }));
  log::Info("instance deleting", {{"instance", deleting.id}});
  if (final_snapshot) {
    impl_->workers->Submit([this, deleting, snap = *final_snapshot] {
      impl_->FinishDeleteWithFinalSnapshot(deleting, snap);
    });
  } else {
    impl_->workers->Submit([this, deleting] { impl_->FinishDelete(deleting); });
  }
  return impl_->ToInstance(deleting);
}

Result<Instance> ControlPlane::RebootInstance(const std::string& id, bool force_failover) {
  catalog::InstanceRecord rebooting;
  RETURN_IF_ERROR(impl_->catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto r, impl_->catalog->GetInstance(ToLower(id)));
    if (force_failover) {
      return InvalidCombination(fmt::format("DB instance {} is not Multi-AZ: it cannot fail over.", r.id));
    }
    if (r.status != InstanceStatus::kAvailable) {
      return Status(errors::kInvalidDBInstanceState,
                    fmt::format("DB instance {} is {}; only an available instance can be rebooted.", r.id, ToString(r.status)));
    }
    r.status = InstanceStatus::kRebooting;
    RETURN_IF_ERROR(impl_->catalog->UpdateInstance(r));
    rebooting = r;
    return Status::Ok();
  }));
  impl_->Event("db-instance", rebooting.id, impl_->InstanceArn(rebooting.id), "DB instance shutdown", {"availability"});
  impl_->workers->Submit([this, rebooting] {
    engine::Engine* e = engine::FindEngine(rebooting.engine);
    Status st = e ? e->Stop(SpecOf(rebooting)) : Status(errors::kInternalFailure, "unknown engine");
    if (st.ok()) st = e->Start(SpecOf(rebooting));
    (void)impl_->SetStatus(rebooting.id, st.ok() ? InstanceStatus::kAvailable : InstanceStatus::kFailed, st.message());
    impl_->Event("db-instance", rebooting.id, impl_->InstanceArn(rebooting.id),
                 st.ok() ? "DB instance restarted" : "DB instance reboot failed: " + st.message(),
                 {st.ok() ? "availability" : "failure"});
  });
  return impl_->ToInstance(rebooting);
}

namespace {

// The canonical ARN of a taggable resource this server owns, checked against the catalog.
Result<std::string> ResolveTaggable(catalog::Catalog& catalog, const ArnOwner& owner,
                                    const std::string& arn_text) {
  auto any = ParseArn(arn_text);
  std::string_view type = any ? std::string_view(any->resource_type) : std::string_view("db");
  if (type != "db" && type != "snapshot") {
    return InvalidValue(fmt::format("Invalid resource name {}: resource type '{}' cannot be tagged", arn_text, type));
  }
  ASSIGN_OR_RETURN(auto arn, ParseOwnArn(arn_text, owner, type));
  if (type == "db") {
    RETURN_IF_ERROR(catalog.GetInstance(arn.resource_id).status());
  } else {
    RETURN_IF_ERROR(catalog.GetSnapshot(arn.resource_id).status());
  }
  return arn.Text();
}

}  // namespace

Status ControlPlane::AddTags(const std::string& arn, const std::vector<Tag>& tags) {
  ASSIGN_OR_RETURN(auto resolved, ResolveTaggable(*impl_->catalog, impl_->Owner(), arn));
  for (const auto& t : tags) RETURN_IF_ERROR(ValidateTag(t.key, t.value));
  return impl_->catalog->InTransaction([&]() -> Status {
    auto existing = impl_->catalog->ListTags(resolved);
    size_t count = existing.size();
    for (const auto& t : tags) {
      bool known = false;
      for (const auto& e : existing) known = known || e.key == t.key;
      if (!known) ++count;
    }
    if (count > kMaxTagsPerResource) {
      return InvalidValue(fmt::format("A resource may have at most {} tags", kMaxTagsPerResource));
    }
    return impl_->catalog->SetTags(resolved, tags);
  });
}

Status ControlPlane::RemoveTags(const std::string& arn, const std::vector<std::string>& keys) {
  ASSIGN_OR_RETURN(auto resolved, ResolveTaggable(*impl_->catalog, impl_->Owner(), arn));
  return impl_->catalog->RemoveTags(resolved, keys);
}

Result<std::vector<Tag>> ControlPlane::ListTags(const std::string& arn) {
  ASSIGN_OR_RETURN(auto resolved, ResolveTaggable(*impl_->catalog, impl_->Owner(), arn));
  return impl_->catalog->ListTags(resolved);
}

std::vector<catalog::EventRecord> ControlPlane::DescribeEvents(const EventFilter& f) {
  catalog::EventQuery q;
  TimePoint now = impl_->Now();
  q.end = f.end.value_or(now);
  // RDS: without StartTime, Duration minutes back from the end (default 60).
  q.start = f.start.value_or(q.end - std::chrono::minutes(f.duration_minutes.value_or(60)));
  q.source_type = f.source_type;
  q.source_id = f.source_id;
  q.categories = f.categories;
  return impl_->catalog->ListEvents(q);
}

Result<engine::StatementResult> ControlPlane::ExecuteStatement(
    const DataTarget& target, const std::string& sql, const std::vector<engine::Parameter>& params,
    const std::optional<std::string>& transaction_id) {
  if (transaction_id) {
    ASSIGN_OR_RETURN(auto tx, impl_->FindTransaction(target.resource_arn, *transaction_id));
    std::lock_guard lock(tx->mu);
    return tx->session->Execute(sql, params);
  }
  ASSIGN_OR_RETURN(auto r, impl_->InstanceFromArn(target.resource_arn));
  engine::Engine* e = engine::FindEngine(r.engine);
  ASSIGN_OR_RETURN(auto session, e->OpenSession(SpecOf(r), target.database, impl_->config.data_api_limits));
  auto result = session->Execute(sql, params);
  // An autocommit statement committed: it is stamped before the caller hears.
  impl_->CatchUpCapture(r);
  return result;
}

Result<std::string> ControlPlane::BeginTransaction(const DataTarget& target) {
  ASSIGN_OR_RETURN(auto r, impl_->InstanceFromArn(target.resource_arn));
  engine::Engine* e = engine::FindEngine(r.engine);
  auto tx = std::make_shared<Transaction>();
  tx->instance_id = r.id;
  ASSIGN_OR_RETURN(tx->session, e->OpenSession(SpecOf(r), target.database, impl_->config.data_api_limits));
  RETURN_IF_ERROR(tx->session->Begin());
  tx->last_used = impl_->Now();
  std::string id = RandomAlnum(48);
  std::lock_guard lock(impl_->tx_mu);
  impl_->transactions[id] = tx;
  return id;
}

Status ControlPlane::CommitTransaction(const std::string& resource_arn, const std::string& id) {
  ASSIGN_OR_RETURN(auto tx, impl_->FindTransaction(resource_arn, id));
  Status st;
  {
    std::lock_guard lock(tx->mu);
    st = tx->session->Commit();
    if (!st.ok()) (void)tx->session->Rollback();
  }
  if (st.ok()) {
    if (auto r = impl_->catalog->GetInstance(tx->instance_id); r.ok()) impl_->CatchUpCapture(*r);
  }
  std::lock_guard lock(impl_->tx_mu);
  impl_->transactions.erase(id);
  return st;
}

Status ControlPlane::RollbackTransaction(const std::string& resource_arn, const std::string& id) {
  ASSIGN_OR_RETURN(auto tx, impl_->FindTransaction(resource_arn, id));
  Status st;
  {
    std::lock_guard lock(tx->mu);
    st = tx->session->Rollback();
  }
  std::lock_guard lock(impl_->tx_mu);
  impl_->transactions.erase(id);
  return st;
}

Result<int> ControlPlane::Impl::AssignPort(std::optional<int> requested) {
  std::lock_guard lock(port_mu);
  std::set<int> taken;
  for (const auto& r : catalog->ListInstances()) {
    if (r.port > 0) taken.insert(r.port);
  }
  if (requested) {
    if (taken.count(*requested)) {
      return InvalidValue(fmt::format("Port {} is used by another DB instance on this host.", *requested));
    }
    return *requested;
  }
  for (int attempt = 0; attempt < 100; ++attempt) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) break;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    int port = 0;
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port = ntohs(addr.sin_port);
    }
    close(fd);
    if (port > 0 && !taken.count(port)) {
      picked_ports.insert(port);
      return port;
    }
  }
  return Status(errors::kInternalFailure, "no free loopback port for the DB instance");
}

Status ControlPlane::Impl::StartOnPickedPort(catalog::InstanceRecord& r, engine::Engine& e) {
  for (int attempt = 1;; ++attempt) {
    Status st = e.Start(SpecOf(r));
    bool picked = false;
    {
      std::lock_guard lock(port_mu);
      picked = picked_ports.count(r.port) > 0;
    }
    if (!st.Is(errors::kPortInUse) || !picked || attempt == 5) return st;
    ASSIGN_OR_RETURN(int port, AssignPort(std::nullopt));
    log::Warn("another process took the port picked for the server: moving it",
              {{"instance", r.id}, {"from", r.port}, {"to", port}});
    RETURN_IF_ERROR(catalog->InTransaction([&]() -> Status {
      ASSIGN_OR_RETURN(auto cur, catalog->GetInstance(r.id));
      cur.port = port;
      return catalog->UpdateInstance(cur);
    }));
    r.port = port;
  }
}

void ControlPlane::Impl::Supervise(const catalog::InstanceRecord& r) {
  if (r.status != InstanceStatus::kAvailable && r.status != InstanceStatus::kBackingUp &&
      r.status != InstanceStatus::kModifying) {
    return;
  }
  engine::Engine* e = engine::FindEngine(r.engine);
  if (!e || e->CheckRunning(SpecOf(r)).ok()) return;
  log::Warn("server not running: restarting it", {{"instance", r.id}});
  Status st = e->Start(SpecOf(r));
  if (st.ok()) {
    Event("db-instance", r.id, InstanceArn(r.id), "DB instance restarted: its server had stopped", {"availability"});
  } else {
    log::Error("restart failed", {{"instance", r.id}, {"error", st.ToString()}});
    Event("db-instance", r.id, InstanceArn(r.id), "DB instance restart failed: " + st.message(), {"failure"});
  }
}

Result<engine::Endpoint> ControlPlane::InstanceEndpoint(const std::string& id) {
  ASSIGN_OR_RETURN(auto r, impl_->catalog->GetInstance(ToLower(id)));
  engine::Engine* e = engine::FindEngine(r.engine);
  if (!e) return Status(errors::kInternalFailure, "unknown engine " + r.engine);
  return e->GetEndpoint(SpecOf(r));
}

}  // namespace strata::control
