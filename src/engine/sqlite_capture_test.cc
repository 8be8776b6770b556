#include <gtest/gtest.h>

#include <filesystem>

#include "common/clock.h"
#include "common/ids.h"
#include "common/sqlite.h"
#include "engine/sqlite_engine.h"

namespace strata::engine {
namespace {

namespace fs = std::filesystem;

class SqliteCaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("capture_test_" + RandomHex(6));
    spec_.id = "app";
    spec_.data_dir = root_ / "src";
    ASSERT_TRUE(engine_.Create(spec_).ok());
    ASSERT_TRUE(engine_.Start(spec_).ok());
    auto db = sqlite::Db::Open(SqliteEngine::DatabaseFile(spec_).string());
    ASSERT_TRUE(db.ok());
    app_ = std::move(*db);
    // A FULL/RESTART/TRUNCATE checkpoint waits out its busy timeout while the
    // capture's read transaction stands; applications should not wait long.
    sqlite3_busy_timeout(app_.get(), 5);
    ASSERT_TRUE(app_.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)").ok());
  }
  void TearDown() override { fs::remove_all(root_); }

  // A copy of the database as a base snapshot would hold it now.
  InstanceSpec Base() {
    InstanceSpec copy = spec_;
    copy.data_dir = root_ / ("copy" + std::to_string(copies_++));
    fs::create_directories(copy.data_dir);
    auto view = engine_.OpenSnapshot(spec_, clock_.Now());
    EXPECT_TRUE(view.ok());
    const auto& f = (*view)->Files()[0];
    std::string bytes(f.size, '\0');
    EXPECT_TRUE(f.read_at(0, std::as_writable_bytes(std::span(bytes))).ok());
    FILE* out = std::fopen((copy.data_dir / SqliteEngine::kFileName).c_str(), "wb");
    std::fwrite(bytes.data(), 1, bytes.size(), out);
    std::fclose(out);
    return copy;
  }

  int64_t Count(const InstanceSpec& s) {
    auto db = sqlite::Db::Open(SqliteEngine::DatabaseFile(s).string());
    auto st = db->Prepare("SELECT count(*) FROM t");
    EXPECT_TRUE(*st->Step());
    return st->Int(0);
  }

  void Insert(int n) {
    for (int i = 0; i < n; ++i) ASSERT_TRUE(app_.Exec("INSERT INTO t (v) VALUES (hex(randomblob(300)))").ok());
  }

  std::vector<std::string> Drain(ChangeCapture& c, bool* gap = nullptr) {
    std::vector<std::string> redo;
    for (;;) {
      auto b = c.Poll();
      EXPECT_TRUE(b.ok()) << b.status().ToString();
      if (gap) *gap = *gap || b->gap;
      if (b->transactions.empty()) return redo;
      for (auto& t : b->transactions) redo.push_back(std::move(t.redo));
    }
  }

  fs::path root_;
  SqliteEngine engine_;
  InstanceSpec spec_;
  ManualClock clock_{TimePoint{} + std::chrono::hours(1)};
  sqlite::Db app_;
  int copies_ = 0;
};

TEST_F(SqliteCaptureTest, ReplayingCapturedCommitsOntoABaseReproducesTheDatabase) {
  auto cap = engine_.StartCapture(spec_, clock_, "");
  ASSERT_TRUE(cap.ok()) << cap.status().ToString();
  bool gap = false;
  Drain(**cap, &gap);
  EXPECT_TRUE(gap) << "a capture started without a position opens a new epoch";
  InstanceSpec base = Base();
  Insert(50);
  auto redo = Drain(**cap);
  EXPECT_EQ(redo.size(), 50u) << "one record per commit";
  ASSERT_TRUE(engine_.ApplyTransactions(base, redo).ok());
  EXPECT_EQ(Count(base), 50);
}

TEST_F(SqliteCaptureTest, ApplicationCheckpointsAndCaptureCheckpointsLoseNothing) {
  auto cap = engine_.StartCapture(spec_, clock_, "");
  ASSERT_TRUE(cap.ok());
  Drain(**cap);
  InstanceSpec base = Base();
  std::vector<std::string> redo;
  bool gap = false;
  for (int round = 0; round < 30; ++round) {
    Insert(40);  // 30 x 40 commits: past the capture's own checkpoint threshold
    ASSERT_TRUE(app_.Exec("PRAGMA wal_checkpoint(TRUNCATE)").ok());
    for (auto& r : Drain(**cap, &gap)) redo.push_back(std::move(r));
  }
  EXPECT_FALSE(gap);
  EXPECT_EQ(redo.size(), 1200u);
  ASSERT_TRUE(engine_.ApplyTransactions(base, redo).ok());
  EXPECT_EQ(Count(base), 1200);
  auto wal = fs::file_size(SqliteEngine::DatabaseFile(spec_).string() + "-wal");
  EXPECT_LT(wal, 16u << 20) << "capture's checkpoints keep the WAL bounded";
}

TEST_F(SqliteCaptureTest, ResumesFromItsPositionAndReportsAGapWhenItCannot) {
  std::string pos;
  {
    auto cap = engine_.StartCapture(spec_, clock_, "");
    Drain(**cap);
    Insert(3);
    Drain(**cap);
    pos = (*cap)->Position();
  }
  Insert(2);  // committed while no capture ran: still in the WAL
  auto cap = engine_.StartCapture(spec_, clock_, pos);
  ASSERT_TRUE(cap.ok());
  bool gap = false;
  EXPECT_EQ(Drain(**cap, &gap).size(), 2u);
  EXPECT_FALSE(gap);
  pos = (*cap)->Position();
  cap->reset();
  // Another process checkpoints and restarts the WAL behind the capture's back.
  Insert(1);
  ASSERT_TRUE(app_.Exec("PRAGMA wal_checkpoint(TRUNCATE)").ok());
  Insert(1);
  auto again = engine_.StartCapture(spec_, clock_, pos);
  ASSERT_TRUE(again.ok());
  gap = false;
  Drain(**again, &gap);
  EXPECT_TRUE(gap);
}

}  // namespace
}  // namespace strata::engine
