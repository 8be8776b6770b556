#include "catalog/catalog.h"
#include "catalog/migrations.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/ids.h"
#include "common/sqlite.h"

namespace strata::catalog {
namespace {

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("catalog_test_" + RandomHex(6));
    std::filesystem::create_directories(dir_);
    auto c = Catalog::Open(dir_ / "catalog.db");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    catalog_ = std::move(*c);
  }
  void TearDown() override {
    catalog_.reset();
    std::filesystem::remove_all(dir_);
  }
  InstanceRecord Sample(const std::string& id) {
    InstanceRecord r;
    r.id = id;
    r.resource_id = "db-" + id;
    r.engine = "sqlite";
    r.status = InstanceStatus::kAvailable;
    r.instance_class = "db.t3.micro";
    r.backup_window = "03:00-03:30";
    r.maintenance_window = "sun:05:00-sun:05:30";
    return r;
  }
  std::filesystem::path dir_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(CatalogTest, MigratesToTheLatestVersion) { EXPECT_GE(catalog_->SchemaVersion(), 1); }

TEST_F(CatalogTest, InstancesRoundTripAndSurviveReopen) {
  auto r = Sample("app");
  r.pending_backup_retention_days = 0;
  ASSERT_TRUE(catalog_->InsertInstance(r).ok());
  EXPECT_TRUE(catalog_->InsertInstance(r).Is(errors::kDBInstanceAlreadyExists));
  catalog_.reset();
  auto reopened = Catalog::Open(dir_ / "catalog.db");
  ASSERT_TRUE(reopened.ok());
  catalog_ = std::move(*reopened);
  auto got = catalog_->GetInstance("app");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->resource_id, "db-app");
  EXPECT_EQ(got->pending_backup_retention_days, 0);
  EXPECT_TRUE(catalog_->GetInstance("nope").status().Is(errors::kDBInstanceNotFound));
}

// States are stored under their wire names (no migration for them), and a
// name this build does not know is an error for that row, not a crash.
TEST_F(CatalogTest, StatesAreStoredAsTheirNamesAndUnknownOnesRefused) {
  auto r = Sample("app");
  r.status = InstanceStatus::kBackingUp;
  ASSERT_TRUE(catalog_->InsertInstance(r).ok());
  ASSERT_TRUE(catalog_->InsertInstance(Sample("other")).ok());
  catalog_.reset();
  {
    auto db = sqlite::Db::Open((dir_ / "catalog.db").string()).value();
    auto s = db.Prepare("SELECT status FROM instances WHERE id = 'app'").value();
    ASSERT_TRUE(s.Step().value());
    EXPECT_EQ(s.Text(0), "backing-up");
    ASSERT_TRUE(db.Exec("UPDATE instances SET status = 'hibernating' WHERE id = 'app'").ok());
  }
  catalog_ = Catalog::Open(dir_ / "catalog.db").value();
  EXPECT_TRUE(catalog_->GetInstance("app").status().Is(errors::kInternalFailure));
  auto all = catalog_->ListInstances();
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].id, "other");
  EXPECT_EQ(all[0].status, InstanceStatus::kAvailable);
}

// A catalog from before v4 kept the restore under way as text in
// restore_source; opening it moves that into the typed columns.
TEST_F(CatalogTest, MigrationSplitsTheOldRestoreSource) {
  const auto file = dir_ / "v3.db";
  {
    auto db = sqlite::Db::Open(file.string()).value();
    ASSERT_TRUE(Migrate(db, 3).ok());
    ASSERT_EQ(CurrentSchemaVersion(db), 3);
    const char* insert =
        "INSERT INTO instances (id, resource_id, engine, engine_version, status, instance_class, "
        "allocated_storage, db_name, master_username, port, create_time, backup_retention, backup_window, "
        "maintenance_window, deletion_protection, copy_tags_to_snapshot, pending_backup_retention, data_path, "
        "status_reason, engine_state, restore_source) VALUES "
        "('pitr', 'db-PITR', 'sqlite', '3', 'creating', 'c', 1, '', '', 0, 0, 1, '', '', 0, 0, NULL, '', '', '', "
        "'pitr|repo-snap-1|db-SOURCE|42|1000|2000'), "
        "('plain', 'db-PLAIN', 'sqlite', '3', 'creating', 'c', 1, '', '', 0, 0, 1, '', '', 0, 0, NULL, '', '', '', "
        "'repo-snap-2'), "
        "('idle', 'db-IDLE', 'sqlite', '3', 'available', 'c', 1, '', '', 0, 0, 1, '', '', 0, 0, NULL, '', '', '', '')";
    ASSERT_TRUE(db.Exec(insert).ok());
  }
  auto old = Catalog::Open(file);
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_EQ((*old)->SchemaVersion(), LatestSchemaVersion());
  auto pitr = (*old)->GetInstance("pitr").value();
  EXPECT_EQ(pitr.restore_snapshot, "repo-snap-1");
  ASSERT_TRUE(pitr.restore_replay.has_value());
  EXPECT_EQ(pitr.restore_replay->resource_id, "db-SOURCE");
  EXPECT_EQ(pitr.restore_replay->seq_before, 42);
  EXPECT_EQ(pitr.restore_replay->time_before, TimePoint(std::chrono::microseconds(1000)));
  EXPECT_EQ(pitr.restore_replay->target, TimePoint(std::chrono::microseconds(2000)));
  auto plain = (*old)->GetInstance("plain").value();
  EXPECT_EQ(plain.restore_snapshot, "repo-snap-2");
  EXPECT_FALSE(plain.restore_replay.has_value());
  auto idle = (*old)->GetInstance("idle").value();
  EXPECT_TRUE(idle.restore_snapshot.empty());
  EXPECT_FALSE(idle.restore_replay.has_value());
  // And the typed columns round-trip, cleared too.
  pitr.restore_replay.reset();
  pitr.restore_snapshot.clear();
  ASSERT_TRUE((*old)->UpdateInstance(pitr).ok());
  EXPECT_FALSE((*old)->GetInstance("pitr").value().restore_replay.has_value());
}

TEST_F(CatalogTest, TransactionRollsBackOnError) {
  Status st = catalog_->InTransaction([&]() -> Status {
    RETURN_IF_ERROR(catalog_->InsertInstance(Sample("a")));
    RETURN_IF_ERROR(catalog_->SetTags("arn:a", {{"k", "v"}}));
    return Status(errors::kInternalFailure, "boom");
  });
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(catalog_->ListInstances().empty());
  EXPECT_TRUE(catalog_->ListTags("arn:a").empty());
}

TEST_F(CatalogTest, TagsOverwriteAndRemove) {
  ASSERT_TRUE(catalog_->SetTags("arn:x", {{"a", "1"}, {"b", "2"}}).ok());
  ASSERT_TRUE(catalog_->SetTags("arn:x", {{"a", "3"}}).ok());
  auto tags = catalog_->ListTags("arn:x");
  ASSERT_EQ(tags.size(), 2u);
  EXPECT_EQ(tags[0].value, "3");
  ASSERT_TRUE(catalog_->RemoveTags("arn:x", {"a", "missing"}).ok());
  EXPECT_EQ(catalog_->ListTags("arn:x").size(), 1u);
}

TEST_F(CatalogTest, EventsFilterByTimeTypeAndCategory) {
  TimePoint t0{std::chrono::seconds(1000)};
  ASSERT_TRUE(catalog_->AddEvent({0, t0, "db-instance", "app", "arn", "created", {"creation"}}).ok());
  ASSERT_TRUE(catalog_->AddEvent({0, t0 + std::chrono::seconds(10), "db-snapshot", "s", "arn2",
                                  "backup", {"backup", "creation"}}).ok());
  EventQuery q;
  EXPECT_EQ(catalog_->ListEvents(q).size(), 2u);
  q.source_type = "db-snapshot";
  EXPECT_EQ(catalog_->ListEvents(q).size(), 1u);
  q = {};
  q.categories = {"backup"};
  EXPECT_EQ(catalog_->ListEvents(q).size(), 1u);
  q = {};
  q.start = t0 + std::chrono::seconds(5);
  EXPECT_EQ(catalog_->ListEvents(q).size(), 1u);
}

}  // namespace
}  // namespace strata::catalog
