// Private to control/: what the resource modules share, and nothing else.
// The façade (control.cc) owns it and the modules; each module holds a
// reference to it and calls other modules only through their headers.
//
// Thread safety: the pointed-to services are thread-safe; the fields are set
// once, before any module runs.
#pragma once

#include <atomic>
#include <string>
#include <string_view>
#include <vector>

#include "catalog/catalog.h"
#include "common/error_codes.h"
#include "common/log.h"
#include "common/task_pool.h"
#include "control/arn.h"
#include "control/backup_store.h"
#include "control/control.h"
#include "control/validation.h"
#include "scheduler/scheduler.h"
#include "scheduler/work_queue.h"

namespace strata::control {

inline constexpr int kMaxTagsPerResource = 50;

inline Status InvalidValue(std::string msg) {
  return Status(errors::kInvalidParameterValue, std::move(msg));
}
inline Status InvalidCombination(std::string msg) {
  return Status(errors::kInvalidParameterCombination, std::move(msg));
}
// A request's list filter: empty matches everything.
bool Matches(const std::vector<std::string>& any_of, std::string_view v);
engine::InstanceSpec SpecOf(const catalog::InstanceRecord& r);
// For a Status that cannot be returned (background work, best-effort
// bookkeeping): a failure is logged as a warning, with what was being done
// and to which resource.
void WarnIfFailed(const Status& st, std::string_view doing, const std::string& resource);

struct Context {
  Config config;
  std::string account_id;
  catalog::Catalog* catalog = nullptr;
  BackupStore* backups = nullptr;
  TaskPool* workers = nullptr;                // long work: creates, deletes, snapshots, restores
  scheduler::Scheduler* scheduler = nullptr;  // Notify: something may be due now
  scheduler::WorkQueue* queue = nullptr;      // coalescing background work (GC, log compaction)
  // The disk below its low-water mark (disk_space.h): automatic work that
  // grows files waits, work a caller asks for is refused, deletes go on.
  // Set by the disk watch (disk_watch.h), which says so in events.
  std::atomic<bool> disk_paused{false};

  TimePoint Now() const { return config.clock->Now(); }

  ArnOwner Owner() const { return {config.region, account_id}; }
  std::string InstanceArn(const std::string& id) const {
    return FormatArn(config.region, account_id, "db", id);
  }
  std::string SnapshotArn(const std::string& id) const {
    return FormatArn(config.region, account_id, "snapshot", id);
  }
  std::string AutomatedBackupArn(const std::string& resource_id) const;
  // An identifier as given, or the identifier inside this server's ARN of
  // `resource_type` (a foreign ARN is InvalidParameterValue).
  Result<std::string> IdFrom(const std::string& id_or_arn, std::string_view resource_type) const;

  // Records an RDS event (logged, not returned, if the catalog refuses it).
  void Event(const std::string& source_type, const std::string& id, const std::string& arn,
             const std::string& message, std::vector<std::string> categories);
  // A new instance record's identity: creating now, with a new DbiResourceId
  // and its data directory.
  void StartInstanceRecord(catalog::InstanceRecord& r) const;
  Status SetStatus(const std::string& id, InstanceStatus status,
                   const std::string& reason = "");
  // SetStatus for where the caller cannot return the Status: logged.
  void SetStatusOrLog(const std::string& id, InstanceStatus status,
                      const std::string& reason = "");

  Status RefuseIfDiskLow(const ErrorCode& code, std::string_view work) {
    return config.disk ? config.disk->RefuseIfLow(code, work) : Status::Ok();
  }
  // Before catalog writes that must work on a full disk (deletes).
  void MakeRoom(std::string_view why);
  // Queues one garbage collection of the repository (coalesced while queued).
  void ScheduleGarbageCollection();
};

}  // namespace strata::control
