// Forty virtual days of automated backups on a ManualClock: daily automated
// snapshots in the backup window, retention expiry, point-in-time restores
// inside and outside the window, retained backups of a deleted instance.
#include <gtest/gtest.h>

#include <thread>

#include "common/ids.h"
#include "common/sqlite.h"
#include "control/control.h"
#include "control/repo_backup_store.h"

namespace strata::control {
namespace {

using namespace std::chrono_literals;

class AutomatedBackupsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("ab_test_" + RandomHex(6));
    std::filesystem::create_directories(dir_);
    auto cat = catalog::Catalog::Open(dir_ / "catalog.db");
    ASSERT_TRUE(cat.ok());
    Config cfg;
    cfg.data_dir = dir_;
    cfg.clock = &clock_;
    auto repo = repo::Repository::Open(std::move(storage::OpenPosixStore(dir_ / "repo")).value());
    ASSERT_TRUE(repo.ok());
    auto cp = ControlPlane::Open(cfg, std::move(*cat), NewRepoBackupStore(std::move(*repo)));
    ASSERT_TRUE(cp.ok()) << cp.status().ToString();
    cp_ = std::move(*cp);
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
  bool Status(const std::string& id, const std::string& want) {
    return Eventually([&] {
      auto r = cp_->DescribeInstance(id);
      return r.ok() && r->record.status == want;
    });
  }
  std::vector<Snapshot> Automated() {
    SnapshotQuery q;
    q.snapshot_type = "automated";
    return cp_->DescribeSnapshots(q).value();
  }
  bool NoSnapshotCreating() {
    return Eventually([&] {
      auto all = cp_->DescribeSnapshots({});
      for (const auto& s : all.value())
        if (s.record.status == "creating") return false;
      return true;
    });
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
  CreateInstanceRequest req;
  req.id = "app";
  req.instance_class = "db.t3.micro";
  req.engine = "sqlite";
  req.backup_retention_days = 7;
  req.backup_window = "03:00-03:30";
  req.maintenance_window = "sun:05:00-sun:05:30";
  ASSERT_TRUE(cp_->CreateInstance(req).ok());
  ASSERT_TRUE(Status("app", "available"));
  ASSERT_TRUE(cp_->ExecuteStatement({cp_->InstanceArn("app"), ""}, "CREATE TABLE days (day INTEGER)", {},
                                    std::nullopt).ok());
  cp_->RunScheduler();
  ASSERT_TRUE(NoSnapshotCreating());
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
  ASSERT_TRUE(Status("app-36", "available"));
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
  ASSERT_EQ(cp_->DescribeAutomatedBackups(q).value().at(0).record.status, "retained");
  PointInTimeRestoreRequest from_retained;
  from_retained.source_resource_id = rid;
  from_retained.use_latest_restorable_time = true;
  from_retained.target.instance_id = "revived";
  ASSERT_TRUE(cp_->RestoreToPointInTime(from_retained).ok());
  ASSERT_TRUE(Status("revived", "available"));
  EXPECT_EQ(Days("revived").size(), 40u);
  Advance(8 * 24h);
  EXPECT_FALSE(cp_->DescribeAutomatedBackups(q).ok()) << "retained backups expire with their retention";
  for (const auto& s : Automated()) EXPECT_NE(s.record.instance_resource_id, rid);
}

}  // namespace
}  // namespace strata::control
