// Private to control/: the ControlPlane's state, shared by its .cc files.
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <condition_variable>

#include "common/ids.h"
#include "common/log.h"
#include "common/task_pool.h"
#include "control/arn.h"
#include "control/backup_store.h"
#include "control/instance_capture.h"
#include "control/control.h"
#include "control/validation.h"

namespace strata::control {

namespace detail {

inline constexpr int kMaxTagsPerResource = 50;
inline constexpr auto kTransactionIdleTimeout = std::chrono::minutes(3);

// us-east-1's 8-hour block for default backup windows, as RDS documents it.
inline constexpr int kDefaultBackupBlockStart = 3 * 60;

inline Status InvalidValue(std::string msg) { return Status(errors::kInvalidParameterValue, std::move(msg)); }
inline Status InvalidCombination(std::string msg) {
  return Status(errors::kInvalidParameterCombination, std::move(msg));
}

inline engine::InstanceSpec SpecOf(const catalog::InstanceRecord& r) {
  engine::InstanceSpec spec;
  spec.id = r.id;
  spec.resource_id = r.resource_id;
  spec.data_dir = r.data_path;
  spec.db_name = r.db_name;
  spec.master_username = r.master_username;
  spec.port = r.port;
  spec.engine_state = r.engine_state;
  return spec;
}

struct Transaction {
  std::string instance_id;
  std::unique_ptr<engine::Session> session;
  std::mutex mu;  // one statement at a time per transaction, as a connection requires
  TimePoint last_used{};
};

}  // namespace detail

using namespace detail;

class ControlPlane::Impl {
 public:
  Config config;
  std::unique_ptr<catalog::Catalog> catalog;
  std::string account_id;
  std::unique_ptr<TaskPool> workers;
  std::unique_ptr<BackupStore> backups;

  std::mutex tx_mu;
  std::map<std::string, std::shared_ptr<Transaction>> transactions;

  TimePoint Now() const { return config.clock->Now(); }

  std::string InstanceArn(const std::string& id) const {
    return FormatArn(config.region, account_id, "db", id);
  }
  ArnOwner Owner() const { return {config.region, account_id}; }
  // An identifier as given, or the identifier inside this server's ARN of
  // `resource_type` (a foreign ARN is InvalidParameterValue).
  Result<std::string> IdFrom(const std::string& id_or_arn, std::string_view resource_type) const {
    if (id_or_arn.rfind("arn:", 0) != 0) return id_or_arn;
    ASSIGN_OR_RETURN(auto arn, ParseOwnArn(id_or_arn, Owner(), resource_type));
    return arn.resource_id;
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
    if (r.backup_retention_days > 0) {
      if (auto ab = catalog->GetAutomatedBackup(r.resource_id); ab.ok()) {
        if (auto w = WindowOf(*ab)) out.latest_restorable_time = w->latest;
      }
    }
    out.arn = InstanceArn(r.id);
    out.tags = catalog->ListTags(out.arn);
    out.backups_encrypted = config.backups_encrypted;
    if (auto* e = engine::FindEngine(r.engine)) out.endpoint = e->GetEndpoint(SpecOf(r));
    return out;
  }

  Status SetStatus(const std::string& id, InstanceStatus status, const std::string& reason = "") {
    return catalog->InTransaction([&]() -> Status {
      ASSIGN_OR_RETURN(auto r, catalog->GetInstance(id));
      r.status = status;
      r.status_reason = reason;
      return catalog->UpdateInstance(r);
    });
  }

  // Brings a record in `creating` to `available` (or `failed`).
  void FinishCreate(catalog::InstanceRecord r) {
    engine::Engine* e = engine::FindEngine(r.engine);
    Status st = e ? e->Create(SpecOf(r)) : Status(errors::kInternalFailure, "unknown engine " + r.engine);
    if (st.ok()) st = StartOnPickedPort(r, *e);
    if (!st.ok()) {
      log::Error("instance create failed", {{"instance", r.id}, {"error", st.ToString()}});
      (void)SetStatus(r.id, InstanceStatus::kFailed, st.message());
      Event("db-instance", r.id, InstanceArn(r.id), "DB instance creation failed: " + st.message(),
            {"failure"});
      return;
    }
    if (r.backup_retention_days > 0) {
      TakeFirstBackup(r);
    } else if (Status s2 = SetStatus(r.id, InstanceStatus::kAvailable); !s2.ok()) {
      log::Error("instance status update failed", {{"instance", r.id}, {"error", s2.ToString()}});
      return;
    }
    Event("db-instance", r.id, InstanceArn(r.id), "DB instance created", {"creation"});
    log::Info("instance available", {{"instance", r.id}});
  }

  void FinishDelete(const catalog::InstanceRecord& r) {
    engine::Engine* e = engine::FindEngine(r.engine);
    engine::InstanceSpec spec = SpecOf(r);
    // Capture ships what it holds while the database still exists.
    StopCapture(r.resource_id);
    Status st = Status::Ok();
    if (e) {
      st = e->Stop(spec);
      if (st.ok()) st = e->Destroy(spec);
    }
    if (!st.ok()) {
      log::Error("instance delete failed", {{"instance", r.id}, {"error", st.ToString()}});
      (void)SetStatus(r.id, InstanceStatus::kFailed, st.message());
      return;
    }
    std::string arn = InstanceArn(r.id);
    if (auto ab = catalog->GetAutomatedBackup(r.resource_id); ab.ok()) {
      if (ab->status == AutomatedBackupStatus::kRetained) {
        Event("db-instance", r.id, arn, "Automated backups retained after the DB instance was deleted", {"backup"});
      } else if (Status d = DeleteAutomatedBackups(r.resource_id); !d.ok()) {
        log::Warn("deleting automated backups failed", {{"instance", r.id}, {"error", d.ToString()}});
      }
    }
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
    auto arn = ParseOwnArn(resource_arn, Owner(), "db");
    if (!arn.ok()) return Status(errors::kDataBadRequest, std::string(arn.status().message()));
    auto r = catalog->GetInstance(arn->resource_id);
    if (!r.ok()) {
      return Status(errors::kDataNotFound,
                    fmt::format("Database instance {} not found.", arn->resource_id));
    }
    if (r->status != InstanceStatus::kAvailable && r->status != InstanceStatus::kBackingUp &&
        r->status != InstanceStatus::kModifying) {
      return Status(errors::kDataBadRequest,
                    fmt::format("Database instance {} is not available (status {}).", r->id,
                                ToString(r->status)));
    }
    return r;
  }

  Result<std::shared_ptr<Transaction>> FindTransaction(const std::string& resource_arn,
                                                       const std::string& id) {
    std::lock_guard lock(tx_mu);
    ReapIdleTransactionsLocked();
    auto it = transactions.find(id);
    auto arn = ParseOwnArn(resource_arn, Owner(), "db");
    if (it == transactions.end() || !arn.ok() || arn->resource_id != it->second->instance_id) {
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

  // The loopback port of a new instance of an engine that serves on one: the
  // one asked for if no other instance has it, else a free one.
  std::mutex port_mu;
  Result<int> AssignPort(std::optional<int> requested);
  // Starts r's server. A port that AssignPort picked (not one the caller
  // asked for) can be taken by another process before the server binds it:
  // then r moves to another port, a few times.
  Status StartOnPickedPort(catalog::InstanceRecord& r, engine::Engine& e);
  std::set<int> picked_ports;  // under port_mu
  // Restarts the server of an instance whose engine says it is not running.
  void Supervise(const catalog::InstanceRecord& r);

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

  // Snapshots (snapshots.cc).
  std::string SnapshotArn(const std::string& id) const {
    return FormatArn(config.region, account_id, "snapshot", id);
  }
  Snapshot ToSnapshot(const catalog::SnapshotRecord& r);
  // Takes the snapshot `snap` of instance `inst` (both already recorded as
  // creating / backing-up) and records the outcome. Returns the final status.
  Status RunSnapshot(const catalog::InstanceRecord& inst, catalog::SnapshotRecord snap);
  void FinishRestore(const catalog::InstanceRecord& r);
  void FinishDeleteWithFinalSnapshot(const catalog::InstanceRecord& r, const catalog::SnapshotRecord& snap);
  void RecoverSnapshots();
  int CountManualSnapshots();
  // Queues one garbage collection of the repository (coalesced while queued).
  void ScheduleGarbageCollection() {
    if (gc_queued.exchange(true)) return;
    workers->Submit([this] {
      gc_queued = false;
      Status st = backups->CollectGarbage();
      if (!st.ok()) log::Warn("garbage collection failed", {{"error", st.ToString()}});
    });
  }
  std::atomic<bool> gc_queued{false};
  // Queues one compaction of the stream's log segments that end before
  // `before` (coalesced per stream while queued).
  void ScheduleLogCompaction(const std::string& stream, TimePoint before) {
    {
      std::lock_guard lock(compaction_mu);
      if (!compactions_queued.insert(stream).second) return;
    }
    workers->Submit([this, stream, before] {
      {
        std::lock_guard lock(compaction_mu);
        compactions_queued.erase(stream);
      }
      // In the background of a database under write load (compaction
      // follows the load): at the lowest CPU priority, so the writers and
      // the capture that keep up with them come first.
      Result<LogCompaction> done = Status(errors::kInternalFailure, "not run");
      RunAtBackgroundPriority([&] { done = backups->CompactLog(stream, before); });
      if (!done.ok()) {
        log::Warn("change-log compaction failed", {{"resource", stream}, {"error", done.status().ToString()}});
      } else if (done->segments_written > 0) {
        log::Info("change-log segments merged",
                  {{"resource", stream},
                   {"merged", static_cast<int64_t>(done->segments_merged)},
                   {"written", static_cast<int64_t>(done->segments_written)},
                   {"bytes_before", done->bytes_before},
                   {"bytes_after", done->bytes_after}});
      }
      // A long backlog is merged over several bounded passes, one after another.
      if (done.ok() && done->more && !disk_paused) ScheduleLogCompaction(stream, before);
    });
  }
  std::mutex compaction_mu;
  std::set<std::string> compactions_queued;
  // PercentProgress of the snapshots being created, by snapshot id. Held
  // here, not in the catalog: every catalog commit is an fsync, and it lands
  // on the disk of the database being snapshotted while its writers wait on
  // theirs. After a crash a creating snapshot completes or fails whatever its
  // progress was, so nothing durable is lost.
  std::mutex progress_mu;
  std::map<std::string, int> snapshot_progress;
  // Automated backups and point-in-time restore (automated_backups.cc).
  std::mutex capture_mu;
  std::map<std::string, std::shared_ptr<InstanceCapture>> captures;  // by DbiResourceId
  std::mutex tick_mu;  // one scheduling pass at a time
  std::thread scheduler;
  std::mutex scheduler_mu;
  std::condition_variable scheduler_cv;
  bool scheduler_stop = false;

  std::shared_ptr<InstanceCapture> CaptureOf(const std::string& resource_id) {
    std::lock_guard lock(capture_mu);
    auto it = captures.find(resource_id);
    return it == captures.end() ? nullptr : it->second;
  }
  // Starts change-log capture for an instance with backups on (idempotent).
  Status EnsureCapture(const catalog::InstanceRecord& r);
  // Stops it, shipping what it holds.
  void StopCapture(const std::string& resource_id);
  // After a Data API commit: numbers and stamps it before the caller hears back.
  void CatchUpCapture(const catalog::InstanceRecord& r) {
    if (auto c = CaptureOf(r.resource_id)) (void)c->CatchUp();
  }
  // The disk below its low-water mark (disk_space.h): automatic work that
  // grows files waits, work a caller asks for is refused, deletes go on.
  // Set by the scheduler's pass (WatchDisk), which says so in events.
  std::atomic<bool> disk_paused{false};
  // Restores found under way at start while the disk was low: resumed when
  // space returns, not on start, where they would take what the operator
  // freed for deletes.
  std::mutex deferred_mu;
  std::vector<catalog::InstanceRecord> deferred_restores;
  void WatchDisk();
  Status RefuseIfDiskLow(const ErrorCode& code, std::string_view work) {
    return config.disk ? config.disk->RefuseIfLow(code, work) : Status::Ok();
  }
  // Before catalog writes that must work on a full disk (deletes).
  void MakeRoom(std::string_view why) {
    if (config.disk) (void)config.disk->MakeRoom(why);
  }
  // One pass of the scheduler: captures, daily automated snapshots, retention.
  void Tick();
  void StartScheduler();
  void StopScheduler();
  void StopAllCaptures();
  // Deletes every automated snapshot and log segment of a DbiResourceId, and its record.
  Status DeleteAutomatedBackups(const std::string& resource_id);
  void StartAutomatedSnapshot(const catalog::InstanceRecord& r);
  // Records an automated snapshot of `r` as creating and the instance, which
  // must be in `from_status`, as backing-up, in one commit.
  Result<std::pair<catalog::InstanceRecord, catalog::SnapshotRecord>> BeginAutomatedSnapshot(
      const catalog::InstanceRecord& r, InstanceStatus from_status);
  // A new or restored instance (still `creating`) with backups on: its first
  // automated snapshot, with capture running and the restorable time
  // recorded, before it is reported available, as RDS does. Ends with the
  // instance available whether the backup worked or not (the scheduler
  // tries again); on a low disk it leaves the backup to the scheduler.
  void TakeFirstBackup(const catalog::InstanceRecord& r);
  void ApplyRetention(const catalog::AutomatedBackupRecord& ab);
  struct RestoreWindow {
    TimePoint earliest{}, latest{};
  };
  std::optional<RestoreWindow> WindowOf(const catalog::AutomatedBackupRecord& ab);
  // For snapshot `snap` of `inst`, its log marks just read: the newest
  // earlier snapshot of the instance that the change log connects it to,
  // and the file ranges the log says changed since (engine.ChangedRanges
  // over transactions parent.log_seq_before+1 .. snap.log_seq_after). A
  // full snapshot ({}) whenever that cannot be shown: see the .cc.
  IncrementalBase IncrementalBaseFor(const catalog::InstanceRecord& inst, const catalog::SnapshotRecord& snap,
                                     const engine::Engine& eng, InstanceCapture& capture,
                                     const std::vector<engine::FileSource>& files);
  // The rest of a point-in-time restore after the base snapshot's files are in place.
  Status ReplayChangeLog(const catalog::InstanceRecord& r, const std::string& resource_id, int64_t seq_before,
                         TimePoint base_time_before, TimePoint target);
  std::string AutomatedBackupArn(const std::string& resource_id) const;
  // Turns automated backups on (capture starts with the next pass) or off (all deleted).
  void OnRetentionChanged(const catalog::InstanceRecord& r);
  // For a point-in-time restore: replays the log onto the restored base (no-op otherwise).
  // Returns the restore's target time (nullopt for a restore from a snapshot).
  Result<std::optional<TimePoint>> FinishPointInTime(const catalog::InstanceRecord& r);

  // A new instance record (creating) from a snapshot's settings and the request's overrides.
  Result<catalog::InstanceRecord> RestoredInstance(const catalog::SnapshotRecord& snap,
                                                   const RestoreFromSnapshotRequest& req);
  // A snapshot record in `creating` for instance `inst`, not yet stored.
  catalog::SnapshotRecord NewSnapshotRecord(const catalog::InstanceRecord& inst,
                                            const std::string& id, SnapshotType type);
};


}  // namespace strata::control
