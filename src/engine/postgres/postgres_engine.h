// The postgres engine: an instance is a real PostgreSQL cluster from
// Debian's packages (initdb with data checksums, scram-sha-256 over TCP on
// loopback, the master user as its superuser), run by pg_ctl as an
// unprivileged OS user and supervised by control/ through CheckRunning.
//
// Backups: a snapshot is an online base backup (pg_backup_start, the files
// copied into the repository, pg_backup_stop, and the WAL the copy needs);
// the change log is the WAL itself, streamed over the replication protocol
// from a physical slot as pg_receivewal does; a point-in-time restore lays the
// WAL into pg_wal and lets PostgreSQL replay to recovery_target_time.
#pragma once

#include "engine/engine.h"

namespace strata::engine {

class PostgresEngine final : public Engine {
 public:
  std::string Name() const override { return "postgres"; }
  std::string DefaultVersion() const override;
  bool SupportsVersion(const std::string& version) const override;
  bool UsesPort() const override { return true; }
  // Recovery reads only the pages its WAL touches.
  bool ReadsRestoredFilesWhole() const override { return false; }
  Result<std::string> SealCredentials(const std::string& username, const std::string& password) const override;
  Status Create(const InstanceSpec& spec) override;
  Status Start(const InstanceSpec& spec) override;
  Status Stop(const InstanceSpec& spec) override;
  Status CheckRunning(const InstanceSpec& spec) override;
  Status SetMasterPassword(const InstanceSpec& spec, const std::string& engine_state) override;
  Status Destroy(const InstanceSpec& spec) override;
  Result<std::unique_ptr<SnapshotView>> OpenSnapshot(const InstanceSpec& spec, TimePoint now) override;
  Status FinishRestore(const InstanceSpec& spec, std::optional<TimePoint> point_in_time) override;
  Result<std::unique_ptr<ChangeCapture>> StartCapture(const InstanceSpec& spec, const Clock& clock,
                                                      const std::string& position) override;
  Status ApplyTransactions(const InstanceSpec& spec, const std::vector<std::string>& redo) override;
  std::chrono::milliseconds LogLookahead() const override { return std::chrono::milliseconds(1500); }
  Status ReleaseCapture(const InstanceSpec& spec) override;
  Endpoint GetEndpoint(const InstanceSpec& spec) const override;
  Result<std::unique_ptr<Session>> OpenSession(const InstanceSpec& spec, const std::string& database,
                                               const SessionLimits& limits) override;
};

}  // namespace strata::engine
