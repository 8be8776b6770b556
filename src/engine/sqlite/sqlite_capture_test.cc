#include <gtest/gtest.h>

#include <filesystem>

#include <fmt/format.h>

#include "common/clock.h"
#include "common/ids.h"
#include "common/sqlite.h"
#include "engine/sqlite/sqlite_engine.h"

namespace strata::engine {
namespace {

namespace fs = std::filesystem;

// The capture's WAL working size at 4 KiB pages: 8000 frames and the header.
constexpr uint64_t kReservedWalBytes = 32 + 8000 * (4096 + 24);

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
  EXPECT_LE(wal, kReservedWalBytes) << "capture's checkpoints keep the WAL within its working size";
}

// A backlog far larger than one poll's read is taken over several polls of
// at most 8 MiB of whole transactions each (not all at once), each but the
// last incomplete, none with a gap; a transaction still being written (its
// frames spilled to the WAL) is not read until it commits.
TEST_F(SqliteCaptureTest, ABacklogIsReadInBoundedBatchesAndLosesNothing) {
  auto cap = engine_.StartCapture(spec_, clock_, "");
  ASSERT_TRUE(cap.ok());
  Drain(**cap);
  InstanceSpec base = Base();
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(app_.Exec("INSERT INTO t (v) VALUES (hex(randomblob(500000)))").ok());  // 1 MB of text
  }
  std::vector<std::string> redo;
  int polls = 0, incomplete = 0;
  for (;;) {
    auto b = (*cap)->Poll();
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    EXPECT_FALSE(b->gap);
    ++polls;
    size_t bytes = 0;
    for (auto& t : b->transactions) {
      bytes += t.redo.size();
      redo.push_back(std::move(t.redo));
    }
    EXPECT_LE(bytes, (8u << 20) + (2u << 20)) << "8 MiB of whole transactions, at most one more";
    if (!b->complete) ++incomplete;
    if (b->complete) break;
    ASSERT_LT(polls, 100);
  }
  EXPECT_GE(incomplete, 3) << "40 MB of commits take several polls";
  EXPECT_EQ(redo.size(), 40u);

  ASSERT_TRUE(app_.Exec("BEGIN").ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(app_.Exec("INSERT INTO t (v) VALUES (hex(randomblob(500000)))").ok());
  auto open_tx = (*cap)->Poll();
  ASSERT_TRUE(open_tx.ok());
  EXPECT_TRUE(open_tx->transactions.empty()) << "not committed yet";
  EXPECT_TRUE(open_tx->complete);
  ASSERT_TRUE(app_.Exec("COMMIT").ok());
  for (auto& r : Drain(**cap)) redo.push_back(std::move(r));
  EXPECT_EQ(redo.size(), 41u);
  ASSERT_TRUE(engine_.ApplyTransactions(base, redo).ok());
  EXPECT_EQ(Count(base), 50);
}

// A WAL that only ever grows to the capture's working size, given up front
// in zeros: SQLite must read and recover it as if it had grown by itself.
TEST_F(SqliteCaptureTest, TheWalGetsItsWorkingSizeUpFrontAndStaysAWalSqliteReads) {
  InstanceSpec fresh = spec_;
  fresh.id = "fresh";
  fresh.data_dir = root_ / "fresh";
  ASSERT_TRUE(engine_.Create(fresh).ok());
  ASSERT_TRUE(engine_.Start(fresh).ok());
  const std::string db_file = SqliteEngine::DatabaseFile(fresh).string();
  auto cap = engine_.StartCapture(fresh, clock_, "");
  ASSERT_TRUE(cap.ok());
  EXPECT_GE(fs::file_size(db_file + "-wal"), kReservedWalBytes) << "reserved before any frame was written";
  {
    auto app = sqlite::Db::Open(db_file);
    ASSERT_TRUE(app.ok());
    ASSERT_TRUE(app->Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)").ok());
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(app->Exec("INSERT INTO t (v) VALUES (hex(randomblob(300)))").ok());
  }
  EXPECT_EQ(Drain(**cap).size(), 101u);
  EXPECT_GE(fs::file_size(db_file + "-wal"), kReservedWalBytes);
  cap->reset();
  // Every connection closed: the next one rebuilds the WAL index from the
  // file (recovery), which must stop at the zeros past the last frame.
  fs::remove(db_file + "-shm");
  EXPECT_EQ(Count(fresh), 100);
  auto db = sqlite::Db::Open(db_file);
  ASSERT_TRUE(db.ok());
  auto check = db->Prepare("PRAGMA integrity_check");
  ASSERT_TRUE(check.ok());
  ASSERT_TRUE(*check->Step());
  EXPECT_EQ(check->Text(0), "ok");
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

// The bytes a snapshot view would hold now.
std::string ViewBytes(SqliteEngine& engine, const InstanceSpec& spec, const Clock& clock) {
  auto view = engine.OpenSnapshot(spec, clock.Now());
  EXPECT_TRUE(view.ok());
  const auto& f = (*view)->Files()[0];
  std::string bytes(f.size, '\0');
  EXPECT_TRUE(f.read_at(0, std::as_writable_bytes(std::span(bytes))).ok());
  return bytes;
}

// Every byte where `a` and `b` differ (within the shorter, and all of the
// longer past it) lies inside `ranges`.
void ExpectDifferencesInside(const std::string& a, const std::string& b, const std::vector<ByteRange>& ranges) {
  auto inside = [&](uint64_t off) {
    for (const auto& r : ranges)
      if (off >= r.offset && off - r.offset < r.length) return true;
    return false;
  };
  size_t common = std::min(a.size(), b.size());
  int bad = 0;
  for (size_t i = 0; i < common && bad < 5; ++i) {
    if (a[i] != b[i] && !inside(i)) {
      ADD_FAILURE() << "byte " << i << " (page " << i / 4096 + 1 << ") changed outside the ranges";
      ++bad;
    }
  }
}

TEST_F(SqliteCaptureTest, ChangedRangesCoverEveryByteTheLogChanged) {
  Insert(2000);
  auto cap = engine_.StartCapture(spec_, clock_, "");
  ASSERT_TRUE(cap.ok());
  (void)Drain(**cap);
  std::string before = ViewBytes(engine_, spec_, clock_);

  // Random updates, an application checkpoint in the middle (pages move from
  // the WAL into the file), and growth.
  std::vector<std::string> redo;
  for (int k = 0; k < 40; ++k) {
    ASSERT_TRUE(app_.Exec(fmt::format("UPDATE t SET v = hex(randomblob(300)) WHERE id = {}", 1 + (k * 7919) % 2000)).ok());
    if (k == 20) {
      auto part = Drain(**cap);
      redo.insert(redo.end(), part.begin(), part.end());
      ASSERT_TRUE(app_.Exec("PRAGMA wal_checkpoint(PASSIVE)").ok());
    }
  }
  Insert(100);
  auto rest = Drain(**cap);
  redo.insert(redo.end(), rest.begin(), rest.end());
  std::string after = ViewBytes(engine_, spec_, clock_);
  ASSERT_GT(after.size(), before.size());

  auto ranges = engine_.ChangedRanges(redo);
  ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
  ASSERT_TRUE(ranges->has_value());
  ASSERT_EQ((*ranges)->size(), 1u);
  const auto& r = (*ranges)->at(SqliteEngine::kFileName);
  ExpectDifferencesInside(before, after, r);
  uint64_t covered = 0;
  for (const auto& x : r) {
    if (x.offset < after.size()) covered += std::min<uint64_t>(x.length, after.size() - x.offset);
  }
  EXPECT_LT(covered, after.size() / 2) << "40 updated rows are not most of the file";

  // Union over two stretches covers the whole, and a shrink (VACUUM) marks
  // everything past the smallest size.
  ASSERT_TRUE(app_.Exec("DELETE FROM t WHERE id % 2 = 0").ok());
  ASSERT_TRUE(app_.Exec("VACUUM").ok());
  Insert(300);
  auto shrink = Drain(**cap);
  std::string last = ViewBytes(engine_, spec_, clock_);
  auto r1 = engine_.ChangedRanges(redo).value().value().at(SqliteEngine::kFileName);
  auto r2 = engine_.ChangedRanges(shrink).value().value().at(SqliteEngine::kFileName);
  r1.insert(r1.end(), r2.begin(), r2.end());
  ExpectDifferencesInside(before, last, r1);

  // Nothing captured: the file is named, with no ranges.
  auto none = engine_.ChangedRanges({});
  ASSERT_TRUE(none.ok() && none->has_value());
  EXPECT_TRUE((*none)->at(SqliteEngine::kFileName).empty());
  // A torn record is an error, not a guess.
  EXPECT_FALSE(engine_.ChangedRanges({std::string("abc")}).ok());
}

}  // namespace
}  // namespace strata::engine
