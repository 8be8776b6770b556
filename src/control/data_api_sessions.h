// Private to control/: the RDS Data API. Statements on an instance's
// database, one session each, or within a transaction whose session stays
// open between calls (reaped after kTransactionIdleTimeout unused).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "control/context.h"

namespace strata::control {

inline constexpr auto kTransactionIdleTimeout = std::chrono::minutes(3);

class DataApiSessions {
 public:
  // Called after a commit on an instance (autocommit or a transaction's),
  // before the caller hears back.
  using CommitHook = std::function<void(const catalog::InstanceRecord&)>;
  DataApiSessions(Context& ctx, CommitHook committed)
      : ctx_(ctx), committed_(std::move(committed)) {}

  Result<engine::StatementResult> Execute(const DataTarget& target, const std::string& sql,
                                          const std::vector<engine::Parameter>& params,
                                          const std::optional<std::string>& transaction_id);
  Result<std::string> Begin(const DataTarget& target);
  Status Commit(const std::string& resource_arn, const std::string& transaction_id);
  Status Rollback(const std::string& resource_arn, const std::string& transaction_id);
  // At shutdown: every open transaction rolled back.
  void RollbackAll();

 private:
  struct Transaction {
    std::string instance_id;
    std::unique_ptr<engine::Session> session;
    std::mutex mu;  // one statement at a time per transaction, as a connection requires
    TimePoint last_used{};
  };

  // Commits or rolls back, and forgets the transaction either way.
  Status End(const std::string& resource_arn, const std::string& id, bool commit);
  // The instance a Data API call names, if it can take statements.
  Result<catalog::InstanceRecord> InstanceFromArn(const std::string& resource_arn);
  Result<std::shared_ptr<Transaction>> FindTransaction(const std::string& resource_arn,
                                                       const std::string& id);
  void ReapIdleTransactionsLocked();
  // Rolls a transaction back whose caller will not hear of it: a failure is logged.
  static void RollbackOrLog(Transaction& tx, std::string_view why);

  Context& ctx_;
  CommitHook committed_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Transaction>> transactions_;  // under mu_
};

}  // namespace strata::control
