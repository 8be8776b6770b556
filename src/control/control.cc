#include "control/control.h"

#include <fmt/format.h>

#include <map>
#include <mutex>
#include <random>

#include "common/ids.h"
#include "common/log.h"
#include "common/task_pool.h"
#include "control/arn.h"
#include "control/validation.h"

namespace strata::control {
namespace {

constexpr int kMaxTagsPerResource = 50;
constexpr auto kTransactionIdleTimeout = std::chrono::minutes(3);

// us-east-1's 8-hour block for default backup windows, as RDS documents it.
constexpr int kDefaultBackupBlockStart = 3 * 60;

Status InvalidValue(std::string msg) { return Status(errors::kInvalidParameterValue, std::move(msg)); }
Status InvalidCombination(std::string msg) {
  return Status(errors::kInvalidParameterCombination, std::move(msg));
}

engine::InstanceSpec SpecOf(const catalog::InstanceRecord& r) {
  engine::InstanceSpec spec;
  spec.id = r.id;
  spec.resource_id = r.resource_id;
  spec.data_dir = r.data_path;
  spec.db_name = r.db_name;
  spec.master_username = r.master_username;
  spec.port = r.port;
  return spec;
}

struct Transaction {
  std::string instance_id;
  std::unique_ptr<engine::Session> session;
  std::mutex mu;  // one statement at a time per transaction, as a connection requires
  TimePoint last_used{};
};

}  // namespace

class ControlPlane::Impl {
 public:
  Config config;
  std::unique_ptr<catalog::Catalog> catalog;
  std::string account_id;
  std::unique_ptr<TaskPool> workers;

  std::mutex tx_mu;
  std::map<std::string, std::shared_ptr<Transaction>> transactions;

  TimePoint Now() const { return config.clock->Now(); }

  std::string InstanceArn(const std::string& id) const {
    return FormatArn(config.region, account_id, "db", id);
  }

  void Event(const std::string& source_type, const std::string& id, const std::string& arn,
             const std::string& message, std::vector<std::string> categories) {
    catalog::EventRecord e;
    e.time = Now();
    e.source_type = source_type;
    e.source_id = id;
    e.source_arn = arn;
    e.message = message;
    e.categories = std::move(categories);
    Status st = catalog->AddEvent(e);
    if (!st.ok()) log::Warn("event not recorded", {{"error", st.ToString()}});
  }

  Instance ToInstance(const catalog::InstanceRecord& r) {
    Instance out;
    out.record = r;
    out.arn = InstanceArn(r.id);
    out.tags = catalog->ListTags(out.arn);
    if (auto* e = engine::FindEngine(r.engine)) out.endpoint = e->GetEndpoint(SpecOf(r));
    return out;
  }

  Status SetStatus(const std::string& id, const std::string& status, const std::string& reason = "") {
    return catalog->InTransaction([&]() -> Status {
      ASSIGN_OR_RETURN(auto r, catalog->GetInstance(id));
      r.status = status;
      r.status_reason = reason;
      return catalog->UpdateInstance(r);
    });
  }

  // Brings a record in `creating` to `available` (or `failed`).
  void FinishCreate(const catalog::InstanceRecord& r) {
    engine::Engine* e = engine::FindEngine(r.engine);
    engine::InstanceSpec spec = SpecOf(r);
    Status st = e ? e->Create(spec) : Status(errors::kInternalFailure, "unknown engine " + r.engine);
    if (st.ok()) st = e->Start(spec);
    if (!st.ok()) {
      log::Error("instance create failed", {{"instance", r.id}, {"error", st.ToString()}});
      (void)SetStatus(r.id, "failed", st.message());
      Event("db-instance", r.id, InstanceArn(r.id), "DB instance creation failed: " + st.message(),
            {"failure"});
      return;
    }
    if (Status s2 = SetStatus(r.id, "available"); !s2.ok()) {
      log::Error("instance status update failed", {{"instance", r.id}, {"error", s2.ToString()}});
      return;
    }
    Event("db-instance", r.id, InstanceArn(r.id), "DB instance created", {"creation"});
    log::Info("instance available", {{"instance", r.id}});
  }

  void FinishDelete(const catalog::InstanceRecord& r) {
    engine::Engine* e = engine::FindEngine(r.engine);
    engine::InstanceSpec spec = SpecOf(r);
    Status st = Status::Ok();
    if (e) {
      st = e->Stop(spec);
      if (st.ok()) st = e->Destroy(spec);
    }
    if (!st.ok()) {
      log::Error("instance delete failed", {{"instance", r.id}, {"error", st.ToString()}});
      (void)SetStatus(r.id, "failed", st.message());
      return;
    }
    std::string arn = InstanceArn(r.id);
    Status gone = catalog->InTransaction([&]() -> Status {
      RETURN_IF_ERROR(catalog->DeleteAllTags(arn));
      return catalog->DeleteInstance(r.id);
    });
    if (!gone.ok()) {
      log::Error("instance delete failed", {{"instance", r.id}, {"error", gone.ToString()}});
      return;
    }
    Event("db-instance", r.id, arn, "DB instance deleted", {"deletion"});
    log::Info("instance deleted", {{"instance", r.id}});
  }

  Result<catalog::InstanceRecord> InstanceFromArn(const std::string& resource_arn) {
    auto arn = ParseArn(resource_arn);
    if (!arn || arn->resource_type != "db") {
      return Status(errors::kDataBadRequest, fmt::format("Invalid resourceArn: {}", resource_arn));
    }
    auto r = catalog->GetInstance(arn->resource_id);
    if (!r.ok()) {
      return Status(errors::kDataNotFound,
                    fmt::format("Database instance {} not found.", arn->resource_id));
    }
    if (r->status != "available" && r->status != "backing-up" && r->status != "modifying") {
      return Status(errors::kDataBadRequest,
                    fmt::format("Database instance {} is not available (status {}).", r->id, r->status));
    }
    return r;
  }

  Result<std::shared_ptr<Transaction>> FindTransaction(const std::string& resource_arn,
                                                       const std::string& id) {
    std::lock_guard lock(tx_mu);
    ReapIdleTransactionsLocked();
    auto it = transactions.find(id);
    auto arn = ParseArn(resource_arn);
    if (it == transactions.end() || !arn || arn->resource_id != it->second->instance_id) {
      return Status(errors::kDataNotFound, fmt::format("Transaction {} is not found", id));
    }
    it->second->last_used = Now();
    return it->second;
  }

  void ReapIdleTransactionsLocked() {
    TimePoint now = Now();
    for (auto it = transactions.begin(); it != transactions.end();) {
      std::unique_lock tx_lock(it->second->mu, std::try_to_lock);
      if (tx_lock.owns_lock() && now - it->second->last_used > kTransactionIdleTimeout) {
        (void)it->second->session->Rollback();
        tx_lock.unlock();
        it = transactions.erase(it);
      } else {
        ++it;
      }
    }
  }

  std::string DefaultBackupWindow() {
    std::random_device rd;
    int start = kDefaultBackupBlockStart + static_cast<int>(rd() % 15) * 30;
    return FormatDailyWindow(DailyWindow{start, (start + 30) % 1440});
  }

  std::string DefaultMaintenanceWindow(const std::string& backup_window) {
    auto b = ParseDailyWindow("PreferredBackupWindow", backup_window, 30);
    std::random_device rd;
    for (int attempt = 0; attempt < 100; ++attempt) {
      int start = static_cast<int>(rd() % 7) * 1440 + static_cast<int>(rd() % 48) * 30;
      WeeklyWindow w{start, (start + 30) % 10080};
      if (!b.ok() || !Overlaps(*b, w)) return FormatWeeklyWindow(w);
    }
    return "sun:23:00-sun:23:30";
  }
};

ControlPlane::ControlPlane(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ControlPlane::~ControlPlane() { Shutdown(); }

Result<std::unique_ptr<ControlPlane>> ControlPlane::Open(Config config,
                                                         std::unique_ptr<catalog::Catalog> catalog) {
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  impl->catalog = std::move(catalog);
  auto account = impl->catalog->GetSetting("account_id");
  if (!account) {
    std::string digits;
    for (char c : RandomHex(6)) digits.push_back(static_cast<char>('0' + (c % 10)));
    RETURN_IF_ERROR(impl->catalog->PutSetting("account_id", digits));
    account = digits;
  }
  impl->account_id = *account;
  impl->workers = std::make_unique<TaskPool>(std::max(1, impl->config.worker_threads));
  auto cp = std::unique_ptr<ControlPlane>(new ControlPlane(std::move(impl)));
  RETURN_IF_ERROR(cp->Recover());
  return cp;
}

const std::string& ControlPlane::AccountId() const { return impl_->account_id; }
const std::string& ControlPlane::Region() const { return impl_->config.region; }
std::string ControlPlane::InstanceArn(const std::string& id) const { return impl_->InstanceArn(id); }

Status ControlPlane::Recover() {
  for (const auto& r : impl_->catalog->ListInstances()) {
    if (r.status == "creating") {
      log::Info("resuming instance create", {{"instance", r.id}});
      impl_->workers->Submit([this, r] { impl_->FinishCreate(r); });
    } else if (r.status == "deleting") {
      log::Info("resuming instance delete", {{"instance", r.id}});
      impl_->workers->Submit([this, r] { impl_->FinishDelete(r); });
    } else if (r.status == "failed") {
      continue;
    } else {
      // available, modifying, backing-up: whatever was under way is over.
      engine::Engine* e = engine::FindEngine(r.engine);
      Status st = e ? e->Start(SpecOf(r)) : Status(errors::kInternalFailure, "unknown engine");
      RETURN_IF_ERROR(impl_->SetStatus(r.id, st.ok() ? "available" : "failed", st.message()));
    }
  }
  return Status::Ok();
}

void ControlPlane::Shutdown() {
  if (impl_->workers) impl_->workers->Shutdown();
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
    return InvalidValue(fmt::format("Invalid DB engine: {}. Strata runs: sqlite", req.engine));
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
    if (req.db_name->empty() || req.db_name->size() > 63 ||
        !std::isalpha(static_cast<unsigned char>((*req.db_name)[0]))) {
      return InvalidValue("Invalid DBName: must begin with a letter and contain 1 to 63 characters");
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
  r.port = req.port.value_or(0);
  if (req.tags.size() > kMaxTagsPerResource) {
    return InvalidValue(fmt::format("A resource may have at most {} tags", kMaxTagsPerResource));
  }
  for (const auto& t : req.tags) RETURN_IF_ERROR(ValidateTag(t.key, t.value));
  r.deletion_protection = req.deletion_protection.value_or(false);
  r.copy_tags_to_snapshot = req.copy_tags_to_snapshot.value_or(false);
  r.status = "creating";
  r.create_time = impl_->Now();
  r.resource_id = "db-" + RandomAlnumUpper(26);
  r.data_path = (impl_->config.data_dir / "instances" / r.resource_id).string();

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
  RETURN_IF_ERROR(impl_->catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto r, impl_->catalog->GetInstance(ToLower(req.id)));
    if (r.status != "available" && r.status != "backing-up") {
      return Status(errors::kInvalidDBInstanceState,
                    fmt::format("Database instance is not in available state (status {}).", r.status));
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
    updated = r;
    return Status::Ok();
  }));
  impl_->Event("db-instance", updated.id, impl_->InstanceArn(updated.id),
               "Finished applying modification to DB instance", {"configuration change"});
  return impl_->ToInstance(updated);
}

Result<Instance> ControlPlane::DeleteInstance(const DeleteInstanceRequest& req) {
  catalog::InstanceRecord deleting;
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
    if (r.status == "deleting") {
      return Status(errors::kInvalidDBInstanceState,
                    fmt::format("Instance {} is already being deleted.", r.id));
    }
    if (!req.skip_final_snapshot) {
      RETURN_IF_ERROR(ValidateIdentifier("FinalDBSnapshotIdentifier", *req.final_snapshot_id, 255));
      return Status(errors::kInvalidParameterCombination,
                    "Final snapshots are not available yet in this Strata build; delete with "
                    "--skip-final-snapshot, or take a snapshot first.");
    }
    r.status = "deleting";
    RETURN_IF_ERROR(impl_->catalog->UpdateInstance(r));
    deleting = r;
    return Status::Ok();
  }));
  log::Info("instance deleting", {{"instance", deleting.id}});
  impl_->workers->Submit([this, deleting] { impl_->FinishDelete(deleting); });
  return impl_->ToInstance(deleting);
}

namespace {

// What a resource ARN names, checked against the catalog.
Result<std::string> ResolveTaggable(catalog::Catalog& catalog, const std::string& arn_text) {
  auto arn = ParseArn(arn_text);
  if (!arn) return InvalidValue(fmt::format("Invalid resource name: {}", arn_text));
  if (arn->resource_type == "db") {
    RETURN_IF_ERROR(catalog.GetInstance(arn->resource_id).status());
    return arn_text;
  }
  return InvalidValue(fmt::format("Unsupported resource type in ARN: {}", arn_text));
}

}  // namespace

Status ControlPlane::AddTags(const std::string& arn, const std::vector<Tag>& tags) {
  ASSIGN_OR_RETURN(auto resolved, ResolveTaggable(*impl_->catalog, arn));
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
  ASSIGN_OR_RETURN(auto resolved, ResolveTaggable(*impl_->catalog, arn));
  return impl_->catalog->RemoveTags(resolved, keys);
}

Result<std::vector<Tag>> ControlPlane::ListTags(const std::string& arn) {
  ASSIGN_OR_RETURN(auto resolved, ResolveTaggable(*impl_->catalog, arn));
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
  ASSIGN_OR_RETURN(auto session, e->OpenSession(SpecOf(r), target.database));
  return session->Execute(sql, params);
}

Result<std::string> ControlPlane::BeginTransaction(const DataTarget& target) {
  ASSIGN_OR_RETURN(auto r, impl_->InstanceFromArn(target.resource_arn));
  engine::Engine* e = engine::FindEngine(r.engine);
  auto tx = std::make_shared<Transaction>();
  tx->instance_id = r.id;
  ASSIGN_OR_RETURN(tx->session, e->OpenSession(SpecOf(r), target.database));
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

Result<engine::Endpoint> ControlPlane::InstanceEndpoint(const std::string& id) {
  ASSIGN_OR_RETURN(auto r, impl_->catalog->GetInstance(ToLower(id)));
  engine::Engine* e = engine::FindEngine(r.engine);
  if (!e) return Status(errors::kInternalFailure, "unknown engine " + r.engine);
  return e->GetEndpoint(SpecOf(r));
}

}  // namespace strata::control
