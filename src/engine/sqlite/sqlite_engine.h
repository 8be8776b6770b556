// The embedded default engine: an instance is one SQLite database in WAL mode,
// DATA/instances/<DbiResourceId>/data.db. Applications on the host open the
// file directly; remote clients come through the RDS Data API.
#pragma once

#include "engine/engine.h"

namespace strata::engine {

class SqliteEngine : public Engine {
 public:
  static constexpr const char* kFileName = "data.db";

  std::string Name() const override { return "sqlite"; }
  std::string DefaultVersion() const override;
  bool SupportsVersion(const std::string& version) const override;
  Status Create(const InstanceSpec& spec) override;
  Status Start(const InstanceSpec& spec) override;
  Status Stop(const InstanceSpec& spec) override;
  Status Destroy(const InstanceSpec& spec) override;
  Result<std::unique_ptr<SnapshotView>> OpenSnapshot(const InstanceSpec& spec,
                                                     TimePoint now) override;
  Status FinishRestore(const InstanceSpec& spec, std::optional<TimePoint> point_in_time) override;
  Result<std::unique_ptr<ChangeCapture>> StartCapture(const InstanceSpec& spec, const Clock& clock,
                                                      const std::string& position) override;
  Status ApplyTransactions(const InstanceSpec& spec, const std::vector<std::string>& redo) override;
  Result<std::optional<FileRanges>> ChangedRanges(const std::vector<std::string>& redo) const override;
  Endpoint GetEndpoint(const InstanceSpec& spec) const override;
  Result<std::unique_ptr<Session>> OpenSession(const InstanceSpec& spec, const std::string& database,
                                               const SessionLimits& limits) override;

  static std::filesystem::path DatabaseFile(const InstanceSpec& spec);
};

}  // namespace strata::engine
