#include "control/data_api_sessions.h"

#include <fmt/format.h>

#include "common/ids.h"

namespace strata::control {

Result<engine::StatementResult> DataApiSessions::Execute(const DataTarget& target, const std::string& sql,
                                                         const std::vector<engine::Parameter>& params,
                                                         const std::optional<std::string>& transaction_id) {
  if (transaction_id) {
    ASSIGN_OR_RETURN(auto tx, FindTransaction(target.resource_arn, *transaction_id));
    std::lock_guard lock(tx->mu);
    return tx->session->Execute(sql, params);
  }
  ASSIGN_OR_RETURN(auto r, InstanceFromArn(target.resource_arn));
  engine::Engine* e = engine::FindEngine(r.engine);
  ASSIGN_OR_RETURN(auto session, e->OpenSession(SpecOf(r), target.database, ctx_.config.data_api_limits));
  auto result = session->Execute(sql, params);
  // An autocommit statement committed: it is stamped before the caller hears.
  committed_(r);
  return result;
}

Result<std::string> DataApiSessions::Begin(const DataTarget& target) {
  ASSIGN_OR_RETURN(auto r, InstanceFromArn(target.resource_arn));
  engine::Engine* e = engine::FindEngine(r.engine);
  auto tx = std::make_shared<Transaction>();
  tx->instance_id = r.id;
  ASSIGN_OR_RETURN(tx->session, e->OpenSession(SpecOf(r), target.database, ctx_.config.data_api_limits));
  RETURN_IF_ERROR(tx->session->Begin());
  tx->last_used = ctx_.Now();
  std::string id = RandomAlnum(48);
  std::lock_guard lock(mu_);
  transactions_[id] = tx;
  return id;
}

Status DataApiSessions::Commit(const std::string& resource_arn, const std::string& id) {
  return End(resource_arn, id, /*commit=*/true);
}

Status DataApiSessions::Rollback(const std::string& resource_arn, const std::string& id) {
  return End(resource_arn, id, /*commit=*/false);
}

Status DataApiSessions::End(const std::string& resource_arn, const std::string& id, bool commit) {
  ASSIGN_OR_RETURN(auto tx, FindTransaction(resource_arn, id));
  Status st;
  {
    std::lock_guard lock(tx->mu);
    st = commit ? tx->session->Commit() : tx->session->Rollback();
    if (commit && !st.ok()) RollbackOrLog(*tx, "its commit failed");
  }
  if (commit && st.ok()) {
    if (auto r = ctx_.catalog->GetInstance(tx->instance_id); r.ok()) committed_(*r);
  }
  std::lock_guard lock(mu_);
  transactions_.erase(id);
  return st;
}

Result<catalog::InstanceRecord> DataApiSessions::InstanceFromArn(const std::string& resource_arn) {
  auto arn = ParseOwnArn(resource_arn, ctx_.Owner(), "db");
  if (!arn.ok()) return Status(errors::kDataBadRequest, std::string(arn.status().message()));
  auto r = ctx_.catalog->GetInstance(arn->resource_id);
  if (!r.ok()) {
    return Status(errors::kDataNotFound, fmt::format("Database instance {} not found.", arn->resource_id));
  }
  if (r->status != InstanceStatus::kAvailable && r->status != InstanceStatus::kBackingUp && r->status != InstanceStatus::kModifying) {
    return Status(errors::kDataBadRequest,
                  fmt::format("Database instance {} is not available (status {}).", r->id, ToString(r->status)));
  }
  return r;
}

Result<std::shared_ptr<DataApiSessions::Transaction>> DataApiSessions::FindTransaction(const std::string& resource_arn,
                                                                                       const std::string& id) {
  std::lock_guard lock(mu_);
  ReapIdleTransactionsLocked();
  auto it = transactions_.find(id);
  auto arn = ParseOwnArn(resource_arn, ctx_.Owner(), "db");
  if (it == transactions_.end() || !arn.ok() || arn->resource_id != it->second->instance_id) {
    return Status(errors::kDataNotFound, fmt::format("Transaction {} is not found", id));
  }
  it->second->last_used = ctx_.Now();
  return it->second;
}

void DataApiSessions::ReapIdleTransactionsLocked() {
  TimePoint now = ctx_.Now();
  for (auto it = transactions_.begin(); it != transactions_.end();) {
    std::unique_lock tx_lock(it->second->mu, std::try_to_lock);
    if (tx_lock.owns_lock() && now - it->second->last_used > kTransactionIdleTimeout) {
      RollbackOrLog(*it->second, "idle too long");
      tx_lock.unlock();
      it = transactions_.erase(it);
    } else {
      ++it;
    }
  }
}

void DataApiSessions::RollbackOrLog(Transaction& tx, std::string_view why) {
  if (Status st = tx.session->Rollback(); !st.ok()) {
    log::Warn("transaction rollback failed",
              {{"instance", tx.instance_id}, {"why", std::string(why)}, {"error", st.ToString()}});
  }
}

void DataApiSessions::RollbackAll() {
  std::lock_guard lock(mu_);
  for (auto& [id, tx] : transactions_) {
    std::lock_guard tx_lock(tx->mu);
    RollbackOrLog(*tx, "shutdown");
  }
  transactions_.clear();
}

}  // namespace strata::control
