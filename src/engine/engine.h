// engine/: one adapter per database engine, found by name ("sqlite",
// "postgres"). An engine creates, runs and removes the database of an
// instance and runs SQL in it; the backup hooks (consistent file sources,
// change-log capture, restore) join this interface with snapshots.
// This header is the layer's public interface: each engine lives in its own
// folder (engine/sqlite/, engine/postgres/), and registry.cc is the one list
// of the engines this build knows.
//
// engine/ knows nothing of HTTP, the catalog or the repository format.
// Thread safety: Engine methods may be called from any thread for different
// instances; a Session belongs to one caller at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace strata::engine {

// What an engine needs to know of an instance. data_dir is the instance's own
// directory under the data dir; the engine owns everything inside it.
struct InstanceSpec {
  std::string id;
  std::string resource_id;
  std::filesystem::path data_dir;
  std::string db_name;
  std::string master_username;
  int port = 0;
  // What SealCredentials made of the master password (postgres: a SCRAM
  // verifier); the password itself never reaches the engine's storage.
  std::string engine_state;
};

struct Endpoint {
  std::string address;  // sqlite: the database file's absolute path
  int port = 0;         // 0: none (sqlite)
};

// A SQL value as the RDS Data API types them.
struct Blob {
  std::string bytes;
  bool operator==(const Blob&) const = default;
};
using Value = std::variant<std::monostate, bool, int64_t, double, std::string, Blob>;

struct Parameter {
  std::string name;  // bound as :name
  Value value;
};

struct Column {
  std::string name;
  std::string type_name;  // the declared type, or the value's storage class
  int type = 0;           // JDBC-style type code, as the Data API reports
  bool nullable = true;
};

struct StatementResult {
  std::vector<Column> columns;
  std::vector<std::vector<Value>> rows;
  int64_t rows_updated = 0;
  std::vector<Value> generated_fields;  // sqlite: the last inserted rowid after an INSERT
};

// What a Data API session may use, as the Data API bounds its calls.
struct SessionLimits {
  // Each Execute call ends with kDataStatementTimeout past this (the Data
  // API's own call timeout is 45 s).
  std::chrono::milliseconds statement_timeout{45000};
  // How long a writer waits for the instance's write lock (held by an open
  // transaction or another writer) before it is answered "busy".
  std::chrono::milliseconds lock_timeout{5000};
  // Writers queued per instance beyond the one holding the lock; more are
  // answered "busy" at once, so waiting writers never occupy every worker
  // (and the lock holder's own commit always finds one).
  size_t max_queued_writers = 4;
  // The Data API refuses results over 1 MiB: rows stop being built there.
  size_t max_result_bytes = size_t{1} << 20;
  // sqlite: the largest string or blob a statement may build
  // (SQLITE_LIMIT_LENGTH). SQLite materializes a result value whole before
  // it can be measured (zeroblob(400000000) would take 400 MB), so a value
  // is bounded where it is made: 16 times the largest result there is.
  int max_value_bytes = 16 << 20;
};

// The Data API's message for a result over SessionLimits::max_result_bytes.
inline constexpr const char* kResultTooLargeMessage =
    "Database returned more than the allowed response size limit";

// One connection into an instance's database.
class Session {
 public:
  virtual ~Session() = default;
  // SQL errors come back as kDataBadRequest with the engine's own message.
  virtual Result<StatementResult> Execute(const std::string& sql,
                                          const std::vector<Parameter>& params) = 0;
  virtual Status Begin() = 0;
  virtual Status Commit() = 0;
  virtual Status Rollback() = 0;
};

// One file of a consistent snapshot: read_at(offset, out) fills `out` from
// the snapshot's view of the file (short only at the end) and returns the
// bytes read. Valid while its SnapshotView lives.
struct FileSource {
  std::string path;  // relative to the instance's data dir
  uint64_t size = 0;
  uint32_t mode = 0600;
  std::function<Result<size_t>(uint64_t offset, std::span<std::byte> out)> read_at;
};

// A consistent, point-in-time view of an instance's files, held open (for
// sqlite: a read transaction) until destroyed. Writers are never blocked.
class SnapshotView {
 public:
  virtual ~SnapshotView() = default;
  virtual const std::vector<FileSource>& Files() const = 0;
  // The time the view was taken: every transaction committed before it is inside.
  virtual TimePoint DatabaseTime() const = 0;
  virtual uint32_t PageSize() const = 0;
  // Called once Files() have been read: ends the view and returns the files
  // whose contents are known only then (postgres: backup_label and the WAL
  // written while the files were copied). sqlite: none.
  virtual Result<std::vector<FileSource>> Complete() { return std::vector<FileSource>{}; }
};

// One committed transaction from an engine's log. commit_time is when Strata
// saw the commit: the capture wakes on every write to the log, so commits are
// stamped one by one, never batched to a polling interval.
struct CapturedTransaction {
  TimePoint commit_time{};
  std::string redo;  // engine-specific: what ApplyTransactions replays
};

// A byte range [offset, offset + length) of a file; length may run past the
// file's end (kToEnd: everything from offset on, whatever the size).
struct ByteRange {
  static constexpr uint64_t kToEnd = UINT64_MAX;
  uint64_t offset = 0;
  uint64_t length = 0;
};
// Byte ranges by file, the path relative to the instance's data dir.
using FileRanges = std::map<std::string, std::vector<ByteRange>>;

struct CaptureBatch {
  std::vector<CapturedTransaction> transactions;
  // Continuity with the previous position was lost before these transactions
  // (always true on the first batch of a capture started without a position):
  // commits may be missing, so the change log cannot bridge this point.
  bool gap = false;
  std::string gap_reason;
  // False when the batch stops short of what was committed before the call
  // (a backlog larger than one batch, or a server that cannot say where its
  // log ends right now): the next Poll continues, and only a complete batch
  // moves the restorable time.
  bool complete = true;
};

// Continuous capture of one instance's committed transactions. The engine
// keeps its own log from being reset until the capture has read it, and
// checkpoints it itself, so the log stays bounded. Poll: one thread at a time.
class ChangeCapture {
 public:
  virtual ~ChangeCapture() = default;
  // The transactions committed since the last call, each stamped with now.
  virtual Result<CaptureBatch> Poll() = 0;
  // Waits up to `wait` for a write to the log (or returns at once if one came
  // since the last call). Safe to call while another thread runs Poll.
  virtual void WaitForChange(std::chrono::milliseconds wait) = 0;
  // Where the capture stands after the last returned transaction, to resume
  // from after a restart (engine-specific text).
  virtual std::string Position() const = 0;
  // Everything up to `position` (an earlier Position()) is durable in the
  // repository: the engine may let go of its log up to there (postgres:
  // advances its replication slot). sqlite keeps no log for Strata.
  virtual void Durable(const std::string& position) { (void)position; }
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::string Name() const = 0;
  virtual std::string DefaultVersion() const = 0;
  // Versions CreateDBInstance accepts for EngineVersion.
  virtual bool SupportsVersion(const std::string& version) const = 0;
  // Whether an instance serves on a TCP port (which control allocates).
  virtual bool UsesPort() const { return false; }
  // Checks the master user name and turns the password into what the engine
  // keeps (InstanceSpec::engine_state); never the password itself.
  virtual Result<std::string> SealCredentials(const std::string& username, const std::string& password) const {
    (void)username;
    (void)password;
    return std::string();
  }

  // Creates the database in spec.data_dir. Idempotent: creating over a
  // complete earlier attempt succeeds, so a crash mid-create can be resumed.
  virtual Status Create(const InstanceSpec& spec) = 0;
  // Brings a created instance into service (sqlite: checks the file; postgres: starts the server).
  virtual Status Start(const InstanceSpec& spec) = 0;
  virtual Status Stop(const InstanceSpec& spec) = 0;
  // Gives the master user the password sealed in engine_state (from
  // SealCredentials) on a running instance.
  virtual Status SetMasterPassword(const InstanceSpec& spec, const std::string& engine_state) {
    (void)spec;
    (void)engine_state;
    return Status(errors::kInvalidParameterCombination, "this engine has no master password");
  }
  // Whether a started instance is still serving (postgres: its postmaster
  // lives); control restarts one that is not.
  virtual Status CheckRunning(const InstanceSpec& spec) {
    (void)spec;
    return Status::Ok();
  }
  // Stops and removes everything in spec.data_dir.
  virtual Status Destroy(const InstanceSpec& spec) = 0;

  // A consistent online view for a snapshot, taken at `now`.
  virtual Result<std::unique_ptr<SnapshotView>> OpenSnapshot(const InstanceSpec& spec,
                                                             TimePoint now) = 0;
  // Called after a snapshot's files (and, for a point-in-time restore, the
  // change log through ApplyTransactions) were restored into spec.data_dir (a
  // new instance's directory): makes them a runnable instance and checks
  // them. point_in_time: the restore's target, for engines that stop their
  // own replay there (postgres); sqlite's log was cut at the target already.
  virtual Status FinishRestore(const InstanceSpec& spec, std::optional<TimePoint> point_in_time) = 0;
  // Whether FinishRestore (or the replay before it) reads every restored
  // byte at once, as SQLite's quick_check does. If so, the files are
  // restored through the page cache so that read is warm; if not, they are
  // written around it, which is faster where filling the cache is slow.
  virtual bool ReadsRestoredFilesWhole() const { return true; }

  // Starts capturing committed transactions, resuming after `position` (from
  // an earlier capture's Position()) if it still continues; empty: from now.
  virtual Result<std::unique_ptr<ChangeCapture>> StartCapture(const InstanceSpec& spec, const Clock& clock,
                                                              const std::string& position) = 0;
  // Replays captured transactions, in order, onto files restored from a
  // snapshot into spec.data_dir (before FinishRestore). A transaction the
  // files already hold is replayed harmlessly: redo records are page images.
  virtual Status ApplyTransactions(const InstanceSpec& spec, const std::vector<std::string>& redo) = 0;
  // Where consecutive captured transactions (`redo`, in order, as
  // ApplyTransactions takes them) may have changed the instance's files: a
  // snapshot view that holds all of them differs from one that holds none
  // of them (and otherwise the same history) only inside these ranges, and
  // past the end of the older view's file. Each file named is covered (no
  // ranges: unchanged but for its size); files not named are unknown.
  // Answers for consecutive stretches of the log combine by union.
  // nullopt: the engine cannot tell (postgres), and snapshots read every
  // file whole. An error (a torn record) means the same to the caller.
  virtual Result<std::optional<FileRanges>> ChangedRanges(const std::vector<std::string>& redo) const {
    (void)redo;
    return std::optional<FileRanges>();
  }
  // How far past a restore's target the change log must be applied. Zero
  // when each captured transaction carries its own commit time (sqlite).
  // postgres stamps WAL with when Strata received it, a little after the
  // commits inside, and stops replay at the target itself.
  virtual std::chrono::milliseconds LogLookahead() const { return std::chrono::milliseconds(0); }
  // Automated backups were turned off: lets go of what capture held in the
  // instance (postgres: drops its replication slot, so WAL is not kept).
  virtual Status ReleaseCapture(const InstanceSpec& spec) {
    (void)spec;
    return Status::Ok();
  }

  virtual Endpoint GetEndpoint(const InstanceSpec& spec) const = 0;
  // A Data API session: SQL runs confined to the instance's own database
  // (sqlite: under an authorizer; see docs/api.md) and within `limits`.
  virtual Result<std::unique_ptr<Session>> OpenSession(const InstanceSpec& spec, const std::string& database,
                                                       const SessionLimits& limits) = 0;
};

// The engines this build knows, by name. nullptr if unknown.
Engine* FindEngine(const std::string& name);
// Tests only: makes `engine` (not owned; it must outlive its use) found by
// its Name(), beside the built-in ones.
void TEST_RegisterEngine(Engine* engine);
std::vector<std::string> EngineNames();

}  // namespace strata::engine
