#include "catalog/catalog.h"

#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "catalog/migrations.h"
#include "common/log.h"
#include "common/sqlite.h"

namespace strata::catalog {

class Catalog::Impl {
 public:
  sqlite::Db db;
  std::recursive_mutex mu;
  int tx_depth = 0;
  std::function<bool()> make_room;
};

namespace {

// A state name in a row that this build does not know: the catalog is from a
// newer Strata or damaged; the row is refused rather than guessed at.
template <typename E>
Result<E> StateFromRow(Result<E> parsed, std::string_view table, const std::string& id) {
  if (parsed.ok()) return parsed;
  return Status(errors::kInternalFailure,
                fmt::format("catalog {} row {}: {}", table, id, parsed.status().message()));
}

constexpr const char* kInstanceColumns =
    "id, resource_id, engine, engine_version, status, instance_class, allocated_storage, db_name, "
    "master_username, port, create_time, backup_retention, backup_window, maintenance_window, "
    "deletion_protection, copy_tags_to_snapshot, pending_backup_retention, data_path, "
    "status_reason, engine_state, restore_snapshot, restore_log_resource_id, restore_seq_before, "
    "restore_time_before, restore_target_time";

void BindInstance(sqlite::Stmt& s, const InstanceRecord& r) {
  s.Bind(1, r.id)
      .Bind(2, r.resource_id)
      .Bind(3, r.engine)
      .Bind(4, r.engine_version)
      .Bind(5, ToString(r.status))
      .Bind(6, r.instance_class)
      .Bind(7, r.allocated_storage_gib)
      .Bind(8, r.db_name)
      .Bind(9, r.master_username)
      .Bind(10, r.port)
      .Bind(11, static_cast<int64_t>(r.create_time.time_since_epoch().count()))
      .Bind(12, r.backup_retention_days)
      .Bind(13, r.backup_window)
      .Bind(14, r.maintenance_window)
      .Bind(15, r.deletion_protection)
      .Bind(16, r.copy_tags_to_snapshot)
      .Bind(17, r.pending_backup_retention_days)
      .Bind(18, r.data_path)
      .Bind(19, r.status_reason)
      .Bind(20, r.engine_state)
      .Bind(21, r.restore_snapshot);
  if (r.restore_replay) {
    s.Bind(22, r.restore_replay->resource_id)
        .Bind(23, r.restore_replay->seq_before)
        .Bind(24, static_cast<int64_t>(r.restore_replay->time_before.time_since_epoch().count()))
        .Bind(25, static_cast<int64_t>(r.restore_replay->target.time_since_epoch().count()));
  } else {
    s.Bind(22, "").Bind(23, int64_t{0}).Bind(24, int64_t{0}).BindNull(25);
  }
}

Result<InstanceRecord> ReadInstance(const sqlite::Stmt& s) {
  InstanceRecord r;
  r.id = s.Text(0);
  r.resource_id = s.Text(1);
  r.engine = s.Text(2);
  r.engine_version = s.Text(3);
  ASSIGN_OR_RETURN(r.status, StateFromRow(ParseInstanceStatus(s.Text(4)), "instances", r.id));
  r.instance_class = s.Text(5);
  r.allocated_storage_gib = static_cast<int>(s.Int(6));
  r.db_name = s.Text(7);
  r.master_username = s.Text(8);
  r.port = static_cast<int>(s.Int(9));
  r.create_time = TimePoint(std::chrono::microseconds(s.Int(10)));
  r.backup_retention_days = static_cast<int>(s.Int(11));
  r.backup_window = s.Text(12);
  r.maintenance_window = s.Text(13);
  r.deletion_protection = s.Int(14) != 0;
  r.copy_tags_to_snapshot = s.Int(15) != 0;
  if (!s.IsNull(16)) r.pending_backup_retention_days = static_cast<int>(s.Int(16));
  r.data_path = s.Text(17);
  r.status_reason = s.Text(18);
  r.engine_state = s.Text(19);
  r.restore_snapshot = s.Text(20);
  if (!s.IsNull(24)) {  // restore_target_time: set only for a point-in-time restore
    r.restore_replay = PointInTimeReplay{s.Text(21), s.Int(22), TimePoint(std::chrono::microseconds(s.Int(23))),
                                         TimePoint(std::chrono::microseconds(s.Int(24)))};
  }
  return r;
}

constexpr const char* kSnapshotColumns =
    "id, instance_id, instance_resource_id, snapshot_type, status, percent_progress, engine, "
    "engine_version, allocated_storage, port, db_name, master_username, instance_class, "
    "create_time, original_create_time, instance_create_time, database_time, repo_snapshot_id, "
    "source_snapshot_id, logical_bytes, stored_bytes, status_reason, backup_retention, "
    "backup_window, log_seq_before, log_seq_after, log_time_before, log_time_after";

int64_t Micros(TimePoint t) { return t.time_since_epoch().count(); }
TimePoint FromMicros(int64_t m) { return TimePoint(std::chrono::microseconds(m)); }

void BindSnapshot(sqlite::Stmt& s, const SnapshotRecord& r) {
  s.Bind(1, r.id)
      .Bind(2, r.instance_id)
      .Bind(3, r.instance_resource_id)
      .Bind(4, ToString(r.snapshot_type))
      .Bind(5, ToString(r.status))
      .Bind(6, r.percent_progress)
      .Bind(7, r.engine)
      .Bind(8, r.engine_version)
      .Bind(9, r.allocated_storage_gib)
      .Bind(10, r.port)
      .Bind(11, r.db_name)
      .Bind(12, r.master_username)
      .Bind(13, r.instance_class)
      .Bind(14, Micros(r.create_time))
      .Bind(15, Micros(r.original_create_time))
      .Bind(16, Micros(r.instance_create_time))
      .Bind(17, Micros(r.database_time))
      .Bind(18, r.repo_snapshot_id)
      .Bind(19, r.source_snapshot_id)
      .Bind(20, r.logical_bytes)
      .Bind(21, r.stored_bytes)
      .Bind(22, r.status_reason)
      .Bind(23, r.backup_retention_days)
      .Bind(24, r.backup_window)
      .Bind(25, r.log_seq_before)
      .Bind(26, r.log_seq_after)
      .Bind(27, Micros(r.log_time_before))
      .Bind(28, Micros(r.log_time_after));
}

Result<SnapshotRecord> ReadSnapshot(const sqlite::Stmt& s) {
  SnapshotRecord r;
  r.id = s.Text(0);
  r.instance_id = s.Text(1);
  r.instance_resource_id = s.Text(2);
  ASSIGN_OR_RETURN(r.snapshot_type, StateFromRow(ParseSnapshotType(s.Text(3)), "snapshots", r.id));
  ASSIGN_OR_RETURN(r.status, StateFromRow(ParseSnapshotStatus(s.Text(4)), "snapshots", r.id));
  r.percent_progress = static_cast<int>(s.Int(5));
  r.engine = s.Text(6);
  r.engine_version = s.Text(7);
  r.allocated_storage_gib = static_cast<int>(s.Int(8));
  r.port = static_cast<int>(s.Int(9));
  r.db_name = s.Text(10);
  r.master_username = s.Text(11);
  r.instance_class = s.Text(12);
  r.create_time = FromMicros(s.Int(13));
  r.original_create_time = FromMicros(s.Int(14));
  r.instance_create_time = FromMicros(s.Int(15));
  r.database_time = FromMicros(s.Int(16));
  r.repo_snapshot_id = s.Text(17);
  r.source_snapshot_id = s.Text(18);
  r.logical_bytes = s.Int(19);
  r.stored_bytes = s.Int(20);
  r.status_reason = s.Text(21);
  r.backup_retention_days = static_cast<int>(s.Int(22));
  r.backup_window = s.Text(23);
  r.log_seq_before = s.Int(24);
  r.log_seq_after = s.Int(25);
  r.log_time_before = FromMicros(s.Int(26));
  r.log_time_after = FromMicros(s.Int(27));
  return r;
}

// Lists skip a row they cannot read, and say so in the log.
template <typename T>
void AppendReadable(std::vector<T>& out, Result<T> row) {
  if (row.ok()) {
    out.push_back(std::move(row).value());
  } else {
    log::Error("catalog row unreadable", {{"error", row.status().ToString()}});
  }
}

std::string JoinCategories(const std::vector<std::string>& c) {
  std::string out;
  for (const auto& s : c) {
    if (!out.empty()) out += ",";
    out += s;
  }
  return out;
}

std::vector<std::string> SplitCategories(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) out.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

}  // namespace

Catalog::Catalog(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Catalog::~Catalog() = default;

Result<std::unique_ptr<Catalog>> Catalog::Open(const std::filesystem::path& file) {
  auto impl = std::make_unique<Impl>();
  ASSIGN_OR_RETURN(impl->db, sqlite::Db::Open(file.string()));
  // Exclusive locking before WAL mode: the WAL index lives in this process's
  // heap, not in a mmapped catalog.db-shm. On a full disk SQLite extends a
  // -shm file by writing one byte per 4 KiB page, which on a file system
  // with 1 KiB blocks leaves holes that the first touch of the mapping then
  // cannot fill: SIGBUS at start. Only stratad opens the catalog, and only
  // one stratad a data dir (stratad.lock), so nothing needs the lock shared.
  RETURN_IF_ERROR(impl->db.Exec("PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; "
                                "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"));
  RETURN_IF_ERROR(Migrate(impl->db));
  return std::unique_ptr<Catalog>(new Catalog(std::move(impl)));
}

int Catalog::SchemaVersion() const {
  std::lock_guard lock(impl_->mu);
  return CurrentSchemaVersion(impl_->db);
}

void Catalog::SetNoSpaceHandler(std::function<bool()> make_room) {
  std::lock_guard lock(impl_->mu);
  impl_->make_room = std::move(make_room);
}

Status Catalog::InTransaction(const std::function<Status()>& fn) {
  std::lock_guard lock(impl_->mu);
  if (impl_->tx_depth > 0) {
    ++impl_->tx_depth;
    Status st = fn();
    --impl_->tx_depth;
    return st;
  }
  auto attempt = [&]() -> Status {
    RETURN_IF_ERROR(impl_->db.Exec("BEGIN IMMEDIATE"));
    impl_->tx_depth = 1;
    Status st = fn();
    impl_->tx_depth = 0;
    if (!st.ok()) {
      (void)impl_->db.Exec("ROLLBACK");
      return st;
    }
    Status commit = impl_->db.Exec("COMMIT");
    if (!commit.ok()) (void)impl_->db.Exec("ROLLBACK");
    return commit;
  };
  Status st = attempt();
  if (st.Is(errors::kNoSpace) && impl_->make_room && impl_->make_room()) st = attempt();
  return st;
}

Status Catalog::InsertInstance(const InstanceRecord& r) {
  return InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto check, impl_->db.Prepare("SELECT 1 FROM instances WHERE id = ?"));
    check.Bind(1, r.id);
    ASSIGN_OR_RETURN(bool exists, check.Step());
    if (exists) {
      return Status(errors::kDBInstanceAlreadyExists,
                    fmt::format("DB instance already exists: {}", r.id));
    }
    ASSIGN_OR_RETURN(auto s, impl_->db.Prepare(fmt::format(
                                 "INSERT INTO instances ({}) VALUES "
                                 "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                 kInstanceColumns)));
    BindInstance(s, r);
    return s.Run();
  });
}

Status Catalog::UpdateInstance(const InstanceRecord& r) {
  std::lock_guard lock(impl_->mu);
  ASSIGN_OR_RETURN(auto s, impl_->db.Prepare(
                               "UPDATE instances SET resource_id=?2, engine=?3, engine_version=?4, "
                               "status=?5, instance_class=?6, allocated_storage=?7, db_name=?8, "
                               "master_username=?9, port=?10, create_time=?11, "
                               "backup_retention=?12, backup_window=?13, maintenance_window=?14, "
                               "deletion_protection=?15, copy_tags_to_snapshot=?16, "
                               "pending_backup_retention=?17, data_path=?18, status_reason=?19, "
                               "engine_state=?20, restore_snapshot=?21, "
                               "restore_log_resource_id=?22, restore_seq_before=?23, "
                               "restore_time_before=?24, restore_target_time=?25 WHERE id=?1"));
  BindInstance(s, r);
  RETURN_IF_ERROR(s.Run());
  if (sqlite3_changes(impl_->db.get()) == 0) {
    return Status(errors::kDBInstanceNotFound, fmt::format("DBInstance {} not found.", r.id));
  }
  return Status::Ok();
}

Status Catalog::DeleteInstance(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  ASSIGN_OR_RETURN(auto s, impl_->db.Prepare("DELETE FROM instances WHERE id = ?"));
  s.Bind(1, id);
  return s.Run();
}

Status Catalog::RenameInstance(const std::string& old_id, const std::string& new_id, const std::string& old_arn,
                               const std::string& new_arn) {
  std::lock_guard lock(impl_->mu);
  {
    ASSIGN_OR_RETURN(auto taken, impl_->db.Prepare("SELECT 1 FROM instances WHERE id = ?"));
    taken.Bind(1, new_id);
    ASSIGN_OR_RETURN(bool row, taken.Step());
    if (row) return Status(errors::kDBInstanceAlreadyExists, fmt::format("DB instance {} already exists.", new_id));
  }
  const std::pair<const char*, std::pair<const std::string*, const std::string*>> updates[] = {
      {"UPDATE instances SET id = ?1 WHERE id = ?2", {&new_id, &old_id}},
      {"UPDATE automated_backups SET instance_id = ?1 WHERE instance_id = ?2", {&new_id, &old_id}},
      {"UPDATE tags SET arn = ?1 WHERE arn = ?2", {&new_arn, &old_arn}},
  };
  for (const auto& [sql, values] : updates) {
    ASSIGN_OR_RETURN(auto s, impl_->db.Prepare(sql));
    s.Bind(1, *values.first).Bind(2, *values.second);
    RETURN_IF_ERROR(s.Run());
  }
  return Status::Ok();
}

Result<InstanceRecord> Catalog::GetInstance(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  ASSIGN_OR_RETURN(auto s, impl_->db.Prepare(
                               fmt::format("SELECT {} FROM instances WHERE id = ?", kInstanceColumns)));
  s.Bind(1, id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return Status(errors::kDBInstanceNotFound, fmt::format("DBInstance {} not found.", id));
  return ReadInstance(s);
}

std::optional<InstanceRecord> Catalog::FindInstanceByResourceId(const std::string& resource_id) {
  std::lock_guard lock(impl_->mu);
  auto s = impl_->db.Prepare(
      fmt::format("SELECT {} FROM instances WHERE resource_id = ?", kInstanceColumns));
  if (!s.ok()) return std::nullopt;
  s->Bind(1, resource_id);
  auto row = s->Step();
  if (!row.ok() || !*row) return std::nullopt;
  auto r = ReadInstance(*s);
  if (!r.ok()) {
    log::Error("catalog row unreadable", {{"error", r.status().ToString()}});
    return std::nullopt;
  }
  return std::move(r).value();
}

std::vector<InstanceRecord> Catalog::ListInstances() {
  std::lock_guard lock(impl_->mu);
  std::vector<InstanceRecord> out;
  auto s = impl_->db.Prepare(fmt::format("SELECT {} FROM instances ORDER BY id", kInstanceColumns));
  if (!s.ok()) return out;
  for (;;) {
    auto row = s->Step();
    if (!row.ok() || !*row) break;
    AppendReadable(out, ReadInstance(*s));
  }
  return out;
}

Status Catalog::InsertSnapshot(const SnapshotRecord& r) {
  return InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto check, impl_->db.Prepare("SELECT 1 FROM snapshots WHERE id = ?"));
    check.Bind(1, r.id);
    ASSIGN_OR_RETURN(bool exists, check.Step());
    if (exists) {
      return Status(errors::kDBSnapshotAlreadyExists,
                    fmt::format("Cannot create the snapshot because a snapshot with the identifier "
                                "{} already exists.",
                                r.id));
    }
    ASSIGN_OR_RETURN(auto s, impl_->db.Prepare(fmt::format(
                                 "INSERT INTO snapshots ({}) VALUES "
                                 "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                 kSnapshotColumns)));
    BindSnapshot(s, r);
    return s.Run();
  });
}

Status Catalog::UpdateSnapshot(const SnapshotRecord& r) {
  std::lock_guard lock(impl_->mu);
  ASSIGN_OR_RETURN(auto s, impl_->db.Prepare(
                               "UPDATE snapshots SET instance_id=?2, instance_resource_id=?3, "
                               "snapshot_type=?4, status=?5, percent_progress=?6, engine=?7, "
                               "engine_version=?8, allocated_storage=?9, port=?10, db_name=?11, "
                               "master_username=?12, instance_class=?13, create_time=?14, "
                               "original_create_time=?15, instance_create_time=?16, "
                               "database_time=?17, repo_snapshot_id=?18, source_snapshot_id=?19, "
                               "logical_bytes=?20, stored_bytes=?21, status_reason=?22, "
                               "backup_retention=?23, backup_window=?24, log_seq_before=?25, "
                               "log_seq_after=?26, log_time_before=?27, log_time_after=?28 WHERE id=?1"));
  BindSnapshot(s, r);
  RETURN_IF_ERROR(s.Run());
  if (sqlite3_changes(impl_->db.get()) == 0) {
    return Status(errors::kDBSnapshotNotFound, fmt::format("DBSnapshot {} not found.", r.id));
  }
  return Status::Ok();
}

Status Catalog::DeleteSnapshot(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  ASSIGN_OR_RETURN(auto s, impl_->db.Prepare("DELETE FROM snapshots WHERE id = ?"));
  s.Bind(1, id);
  return s.Run();
}

Result<SnapshotRecord> Catalog::GetSnapshot(const std::string& id) {
  std::lock_guard lock(impl_->mu);
  ASSIGN_OR_RETURN(auto s, impl_->db.Prepare(
                               fmt::format("SELECT {} FROM snapshots WHERE id = ?", kSnapshotColumns)));
  s.Bind(1, id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return Status(errors::kDBSnapshotNotFound, fmt::format("DBSnapshot {} not found.", id));
  return ReadSnapshot(s);
}

std::vector<SnapshotRecord> Catalog::ListSnapshots() {
  std::lock_guard lock(impl_->mu);
  std::vector<SnapshotRecord> out;
  auto s = impl_->db.Prepare(fmt::format("SELECT {} FROM snapshots ORDER BY id", kSnapshotColumns));
  if (!s.ok()) return out;
  for (;;) {
    auto row = s->Step();
    if (!row.ok() || !*row) break;
    AppendReadable(out, ReadSnapshot(*s));
  }
  return out;
}

Status Catalog::SetTags(const std::string& arn, const std::vector<Tag>& tags) {
  return InTransaction([&]() -> Status {
    for (const auto& t : tags) {
      ASSIGN_OR_RETURN(auto s, impl_->db.Prepare(
                                   "INSERT INTO tags (arn, key, value) VALUES (?, ?, ?) "
                                   "ON CONFLICT(arn, key) DO UPDATE SET value = excluded.value"));
      s.Bind(1, arn).Bind(2, t.key).Bind(3, t.value);
      RETURN_IF_ERROR(s.Run());
    }
    return Status::Ok();
  });
}

Status Catalog::RemoveTags(const std::string& arn, const std::vector<std::string>& keys) {
  return InTransaction([&]() -> Status {
    for (const auto& k : keys) {
      ASSIGN_OR_RETURN(auto s, impl_->db.Prepare("DELETE FROM tags WHERE arn = ? AND key = ?"));
      s.Bind(1, arn).Bind(2, k);
      RETURN_IF_ERROR(s.Run());
    }
    return Status::Ok();
  });
}

std::vector<Tag> Catalog::ListTags(const std::string& arn) {
  std::lock_guard lock(impl_->mu);
  std::vector<Tag> out;
  auto s = impl_->db.Prepare("SELECT key, value FROM tags WHERE arn = ? ORDER BY rowid");
  if (!s.ok()) return out;
  s->Bind(1, arn);
  for (;;) {
    auto row = s->Step();
    if (!row.ok() || !*row) break;
    out.push_back({s->Text(0), s->Text(1)});
  }
  return out;
}

Status Catalog::DeleteAllTags(const std::string& arn) {
  std::lock_guard lock(impl_->mu);
  ASSIGN_OR_RETURN(auto s, impl_->db.Prepare("DELETE FROM tags WHERE arn = ?"));
  s.Bind(1, arn);
  return s.Run();
}

Status Catalog::AddEvent(const EventRecord& e) {
  return InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto s, impl_->db.Prepare(
                                 "INSERT INTO events (time, source_type, source_id, source_arn, "
                                 "message, categories) VALUES (?, ?, ?, ?, ?, ?)"));
    s.Bind(1, static_cast<int64_t>(e.time.time_since_epoch().count()))
        .Bind(2, e.source_type)
        .Bind(3, e.source_id)
        .Bind(4, e.source_arn)
        .Bind(5, e.message)
        .Bind(6, JoinCategories(e.categories));
    return s.Run();
  });
}

std::vector<EventRecord> Catalog::ListEvents(const EventQuery& q) {
  std::lock_guard lock(impl_->mu);
  std::vector<EventRecord> out;
  auto s = impl_->db.Prepare(
      "SELECT seq, time, source_type, source_id, source_arn, message, categories FROM events "
      "WHERE time >= ?1 AND time <= ?2 AND (?3 IS NULL OR source_type = ?3) "
      "AND (?4 IS NULL OR source_id = ?4) ORDER BY seq");
  if (!s.ok()) return out;
  s->Bind(1, static_cast<int64_t>(q.start.time_since_epoch().count()))
      .Bind(2, static_cast<int64_t>(q.end.time_since_epoch().count()));
  if (q.source_type) s->Bind(3, *q.source_type); else s->BindNull(3);
  if (q.source_id) s->Bind(4, *q.source_id); else s->BindNull(4);
  for (;;) {
    auto row = s->Step();
    if (!row.ok() || !*row) break;
    EventRecord e;
    e.seq = s->Int(0);
    e.time = TimePoint(std::chrono::microseconds(s->Int(1)));
    e.source_type = s->Text(2);
    e.source_id = s->Text(3);
    e.source_arn = s->Text(4);
    e.message = s->Text(5);
    e.categories = SplitCategories(s->Text(6));
    if (!q.categories.empty()) {
      bool match = false;
      for (const auto& c : q.categories)
        for (const auto& have : e.categories) match = match || c == have;
      if (!match) continue;
    }
    out.push_back(std::move(e));
  }
  return out;
}

Status Catalog::DeleteEventsBefore(TimePoint t) {
  std::lock_guard lock(impl_->mu);
  ASSIGN_OR_RETURN(auto s, impl_->db.Prepare("DELETE FROM events WHERE time < ?"));
  s.Bind(1, static_cast<int64_t>(t.time_since_epoch().count()));
  return s.Run();
}

std::optional<std::string> Catalog::GetSetting(const std::string& key) {
  std::lock_guard lock(impl_->mu);
  auto s = impl_->db.Prepare("SELECT value FROM settings WHERE key = ?");
  if (!s.ok()) return std::nullopt;
  s->Bind(1, key);
  auto row = s->Step();
  if (!row.ok() || !*row) return std::nullopt;
  return s->Text(0);
}

Status Catalog::PutSetting(const std::string& key, const std::string& value) {
  std::lock_guard lock(impl_->mu);
  ASSIGN_OR_RETURN(auto s, impl_->db.Prepare(
                               "INSERT INTO settings (key, value) VALUES (?, ?) "
                               "ON CONFLICT(key) DO UPDATE SET value = excluded.value"));
  s.Bind(1, key).Bind(2, value);
  return s.Run();
}

}  // namespace strata::catalog

namespace strata::catalog {
namespace {

nlohmann::json AutomatedBackupBody(const AutomatedBackupRecord& r) {
  nlohmann::json gaps = nlohmann::json::array();
  for (const auto& g : r.gaps) {
    gaps.push_back({{"from", Micros(g.from)}, {"to", Micros(g.to)}, {"breaks", g.breaks}, {"reason", g.reason}});
  }
  return {{"retention_days", r.retention_days},
          {"backup_window", r.backup_window},
          {"engine", r.engine},
          {"engine_version", r.engine_version},
          {"instance_class", r.instance_class},
          {"db_name", r.db_name},
          {"master_username", r.master_username},
          {"port", r.port},
          {"allocated_storage", r.allocated_storage_gib},
          {"instance_create_time", Micros(r.instance_create_time)},
          {"capture_position", r.capture_position},
          {"last_seq", r.last_seq},
          {"restorable_until", Micros(r.restorable_until)},
          {"gaps", gaps}};
}

Result<AutomatedBackupRecord> ReadAutomatedBackup(const sqlite::Stmt& s) {
  AutomatedBackupRecord r;
  r.resource_id = s.Text(0);
  r.instance_id = s.Text(1);
  ASSIGN_OR_RETURN(r.status,
                   StateFromRow(ParseAutomatedBackupStatus(s.Text(2)), "automated_backups", r.resource_id));
  auto j = nlohmann::json::parse(s.Text(3), nullptr, false);
  if (j.is_discarded()) return r;
  r.retention_days = j.value("retention_days", 1);
  r.backup_window = j.value("backup_window", "");
  r.engine = j.value("engine", "");
  r.engine_version = j.value("engine_version", "");
  r.instance_class = j.value("instance_class", "");
  r.db_name = j.value("db_name", "");
  r.master_username = j.value("master_username", "");
  r.port = j.value("port", 0);
  r.allocated_storage_gib = j.value("allocated_storage", 0);
  r.instance_create_time = FromMicros(j.value("instance_create_time", int64_t{0}));
  r.capture_position = j.value("capture_position", "");
  r.last_seq = j.value("last_seq", int64_t{0});
  r.restorable_until = FromMicros(j.value("restorable_until", int64_t{0}));
  for (const auto& g : j.value("gaps", nlohmann::json::array())) {
    r.gaps.push_back({FromMicros(g.value("from", int64_t{0})), FromMicros(g.value("to", int64_t{0})),
                      g.value("breaks", false), g.value("reason", "")});
  }
  return r;
}

}  // namespace

Status Catalog::PutAutomatedBackup(const AutomatedBackupRecord& r) {
  std::lock_guard lock(impl_->mu);
  ASSIGN_OR_RETURN(auto s, impl_->db.Prepare("INSERT OR REPLACE INTO automated_backups "
                                             "(resource_id, instance_id, status, body) VALUES (?,?,?,?)"));
  s.Bind(1, r.resource_id).Bind(2, r.instance_id).Bind(3, ToString(r.status)).Bind(4, AutomatedBackupBody(r).dump());
  return s.Run();
}

Result<AutomatedBackupRecord> Catalog::GetAutomatedBackup(const std::string& resource_id) {
  std::lock_guard lock(impl_->mu);
  ASSIGN_OR_RETURN(auto s, impl_->db.Prepare("SELECT resource_id, instance_id, status, body FROM "
                                             "automated_backups WHERE resource_id = ?"));
  s.Bind(1, resource_id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) {
    return Status(errors::kDBInstanceAutomatedBackupNotFound,
                  fmt::format("No automated backup found for {}.", resource_id));
  }
  return ReadAutomatedBackup(s);
}

std::vector<AutomatedBackupRecord> Catalog::ListAutomatedBackups() {
  std::lock_guard lock(impl_->mu);
  std::vector<AutomatedBackupRecord> out;
  auto s = impl_->db.Prepare("SELECT resource_id, instance_id, status, body FROM automated_backups "
                             "ORDER BY instance_id, resource_id");
  if (!s.ok()) return out;
  for (;;) {
    auto row = s->Step();
    if (!row.ok() || !*row) break;
    AppendReadable(out, ReadAutomatedBackup(*s));
  }
  return out;
}

Status Catalog::DeleteAutomatedBackup(const std::string& resource_id) {
  std::lock_guard lock(impl_->mu);
  ASSIGN_OR_RETURN(auto s, impl_->db.Prepare("DELETE FROM automated_backups WHERE resource_id = ?"));
  s.Bind(1, resource_id);
  return s.Run();
}

}  // namespace strata::catalog
