// Forty virtual days of automated backups on a ManualClock: daily automated
// snapshots in the backup window, retention expiry, point-in-time restores
// inside and outside the window, retained backups of a deleted instance.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "common/ids.h"
#include "common/sqlite.h"
#include "control/control.h"
#include "control/changelog/instance_capture.h"
#include "control/test_bed.h"

namespace strata::control {
namespace {

using namespace std::chrono_literals;

// A sqlite instance with automated backups kept `retention_days`.
CreateInstanceRequest SqliteInstance(const std::string& id, int retention_days) {
  CreateInstanceRequest req;
  req.id = id;
  req.instance_class = "db.t3.micro";
  req.engine = "sqlite";
  req.backup_retention_days = retention_days;
  return req;
}

class AutomatedBackupsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_bed::NewTestDir("ab_test");
    cp_ = test_bed::OpenTestControlPlane(dir_, clock_);
    ASSERT_NE(cp_, nullptr);
  }
  void TearDown() override {
    cp_.reset();
    std::filesystem::remove_all(dir_);
  }

  template <typename Pred>
  bool Eventually(Pred pred) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (pred()) return true;
      std::this_thread::sleep_for(2ms);  // polling with a deadline
    }
    return false;
  }
  bool Status(const std::string& id, InstanceStatus want) {
    return Eventually([&] {
      auto r = cp_->DescribeInstance(id);
      return r.ok() && r->record.status == want;
    });
  }
  std::vector<Snapshot> Automated() {
    SnapshotQuery q;
    q.snapshot_type = SnapshotType::kAutomated;
    return cp_->DescribeSnapshots(q).value();
  }
  bool NoSnapshotCreating() {
    return Eventually([&] {
      auto all = cp_->DescribeSnapshots({});
      for (const auto& s : all.value())
        if (s.record.status == SnapshotStatus::kCreating) return false;
      return true;
    });
  }
  // Creates instance "app" with a table `days`, and waits for its first automated snapshot.
  void StartApp(const CreateInstanceRequest& req) {
    ASSERT_TRUE(cp_->CreateInstance(req).ok());
    ASSERT_TRUE(Status("app", InstanceStatus::kAvailable));
    ASSERT_TRUE(cp_->ExecuteStatement({cp_->InstanceArn("app"), ""}, "CREATE TABLE days (day INTEGER)", {},
                                      std::nullopt)
                    .ok());
    cp_->RunScheduler();
    ASSERT_TRUE(NoSnapshotCreating());
  }
  void Insert(const std::string& instance, int day) {
    auto r = cp_->ExecuteStatement({cp_->InstanceArn(instance), ""}, "INSERT INTO days (day) VALUES (:d)",
                                   {{"d", int64_t{day}}}, std::nullopt);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  std::vector<int64_t> Days(const std::string& instance) {
    auto path = cp_->InstanceEndpoint(instance).value().address;
    auto db = sqlite::Db::Open(path).value();
    auto s = db.Prepare("SELECT day FROM days ORDER BY day").value();
    std::vector<int64_t> out;
    while (*s.Step()) out.push_back(s.Int(0));
    return out;
  }
  // Advances the clock an hour at a time, running the scheduler as the
  // background thread would, and waits for the snapshots it starts.
  void Advance(std::chrono::hours h) {
    for (int i = 0; i < h.count(); ++i) {
      clock_.Advance(1h);
      cp_->RunScheduler();
      ASSERT_TRUE(NoSnapshotCreating());
    }
  }
  Result<Instance> RestoreTo(const std::string& target, TimePoint t) {
    PointInTimeRestoreRequest req;
    req.source_instance_id = "app";
    req.restore_time = t;
    req.target.instance_id = target;
    return cp_->RestoreToPointInTime(req);
  }

  ManualClock clock_{*ParseIso8601("2026-11-01T12:00:00Z")};
  std::filesystem::path dir_;
  std::unique_ptr<ControlPlane> cp_;
};

TEST_F(AutomatedBackupsTest, FortyDaysOfDailySnapshotsRetentionAndRestores) {
  auto req = SqliteInstance("app", 7);
  req.backup_window = "03:00-03:30";
  req.maintenance_window = "sun:05:00-sun:05:30";
  ASSERT_NO_FATAL_FAILURE(StartApp(req));
  ASSERT_EQ(Automated().size(), 1u) << "the first base is taken at once";

  TimePoint start = clock_.Now();
  std::map<int, TimePoint> inserted_at;
  for (int day = 1; day <= 40; ++day) {
    Insert("app", day);
    inserted_at[day] = clock_.Now();
    Advance(24h);
  }
  // One automated snapshot a day, in the window; only what retention needs is kept.
  auto snaps = Automated();
  for (const auto& s : snaps) {
    if (s.record.create_time == start) continue;
    std::string t = FormatIso8601(s.record.create_time);
    EXPECT_EQ(t.substr(11, 5), "03:00") << s.record.id;
    EXPECT_EQ(s.record.id.rfind("rds:app-", 0), 0u);
  }
  EXPECT_GE(snaps.size(), 7u);
  EXPECT_LE(snaps.size(), 9u);
  TimePoint now = clock_.Now();
  for (const auto& s : snaps) EXPECT_GE(s.record.create_time, now - 9 * 24h) << s.record.id;

  auto window = cp_->DescribeAutomatedBackups({}).value().at(0);
  ASSERT_TRUE(window.earliest && window.latest);
  EXPECT_EQ(*window.earliest, now - 7 * 24h);
  EXPECT_TRUE(Eventually([&] { return cp_->DescribeInstance("app")->latest_restorable_time == now; }));

  // Inside the window: exactly the days inserted by then.
  TimePoint target = inserted_at[36] + 1h;
  ASSERT_TRUE(RestoreTo("app-36", target).ok());
  ASSERT_TRUE(Status("app-36", InstanceStatus::kAvailable));
  std::vector<int64_t> want;
  for (int d = 1; d <= 36; ++d) want.push_back(d);
  EXPECT_EQ(Days("app-36"), want);

  // Before the window: refused, naming the window.
  auto old = RestoreTo("too-old", inserted_at[30]);
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.status().code().aws_code, std::string("InvalidRestoreFault"));

  // Deleted with its backups retained: restorable by DbiResourceId until they expire.
  std::string rid = cp_->DescribeInstance("app")->record.resource_id;
  DeleteInstanceRequest del;
  del.id = "app";
  del.skip_final_snapshot = true;
  del.delete_automated_backups = false;
  ASSERT_TRUE(cp_->DeleteInstance(del).ok());
  ASSERT_TRUE(Eventually([&] { return !cp_->DescribeInstance("app").ok(); }));
  AutomatedBackupQuery q;
  q.resource_id = rid;
  ASSERT_EQ(cp_->DescribeAutomatedBackups(q).value().at(0).record.status, AutomatedBackupStatus::kRetained);
  PointInTimeRestoreRequest from_retained;
  from_retained.source_resource_id = rid;
  from_retained.use_latest_restorable_time = true;
  from_retained.target.instance_id = "revived";
  ASSERT_TRUE(cp_->RestoreToPointInTime(from_retained).ok());
  ASSERT_TRUE(Status("revived", InstanceStatus::kAvailable));
  EXPECT_EQ(Days("revived").size(), 40u);
  Advance(8 * 24h);
  EXPECT_FALSE(cp_->DescribeAutomatedBackups(q).ok()) << "retained backups expire with their retention";
  for (const auto& s : Automated()) EXPECT_NE(s.record.instance_resource_id, rid);
}

// The capture ships a segment per flush; the scheduler has the small ones
// merged once they are ten minutes old, and restores read the merged log.
TEST_F(AutomatedBackupsTest, SmallLogSegmentsAreMergedAndRestoresReadThem) {
  ASSERT_NO_FATAL_FAILURE(StartApp(SqliteInstance("app", 1)));
  std::string rid = cp_->DescribeInstance("app")->record.resource_id;
  // Counted on disk (temp files of writes in progress left out).
  auto log_segments = [&] {
    size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_ / "repo" / "log" / rid)) {
      n += e.path().extension() != ".strata-tmp";
    }
    return n;
  };
  std::map<int, TimePoint> inserted_at;
  for (int day = 1; day <= 12; ++day) {
    Insert("app", day);
    inserted_at[day] = clock_.Now();
    // A flush interval later (on this clock) the commit is shipped alone.
    clock_.Advance(1s);
    ASSERT_TRUE(Eventually([&] { return cp_->DescribeInstance("app")->latest_restorable_time > inserted_at[day]; }));
  }
  const size_t before = log_segments();
  ASSERT_GE(before, 12u) << "a segment per commit";

  clock_.Advance(11min);
  cp_->RunScheduler();
  ASSERT_TRUE(Eventually([&] { return log_segments() < 3; })) << log_segments() << " segments";
  TimePoint target = inserted_at[7];
  ASSERT_TRUE(RestoreTo("app-7", target).ok());
  ASSERT_TRUE(Status("app-7", InstanceStatus::kAvailable));
  EXPECT_EQ(Days("app-7"), (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7}));
}

TEST_F(AutomatedBackupsTest, TurningBackupsOffAndOnForgetsOldSnapshotsPlaceInTheLog) {
  auto SnapshotNamed = [&](const std::string& id) {
    SnapshotQuery q;
    q.snapshot_id = id;
    return cp_->DescribeSnapshots(q).value().at(0);
  };
  auto req = SqliteInstance("app", 1);
  ASSERT_NO_FATAL_FAILURE(StartApp(req));
  for (int day = 1; day <= 3; ++day) Insert("app", day);
  CreateSnapshotRequest manual;
  manual.snapshot_id = "before-off";
  manual.instance_id = "app";
  ASSERT_TRUE(cp_->CreateSnapshot(manual).ok());
  ASSERT_TRUE(NoSnapshotCreating());
  ASSERT_GE(SnapshotNamed("before-off").record.log_seq_after, 0) << "a base while backups run";

  ModifyInstanceRequest off;
  off.id = "app";
  off.backup_retention_days = 0;
  off.apply_immediately = true;
  ASSERT_TRUE(cp_->ModifyInstance(off).ok());
  // Its log is gone, so the old snapshot is no base for a new one.
  EXPECT_LT(SnapshotNamed("before-off").record.log_seq_after, 0);
  ModifyInstanceRequest on = off;
  on.backup_retention_days = 1;
  ASSERT_TRUE(cp_->ModifyInstance(on).ok());
  clock_.Advance(1h);
  cp_->RunScheduler();
  ASSERT_TRUE(NoSnapshotCreating());
  Insert("app", 4);
  clock_.Advance(1min);
  ASSERT_TRUE(Eventually([&] { return cp_->DescribeInstance("app")->latest_restorable_time >= clock_.Now(); }));
  auto window = cp_->DescribeAutomatedBackups({}).value().at(0);
  ASSERT_TRUE(window.earliest);
  EXPECT_GT(*window.earliest, SnapshotNamed("before-off").record.create_time)
      << "the window starts with the new log, not at the old snapshot";
  ASSERT_TRUE(RestoreTo("latest", clock_.Now()).ok());
  ASSERT_TRUE(Status("latest", InstanceStatus::kAvailable));
  EXPECT_EQ(Days("latest"), (std::vector<int64_t>{1, 2, 3, 4}));
}

// The repository backup store, recording what each snapshot was told it
// may take from a parent and what it read; a test may hold or fail log puts.
class RecordingStore final : public BackupStore {
 public:
  explicit RecordingStore(std::unique_ptr<BackupStore> inner) : inner_(std::move(inner)) {}
  struct Put {
    IncrementalBase base;
    StoredSnapshot stored;
  };
  std::map<std::string, Put> puts;  // by repository snapshot id
  std::function<Status()> before_log_put;  // runs first; an error fails the put
  std::function<void(const Progress&)> before_snapshot_put;  // runs first, and may report progress
  std::mutex mu;

  Result<StoredSnapshot> PutSnapshot(const std::string& id, const std::map<std::string, std::string>& metadata,
                                     const std::vector<engine::FileSource>& files, uint32_t page_size,
                                     const IncrementalBase& base, const Progress& progress,
                                     const LateFiles& late_files) override {
    if (before_snapshot_put) before_snapshot_put(progress);
    auto r = inner_->PutSnapshot(id, metadata, files, page_size, base, progress, late_files);
    std::lock_guard lock(mu);
    if (r.ok()) puts[metadata.at("snapshot_id")] = {base, *r};
    return r;
  }
  Status RestoreSnapshot(const std::string& id, const std::filesystem::path& t, const Progress& p,
                         bool direct) override {
    return inner_->RestoreSnapshot(id, t, p, direct);
  }
  Status CopySnapshot(const std::string& f, const std::string& t, const std::map<std::string, std::string>& m) override {
    return inner_->CopySnapshot(f, t, m);
  }
  Status DeleteSnapshot(const std::string& id) override { return inner_->DeleteSnapshot(id); }
  Status CollectGarbage() override { return inner_->CollectGarbage(); }
  Status PutLogSegment(const std::string& s, TimePoint f, TimePoint l,
                       std::span<const std::string_view> p) override {
    if (before_log_put) RETURN_IF_ERROR(before_log_put());
    return inner_->PutLogSegment(s, f, l, p);
  }
  Result<std::vector<LogSegmentRef>> ListLogSegments(const std::string& s, TimePoint f, TimePoint t) override {
    return inner_->ListLogSegments(s, f, t);
  }
  Result<std::string> ReadLogSegment(const std::string& s, const LogSegmentRef& r) override {
    return inner_->ReadLogSegment(s, r);
  }
  Result<uint64_t> DeleteLogSegmentsBefore(const std::string& s, TimePoint t) override {
    return inner_->DeleteLogSegmentsBefore(s, t);
  }
  Result<LogCompaction> CompactLog(const std::string& s, TimePoint before) override {
    return inner_->CompactLog(s, before);
  }
  Result<std::vector<std::string>> ListSnapshots() override { return inner_->ListSnapshots(); }

 private:
  std::unique_ptr<BackupStore> inner_;
};

class IncrementalSnapshotTest : public AutomatedBackupsTest {
 protected:
  void SetUp() override {
    dir_ = test_bed::NewTestDir("inc_test");
    OpenControlPlane();
  }
  // Opens the control plane on dir_ (again, after cp_.reset(): a restart).
  void OpenControlPlane() {
    auto store = std::make_unique<RecordingStore>(test_bed::OpenTestStore(dir_));
    store_ = store.get();
    cp_ = test_bed::OpenTestControlPlane(dir_, clock_, std::move(store));
    ASSERT_NE(cp_, nullptr);
  }
  // Every row, as text: equal databases give equal strings.
  static std::string Contents(const std::string& path) {
    auto db = sqlite::Db::Open(path).value();
    auto check = db.Prepare("PRAGMA integrity_check").value();
    EXPECT_TRUE(*check.Step());
    EXPECT_EQ(check.Text(0), "ok") << path;
    auto s = db.Prepare("SELECT id, hex(v) FROM t ORDER BY id").value();
    std::string out;
    while (*s.Step()) out += std::to_string(s.Int(0)) + ":" + s.Text(1) + "\n";
    return out;
  }
  void Snapshot(const std::string& id) {
    clock_.Advance(1min);
    ASSERT_TRUE(cp_->CreateSnapshot({id, "app", {}}).ok());
    ASSERT_TRUE(NoSnapshotCreating());
    SnapshotQuery q;
    q.snapshot_id = id;
    auto s = cp_->DescribeSnapshots(q);
    ASSERT_TRUE(s.ok());
    ASSERT_EQ(s->at(0).record.status, SnapshotStatus::kAvailable) << s->at(0).record.status_reason;
    clock_.Advance(1min);
  }
  // Restores snapshot `id` into a new instance `target` and returns its contents.
  std::string Restored(const std::string& id, const std::string& target) {
    RestoreFromSnapshotRequest req;
    req.instance_id = target;
    req.snapshot_id = id;
    EXPECT_TRUE(cp_->RestoreFromSnapshot(req).ok());
    EXPECT_TRUE(Status(req.instance_id, InstanceStatus::kAvailable));
    return Contents(cp_->InstanceEndpoint(req.instance_id).value().address);
  }
  RecordingStore* store_ = nullptr;
};

TEST_F(IncrementalSnapshotTest, RandomPageUpdatesRestoreExactlyFromAnIncremental) {
  auto req = SqliteInstance("app", 7);
  ASSERT_TRUE(cp_->CreateInstance(req).ok());
  ASSERT_TRUE(Status("app", InstanceStatus::kAvailable));
  cp_->RunScheduler();  // capture starts, and the first base with it
  ASSERT_TRUE(NoSnapshotCreating());
  std::string path = cp_->InstanceEndpoint("app").value().address;
  auto db = sqlite::Db::Open(path).value();
  ASSERT_TRUE(db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)").ok());
  for (int i = 0; i < 3000; ++i) {
    ASSERT_TRUE(db.Exec(fmt::format("INSERT INTO t VALUES ({}, randomblob(900))", i)).ok());
  }
  Snapshot("s1");  // its parent (the first base) holds no transaction: full
  {
    std::lock_guard lock(store_->mu);
    EXPECT_TRUE(store_->puts.at("s1").base.parent_id.empty());
  }
  std::string at_s1 = Contents(path);

  // 1% of the rows updated at random, one transaction each, an application
  // checkpoint halfway, and growth. (The log must stay smaller than the
  // database, or a full read is the cheaper choice.)
  std::mt19937 rng(3);
  for (int k = 0; k < 30; ++k) {
    ASSERT_TRUE(db.Exec(fmt::format("UPDATE t SET v = randomblob(900) WHERE id = {}", rng() % 3000)).ok());
    if (k == 15) {
      ASSERT_TRUE(db.Exec("PRAGMA wal_checkpoint(PASSIVE)").ok());
    }
  }
  for (int i = 3000; i < 3100; ++i) {
    ASSERT_TRUE(db.Exec(fmt::format("INSERT INTO t VALUES ({}, randomblob(900))", i)).ok());
  }
  Snapshot("s2");
  std::string at_s2 = Contents(path);
  {
    std::lock_guard lock(store_->mu);
    const auto& put = store_->puts.at("s2");
    EXPECT_FALSE(put.base.parent_id.empty());
    EXPECT_TRUE(put.stored.incremental);
    EXPECT_LT(put.stored.read_bytes, put.stored.logical_bytes / 2)
        << "read " << put.stored.read_bytes << " of " << put.stored.logical_bytes;
  }

  // The database shrinks (rows deleted, VACUUM rewrites the file smaller).
  ASSERT_TRUE(db.Exec("DELETE FROM t WHERE id % 3 = 0").ok());
  ASSERT_TRUE(db.Exec("VACUUM").ok());
  Snapshot("s3");
  std::string at_s3 = Contents(path);
  {
    // VACUUM rewrote every page: the log since s2 is larger than the
    // database, so reading the file is the cheaper way.
    std::lock_guard lock(store_->mu);
    EXPECT_FALSE(store_->puts.at("s3").stored.incremental);
  }
  EXPECT_NE(at_s1, at_s2);
  EXPECT_EQ(Restored("s1", "from-s1"), at_s1);
  EXPECT_EQ(Restored("s2", "from-s2"), at_s2);
  EXPECT_EQ(Restored("s3", "from-s3"), at_s3);
  // Point-in-time restores from an incremental base work as from any other.
  auto pitr = RestoreTo("pitr", clock_.Now());
  ASSERT_TRUE(pitr.ok()) << pitr.status().ToString();
  ASSERT_TRUE(Status("pitr", InstanceStatus::kAvailable));
  EXPECT_EQ(Contents(cp_->InstanceEndpoint("pitr").value().address), at_s3);
}

TEST_F(IncrementalSnapshotTest, PercentProgressShowsWhileTheSnapshotRuns) {
  ASSERT_TRUE(cp_->CreateInstance(SqliteInstance("app", 0)).ok());
  ASSERT_TRUE(Status("app", InstanceStatus::kAvailable));
  std::mutex mu;
  std::condition_variable cv;
  bool released = false;
  store_->before_snapshot_put = [&](const Progress& progress) {
    progress(37);
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return released; });
  };
  ASSERT_TRUE(cp_->CreateSnapshot({"s1", "app", {}}).ok());
  SnapshotQuery q;
  q.snapshot_id = "s1";
  EXPECT_TRUE(Eventually([&] { return cp_->DescribeSnapshots(q).value().at(0).record.percent_progress == 37; }));
  EXPECT_EQ(cp_->DescribeSnapshots(q).value().at(0).record.status, SnapshotStatus::kCreating);
  EXPECT_EQ(cp_->DescribeInstance("app").value().record.status, InstanceStatus::kBackingUp);
  {
    std::lock_guard lock(mu);
    released = true;
  }
  cv.notify_all();
  ASSERT_TRUE(NoSnapshotCreating());
  auto done = cp_->DescribeSnapshots(q).value().at(0).record;
  EXPECT_EQ(done.status, SnapshotStatus::kAvailable) << done.status_reason;
  EXPECT_EQ(done.percent_progress, 100);
  EXPECT_TRUE(Status("app", InstanceStatus::kAvailable));
}

TEST_F(IncrementalSnapshotTest, ABreakInTheChangeLogMakesTheNextSnapshotFull) {
  auto req = SqliteInstance("app", 7);
  ASSERT_TRUE(cp_->CreateInstance(req).ok());
  ASSERT_TRUE(Status("app", InstanceStatus::kAvailable));
  cp_->RunScheduler();
  ASSERT_TRUE(NoSnapshotCreating());
  std::string path = cp_->InstanceEndpoint("app").value().address;
  {
    auto db = sqlite::Db::Open(path).value();
    ASSERT_TRUE(db.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)").ok());
    for (int i = 0; i < 200; ++i) ASSERT_TRUE(db.Exec(fmt::format("INSERT INTO t VALUES ({}, randomblob(900))", i)).ok());
  }
  Snapshot("s1");
  // A restart that loses the capture position: the log breaks.
  cp_.reset();
  {
    auto cat = catalog::Catalog::Open(dir_ / "catalog.db").value();
    auto ab = cat->GetAutomatedBackup(cat->GetInstance("app").value().resource_id).value();
    ab.capture_position.clear();
    ASSERT_TRUE(cat->PutAutomatedBackup(ab).ok());
  }
  OpenControlPlane();
  {
    auto db = sqlite::Db::Open(path).value();
    ASSERT_TRUE(db.Exec("UPDATE t SET v = randomblob(900) WHERE id = 7").ok());
  }
  clock_.Advance(1min);
  cp_->RunScheduler();  // capture restarts without its position: a break
  ASSERT_TRUE(NoSnapshotCreating());
  Snapshot("s2");
  {
    // s2 may build on the base taken after the break, never on s1.
    SnapshotQuery q;
    q.snapshot_id = "s1";
    std::string s1_repo_id = cp_->DescribeSnapshots(q).value().at(0).record.repo_snapshot_id;
    std::lock_guard lock(store_->mu);
    EXPECT_NE(store_->puts.at("s2").base.parent_id, s1_repo_id) << "no parent across a break";
  }
  std::string now = Contents(path);
  EXPECT_EQ(Restored("s2", "after-break"), now);
}

}  // namespace
// A capture whose Poll counts its calls: whether the capture thread ran.
class CountingCapture final : public engine::ChangeCapture {
 public:
  explicit CountingCapture(std::atomic<int>* polls) : polls_(polls) {}
  Result<engine::CaptureBatch> Poll() override {
    ++*polls_;
    return engine::CaptureBatch{};
  }
  void WaitForChange(std::chrono::milliseconds wait) override { std::this_thread::sleep_for(std::min(wait, 5ms)); }
  std::string Position() const override { return ""; }

 private:
  std::atomic<int>* polls_;
};

// An instance deleted while its capture is being started stops the capture
// before its Start runs; that Start used to start a thread that the
// destructor then found joinable (std::terminate; 2 in 80 runs of
// ControlTest under ASan on 2 busy cores).
TEST(InstanceCaptureTest, AStopBeforeTheStartLeavesNothingRunning) {
  auto dir = test_bed::NewTestDir("ic_test");
  {
    auto cat = test_bed::OpenTestCatalog(dir);
    auto store = test_bed::OpenTestStore(dir);
    ASSERT_TRUE(cat && store);
    SystemClock clock;
    std::atomic<int> polls{0};
    auto capture = std::make_unique<InstanceCapture>("db-TEST", std::make_unique<CountingCapture>(&polls),
                                                     store.get(), cat.get(), clock, nullptr);
    capture->Stop();
    capture->Start();
    capture.reset();
    EXPECT_EQ(polls.load(), 0);

    // And the usual order still runs and stops, however often Stop is called.
    capture = std::make_unique<InstanceCapture>("db-TEST", std::make_unique<CountingCapture>(&polls),
                                                store.get(), cat.get(), clock, nullptr);
    capture->Start();
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (polls.load() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    EXPECT_GT(polls.load(), 0);
    capture->Stop();
    capture->Stop();
    int after = polls.load();
    capture.reset();
    EXPECT_EQ(polls.load(), after);
  }
  std::filesystem::remove_all(dir);
}

// A capture that hands out what the test adds, positioned by how many
// transactions it has handed out.
class ScriptedCapture final : public engine::ChangeCapture {
 public:
  void Add(TimePoint commit_time, std::string redo) {
    std::lock_guard lock(mu_);
    queued_.push_back({commit_time, std::move(redo)});
  }
  void BreakNext(std::string reason) {
    std::lock_guard lock(mu_);
    gap_reason_ = std::move(reason);
  }
  Result<engine::CaptureBatch> Poll() override {
    std::lock_guard lock(mu_);
    engine::CaptureBatch batch;
    batch.complete = true;
    batch.gap = !gap_reason_.empty();
    batch.gap_reason = std::exchange(gap_reason_, "");
    returned_ += queued_.size();
    batch.transactions = std::move(queued_);
    queued_.clear();
    return batch;
  }
  void WaitForChange(std::chrono::milliseconds wait) override { std::this_thread::sleep_for(std::min(wait, 5ms)); }
  std::string Position() const override {
    std::lock_guard lock(mu_);
    return fmt::format("p{}", returned_);
  }

 private:
  mutable std::mutex mu_;
  std::vector<engine::CapturedTransaction> queued_;
  std::string gap_reason_;
  size_t returned_ = 0;
};

// An InstanceCapture (not started: tests poll through CatchUp) over a
// ScriptedCapture, storing into a repository whose log puts a test can hold
// (until Open) and fail (fail_puts of them).
class ShippingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_bed::NewTestDir("ic_test");
    catalog_ = test_bed::OpenTestCatalog(dir_);
    ASSERT_NE(catalog_, nullptr);
    catalog::AutomatedBackupRecord ab;
    ab.resource_id = "db-TEST";
    ab.instance_id = "test";
    ab.status = AutomatedBackupStatus::kActive;
    ASSERT_TRUE(catalog_->PutAutomatedBackup(ab).ok());
    store_ = std::make_unique<RecordingStore>(test_bed::OpenTestStore(dir_));
    store_->before_log_put = [this]() -> Status {
      std::unique_lock lock(gate_mu_);
      ++entered_;
      gate_cv_.notify_all();
      gate_cv_.wait(lock, [&] { return open_; });
      if (fail_puts_ == 0) return Status::Ok();
      --fail_puts_;
      return Status(errors::kServiceUnavailable, "injected");
    };
    script_ = new ScriptedCapture;
    capture_ = std::make_unique<InstanceCapture>("db-TEST", std::unique_ptr<engine::ChangeCapture>(script_),
                                                 store_.get(), catalog_.get(), clock_,
                                                 [this](const catalog::LogGap& gap) { gaps_.push_back(gap); });
  }
  void TearDown() override {
    Open();
    capture_.reset();
    store_.reset();
    catalog_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Open() {
    {
      std::lock_guard lock(gate_mu_);
      open_ = true;
    }
    gate_cv_.notify_all();
  }
  void FailPuts(int n) {
    std::lock_guard lock(gate_mu_);
    fail_puts_ = n;
  }
  bool WaitEntered(int n) {
    std::unique_lock lock(gate_mu_);
    return gate_cv_.wait_for(lock, 20s, [&] { return entered_ >= n; });
  }
  catalog::AutomatedBackupRecord Recorded() { return catalog_->GetAutomatedBackup("db-TEST").value(); }
  // Every record in the stored log, (seq, redo), in order.
  std::vector<std::pair<int64_t, std::string>> StoredRecords() {
    std::vector<std::pair<int64_t, std::string>> records;
    auto segments = store_->ListLogSegments("db-TEST", TimePoint{}, clock_.Now() + 1h);
    EXPECT_TRUE(segments.ok());
    for (const auto& seg : *segments) {
      auto payload = store_->ReadLogSegment("db-TEST", seg);
      EXPECT_TRUE(payload.ok());
      auto decoded = DecodeLogRecords(*payload);
      EXPECT_TRUE(decoded.ok());
      for (auto& r : *decoded) records.emplace_back(r.seq, r.redo);
    }
    return records;
  }

  std::filesystem::path dir_;
  std::unique_ptr<catalog::Catalog> catalog_;
  std::unique_ptr<RecordingStore> store_;
  std::mutex gate_mu_;
  std::condition_variable gate_cv_;
  bool open_ = false;
  int entered_ = 0;
  int fail_puts_ = 0;
  ManualClock clock_{SystemClock().Now()};
  ScriptedCapture* script_ = nullptr;  // owned by capture_
  std::vector<catalog::LogGap> gaps_;
  std::unique_ptr<InstanceCapture> capture_;
};

// The shipper stores one segment while the capture reads the next; what the
// catalog records (position, last seq, restorable time) never runs ahead of
// what is stored, and a failed store is tried again with nothing lost.
TEST_F(ShippingTest, ReadsOnWhileASegmentStoresAndRecordsOnlyWhatIsStored) {
  const TimePoint t0 = clock_.Now();
  script_->Add(t0, "a");
  ASSERT_TRUE(capture_->CatchUp().ok());
  Status first_flush;
  std::thread flusher([&] { first_flush = capture_->Flush(); });
  ASSERT_TRUE(WaitEntered(1));
  clock_.Advance(1s);
  script_->Add(clock_.Now(), "b");
  auto mark = capture_->CatchUp();
  ASSERT_TRUE(mark.ok());
  EXPECT_EQ(mark->seq, 2) << "the next transaction is read while the first segment stores";
  EXPECT_EQ(capture_->RestorableUntil(), TimePoint{});
  EXPECT_EQ(Recorded().last_seq, 0);
  EXPECT_EQ(Recorded().capture_position, "");
  Open();
  flusher.join();
  ASSERT_TRUE(first_flush.ok()) << first_flush.ToString();
  EXPECT_EQ(capture_->RestorableUntil(), t0);
  EXPECT_EQ(Recorded().last_seq, 1);
  EXPECT_EQ(Recorded().capture_position, "p1") << "b is buffered: the position stops after a";

  FailPuts(1);
  EXPECT_FALSE(capture_->Flush().ok());
  EXPECT_EQ(capture_->RestorableUntil(), t0);
  EXPECT_EQ(Recorded().last_seq, 1);
  ASSERT_TRUE(capture_->Flush().ok()) << "tried again";
  EXPECT_EQ(capture_->RestorableUntil(), t0 + 1s);
  EXPECT_EQ(Recorded().last_seq, 2);
  EXPECT_EQ(Recorded().capture_position, "p2");
  capture_->Stop();
  EXPECT_EQ(StoredRecords(), (std::vector<std::pair<int64_t, std::string>>{{1, "a"}, {2, "b"}}));
  EXPECT_FALSE(capture_->CatchUp().ok()) << "nothing is read once nothing can be stored";
}

// A continuity break read while the store is failing: the batch after it is
// kept, the gap is reported, and the log before it is stored in the end.
TEST_F(ShippingTest, AGapWhileTheStoreFailsLosesNothing) {
  Open();
  FailPuts(2);
  const TimePoint t0 = clock_.Now();
  script_->Add(t0, "a");
  ASSERT_TRUE(capture_->CatchUp().ok());
  EXPECT_FALSE(capture_->Flush().ok());  // a is in flight, failing
  clock_.Advance(1s);
  script_->Add(clock_.Now(), "b");
  ASSERT_TRUE(capture_->CatchUp().ok());  // b buffered behind a
  clock_.Advance(1s);
  script_->BreakNext("slot lost");
  script_->Add(clock_.Now(), "c");
  auto mark = capture_->CatchUp();
  ASSERT_TRUE(mark.ok()) << mark.status().ToString();
  EXPECT_EQ(mark->seq, 3);
  ASSERT_EQ(gaps_.size(), 1u);
  EXPECT_TRUE(gaps_[0].breaks);
  EXPECT_EQ(gaps_[0].from, t0 + 1s) << "the gap starts at the last complete poll before it";
  ASSERT_TRUE(capture_->Flush().ok());
  EXPECT_EQ(Recorded().last_seq, 3);
  EXPECT_EQ(StoredRecords(), (std::vector<std::pair<int64_t, std::string>>{{1, "a"}, {2, "b"}, {3, "c"}}));
}

// LatestRestorableTime is what the catalog records: a capture that crashes
// (no Stop) and starts again over the same catalog reports no earlier time
// than the last one reported before the crash.
TEST_F(ShippingTest, TheRestorableTimeReportedNeverGoesBackAcrossACrash) {
  Open();
  TimePoint reported{};
  for (int i = 0; i < 10; ++i) {
    clock_.Advance(60ms);
    if (i % 3 == 0) script_->Add(clock_.Now(), "tx" + std::to_string(i));
    ASSERT_TRUE(capture_->CatchUp().ok());
    ASSERT_TRUE(capture_->Flush().ok());
    ASSERT_TRUE(capture_->CatchUp().ok());  // an empty poll moves the restorable time on
    EXPECT_GE(capture_->RestorableUntil(), reported) << "round " << i;
    reported = capture_->RestorableUntil();
    // What a restart right now (after a crash) would report, before and
    // after its first poll.
    InstanceCapture restarted("db-TEST", std::make_unique<ScriptedCapture>(), store_.get(), catalog_.get(), clock_,
                              nullptr);
    EXPECT_GE(restarted.RestorableUntil(), reported)
        << "round " << i << ": back by "
        << std::chrono::duration_cast<std::chrono::milliseconds>(reported - restarted.RestorableUntil()).count()
        << " ms";
    EXPECT_GE(Recorded().restorable_until, reported) << "round " << i;
    EXPECT_LE(reported, capture_->DurableUntil()) << "never a time the log does not hold";
  }
  EXPECT_GT(reported, TimePoint{});
}

}  // namespace strata::control
