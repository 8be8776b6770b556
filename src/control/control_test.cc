#include "control/control.h"

#include <gtest/gtest.h>

#include <thread>

#include "common/ids.h"
#include "control/test_bed.h"
#include "engine/sqlite/sqlite_engine.h"

namespace strata::control {
namespace {

class ControlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_bed::NewTestDir("control_test");
    Open();
  }
  void TearDown() override {
    cp_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Open(disk::DiskGuard* disk = nullptr) {
    cp_ = test_bed::OpenTestControlPlane(dir_, clock_, nullptr, disk);
    ASSERT_NE(cp_, nullptr);
  }
  // Polls (the workers are real threads) until the instance reaches `want`:
  // a status's wire name, or the error code DescribeInstance answers once it is gone.
  ::testing::AssertionResult WaitFor(const std::string& id, std::string_view want) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::string last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = cp_->DescribeInstance(id);
      last = r.ok() ? std::string(ToString(r->record.status)) : std::string(r.status().code().aws_code);
      if (last == want) return ::testing::AssertionSuccess();
      std::this_thread::yield();
    }
    return ::testing::AssertionFailure() << id << " is " << last << ", not " << want;
  }
  ::testing::AssertionResult WaitFor(const std::string& id, InstanceStatus want) { return WaitFor(id, ToString(want)); }
  CreateInstanceRequest Req(const std::string& id) {
    CreateInstanceRequest r;
    r.id = id;
    r.instance_class = "db.t3.micro";
    r.engine = "sqlite";
    return r;
  }

  ManualClock clock_{*ParseIso8601("2026-11-24T00:00:00Z")};
  std::filesystem::path dir_;
  std::unique_ptr<ControlPlane> cp_;
};

TEST_F(ControlTest, CreateDescribeModifyDelete) {
  auto req = Req("App");
  req.tags = {{"team", "db"}};
  auto created = cp_->CreateInstance(req);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(created->record.id, "app");
  EXPECT_EQ(created->record.status, InstanceStatus::kCreating);
  EXPECT_EQ(created->record.backup_retention_days, 1);
  EXPECT_EQ(created->record.resource_id.size(), 29u);
  EXPECT_TRUE(WaitFor("app", InstanceStatus::kAvailable));
  EXPECT_TRUE(cp_->CreateInstance(req).status().Is(errors::kDBInstanceAlreadyExists));

  ModifyInstanceRequest mod;
  mod.id = "app";
  mod.backup_retention_days = 7;
  mod.backup_window = "04:00-04:30";
  // The window the instance was given at random could overlap the new one.
  mod.maintenance_window = "sun:06:00-sun:06:30";
  auto modified = cp_->ModifyInstance(mod);
  ASSERT_TRUE(modified.ok()) << modified.status().ToString();
  EXPECT_EQ(modified->record.backup_retention_days, 7);
  mod.backup_retention_days = 0;  // 0 waits for the maintenance window unless applied now
  modified = cp_->ModifyInstance(mod);
  ASSERT_TRUE(modified.ok());
  EXPECT_EQ(modified->record.backup_retention_days, 7);
  EXPECT_EQ(modified->record.pending_backup_retention_days, 0);

  DeleteInstanceRequest del;
  del.id = "app";
  EXPECT_TRUE(cp_->DeleteInstance(del).status().Is(errors::kInvalidParameterCombination));
  del.skip_final_snapshot = true;
  auto deleting = cp_->DeleteInstance(del);
  ASSERT_TRUE(deleting.ok());
  EXPECT_EQ(deleting->record.status, InstanceStatus::kDeleting);
  EXPECT_TRUE(WaitFor("app", "DBInstanceNotFound"));
  EXPECT_FALSE(std::filesystem::exists(created->record.data_path));
}

TEST_F(ControlTest, RejectsBadInput) {
  auto r = Req("1bad");
  EXPECT_TRUE(cp_->CreateInstance(r).status().Is(errors::kInvalidParameterValue));
  r = Req("ok");
  r.engine = "oracle-ee";
  EXPECT_TRUE(cp_->CreateInstance(r).status().Is(errors::kInvalidParameterValue));
  r = Req("ok");
  r.backup_window = "03:00-03:10";
  EXPECT_TRUE(cp_->CreateInstance(r).status().Is(errors::kInvalidParameterValue));
  r = Req("ok");
  r.backup_window = "05:00-05:30";
  r.maintenance_window = "mon:05:10-mon:05:40";
  EXPECT_TRUE(cp_->CreateInstance(r).status().Is(errors::kInvalidParameterValue));
  EXPECT_TRUE(cp_->ListInstances().empty()) << "nothing half-created";
}

TEST_F(ControlTest, DeletionProtectionRefusesDelete) {
  auto r = Req("safe");
  r.deletion_protection = true;
  ASSERT_TRUE(cp_->CreateInstance(r).ok());
  ASSERT_TRUE(WaitFor("safe", InstanceStatus::kAvailable));
  DeleteInstanceRequest del;
  del.id = "safe";
  del.skip_final_snapshot = true;
  EXPECT_TRUE(cp_->DeleteInstance(del).status().Is(errors::kInvalidParameterCombination));
}

TEST_F(ControlTest, EverythingSurvivesARestart) {
  ASSERT_TRUE(cp_->CreateInstance(Req("keep")).ok());
  ASSERT_TRUE(WaitFor("keep", InstanceStatus::kAvailable));
  ASSERT_TRUE(cp_->AddTags(cp_->InstanceArn("keep"), {{"k", "v"}}).ok());
  std::string account = cp_->AccountId();
  cp_.reset();
  Open();
  auto inst = cp_->DescribeInstance("keep");
  ASSERT_TRUE(inst.ok());
  EXPECT_EQ(inst->record.status, InstanceStatus::kAvailable);
  ASSERT_EQ(inst->tags.size(), 1u);
  EXPECT_EQ(cp_->AccountId(), account);
}

TEST_F(ControlTest, DataApiTransactions) {
  ASSERT_TRUE(cp_->CreateInstance(Req("data")).ok());
  ASSERT_TRUE(WaitFor("data", InstanceStatus::kAvailable));
  DataTarget t{cp_->InstanceArn("data"), ""};
  ASSERT_TRUE(cp_->ExecuteStatement(t, "CREATE TABLE t (x)", {}, std::nullopt).ok());
  auto tx = cp_->BeginTransaction(t);
  ASSERT_TRUE(tx.ok());
  ASSERT_TRUE(cp_->ExecuteStatement(t, "INSERT INTO t VALUES (1)", {}, *tx).ok());
  ASSERT_TRUE(cp_->RollbackTransaction(t.resource_arn, *tx).ok());
  EXPECT_TRUE(cp_->CommitTransaction(t.resource_arn, *tx).Is(errors::kDataNotFound));
  auto n = cp_->ExecuteStatement(t, "SELECT count(*) FROM t", {}, std::nullopt);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(std::get<int64_t>(n->rows[0][0]), 0);
  EXPECT_TRUE(cp_->ExecuteStatement({cp_->InstanceArn("nope"), ""}, "SELECT 1", {}, std::nullopt)
                  .status()
                  .Is(errors::kDataNotFound));
  // Another account's ARN names nothing here.
  EXPECT_TRUE(cp_->ExecuteStatement({"arn:aws:rds:us-east-1:1:db:data", ""}, "SELECT 1", {}, std::nullopt)
                  .status()
                  .Is(errors::kDataBadRequest));
}

// An engine whose server finds the first port it is given taken, as when
// another process binds a port Strata picked before the server does.
class PortTakenOnceEngine : public engine::SqliteEngine {
 public:
  std::string Name() const override { return "port-taken-once"; }
  bool UsesPort() const override { return true; }
  Result<std::string> SealCredentials(const std::string&, const std::string&) const override {
    return std::string("sealed");
  }
  Status Start(const engine::InstanceSpec& spec) override {
    std::lock_guard lock(mu);
    ports.push_back(spec.port);
    if (ports.size() == 1) return Status(errors::kPortInUse, "could not bind: Address already in use");
    return engine::SqliteEngine::Start(spec);
  }
  std::mutex mu;
  std::vector<int> ports;
};

TEST_F(ControlTest, APickedPortFoundTakenIsReplaced) {
  PortTakenOnceEngine eng;
  engine::TEST_RegisterEngine(&eng);
  auto req = Req("srv");
  req.engine = eng.Name();
  req.master_username = "admin1";
  req.master_password = "long-secret-1";
  req.backup_retention_days = 0;
  ASSERT_TRUE(cp_->CreateInstance(req).ok());
  EXPECT_TRUE(WaitFor("srv", InstanceStatus::kAvailable));
  {
    std::lock_guard lock(eng.mu);
    ASSERT_EQ(eng.ports.size(), 2u);
    EXPECT_NE(eng.ports[0], eng.ports[1]);
    EXPECT_EQ(cp_->DescribeInstance("srv")->record.port, eng.ports[1]);
  }
  // A port the caller asked for is not moved: the instance fails instead.
  PortTakenOnceEngine strict;
  engine::TEST_RegisterEngine(&strict);
  auto asked = req;
  asked.id = "asked";
  asked.port = 15999;
  ASSERT_TRUE(cp_->CreateInstance(asked).ok());
  EXPECT_TRUE(WaitFor("asked", InstanceStatus::kFailed));
  {
    std::lock_guard lock(strict.mu);
    EXPECT_EQ(strict.ports, std::vector<int>{15999});
  }
  for (const char* id : {"asked", "srv"}) {
    DeleteInstanceRequest del;
    del.id = id;
    del.skip_final_snapshot = true;
    ASSERT_TRUE(cp_->DeleteInstance(del).ok());
  }
  EXPECT_TRUE(WaitFor("asked", "DBInstanceNotFound"));
  EXPECT_TRUE(WaitFor("srv", "DBInstanceNotFound"));
  engine::TEST_RegisterEngine(nullptr);
}

// A restore under way when stratad stopped is not resumed by a start on a low
// disk, where it would take the space freed for deletes; it runs once space
// is back.
TEST_F(ControlTest, ARestoreFoundAtStartOnALowDiskWaitsForSpace) {
  auto req = Req("src");
  req.backup_retention_days = 0;
  ASSERT_TRUE(cp_->CreateInstance(req).ok());
  ASSERT_TRUE(WaitFor("src", InstanceStatus::kAvailable));
  CreateSnapshotRequest snap{"s1", "src", {}};
  ASSERT_TRUE(cp_->CreateSnapshot(snap).ok());
  std::string repo_id;
  SnapshotQuery s1;
  s1.snapshot_id = "s1";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (repo_id.empty() && std::chrono::steady_clock::now() < deadline) {
    auto s = cp_->DescribeSnapshots(s1);
    if (s.ok() && s->front().record.status == SnapshotStatus::kAvailable) repo_id = s->front().record.repo_snapshot_id;
  }
  ASSERT_FALSE(repo_id.empty());
  auto src = cp_->DescribeInstance("src");
  ASSERT_TRUE(src.ok());
  cp_.reset();
  {
    // As a crash in the middle of a restore leaves it.
    auto cat = catalog::Catalog::Open(dir_ / "catalog.db");
    ASSERT_TRUE(cat.ok());
    catalog::InstanceRecord restoring = src->record;
    restoring.id = "restored";
    restoring.resource_id = "db-RESTOREDRESTOREDRESTORED";
    restoring.data_path = (dir_ / "instances" / restoring.resource_id).string();
    restoring.status = InstanceStatus::kCreating;
    restoring.restore_snapshot = repo_id;
    ASSERT_TRUE((*cat)->InsertInstance(restoring).ok());
  }
  uint64_t free = 0;
  disk::GuardOptions options;
  options.watched = {dir_};
  options.reserve_bytes = 0;
  options.low_water_bytes = 64 << 20;
  options.free_bytes = [&free](const std::filesystem::path&) -> Result<uint64_t> { return free; };
  disk::DiskGuard guard(options);
  guard.Poll();
  Open(&guard);
  cp_->RunScheduler();
  cp_->RunScheduler();
  EXPECT_EQ(cp_->DescribeInstance("restored")->record.status, InstanceStatus::kCreating);
  EXPECT_TRUE(cp_->CreateSnapshot(CreateSnapshotRequest{"s2", "src", {}}).status().Is(errors::kSnapshotQuotaExceeded));
  free = uint64_t{1} << 30;
  cp_->RunScheduler();
  EXPECT_TRUE(WaitFor("restored", InstanceStatus::kAvailable));
  cp_.reset();  // before the guard goes
}

}  // namespace
}  // namespace strata::control
