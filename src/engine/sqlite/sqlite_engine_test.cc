#include "engine/sqlite/sqlite_engine.h"

#include <gtest/gtest.h>

#include "common/ids.h"
#include "common/sqlite.h"
#include "engine/sqlite/sqlite_wal.h"

#include <atomic>
#include <thread>

namespace strata::engine {
namespace {

class SqliteEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_.id = "app";
    spec_.resource_id = "db-TEST";
    spec_.data_dir = std::filesystem::temp_directory_path() / ("engine_test_" + RandomHex(6));
    ASSERT_TRUE(engine_.Create(spec_).ok());
    ASSERT_TRUE(engine_.Start(spec_).ok());
  }
  void TearDown() override { ASSERT_TRUE(engine_.Destroy(spec_).ok()); }
  SqliteEngine engine_;
  InstanceSpec spec_;
};

// Opens the database at `path`, expects PRAGMA integrity_check to pass, and
// returns table seq's row count and largest id (0 when empty).
std::pair<int64_t, int64_t> IntactSeqCountAndMax(const std::string& path) {
  auto row = [](auto& stmt) {
    auto stepped = stmt.Step();
    return stepped.ok() && *stepped;
  };
  auto db = sqlite::Db::Open(path);
  if (!db.ok()) {
    ADD_FAILURE() << db.status().ToString();
    return {-1, -1};
  }
  auto check = db->Prepare("PRAGMA integrity_check");
  if (!check.ok() || !row(*check)) {
    ADD_FAILURE() << "integrity_check did not run on " << path;
    return {-1, -1};
  }
  EXPECT_EQ(check->Text(0), "ok") << path;
  auto q = db->Prepare("SELECT count(*), coalesce(max(id), 0) FROM seq");
  if (!q.ok() || !row(*q)) {
    ADD_FAILURE() << "cannot count seq in " << path;
    return {-1, -1};
  }
  return {q->Int(0), q->Int(1)};
}

TEST_F(SqliteEngineTest, CreatesADatabaseInWalMode) {
  auto db = sqlite::Db::Open(SqliteEngine::DatabaseFile(spec_).string());
  ASSERT_TRUE(db.ok());
  auto s = db->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(*s->Step());
  EXPECT_EQ(s->Text(0), "wal");
  EXPECT_TRUE(engine_.Create(spec_).ok()) << "create must be idempotent";
}

TEST_F(SqliteEngineTest, ExecutesWithTypedParametersAndResults) {
  auto session = engine_.OpenSession(spec_, "", SessionLimits{});
  ASSERT_TRUE(session.ok());
  auto& s = **session;
  ASSERT_TRUE(s.Execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, score REAL, data BLOB)", {}).ok());
  auto ins = s.Execute("INSERT INTO t (name, score, data) VALUES (:name, :score, :data)",
                       {{"name", std::string("ann")}, {"score", 1.5}, {"data", Blob{"\x01\x02"}}});
  ASSERT_TRUE(ins.ok()) << ins.status().ToString();
  EXPECT_EQ(ins->rows_updated, 1);
  ASSERT_EQ(ins->generated_fields.size(), 1u);
  EXPECT_EQ(std::get<int64_t>(ins->generated_fields[0]), 1);
  auto sel = s.Execute("SELECT id, name, score, data, NULL AS nada FROM t WHERE id = :id",
                       {{"id", int64_t{1}}});
  ASSERT_TRUE(sel.ok()) << sel.status().ToString();
  ASSERT_EQ(sel->rows.size(), 1u);
  EXPECT_EQ(std::get<std::string>(sel->rows[0][1]), "ann");
  EXPECT_EQ(std::get<double>(sel->rows[0][2]), 1.5);
  EXPECT_EQ(std::get<Blob>(sel->rows[0][3]).bytes, "\x01\x02");
  EXPECT_TRUE(std::holds_alternative<std::monostate>(sel->rows[0][4]));
  EXPECT_EQ(sel->columns[1].type_name, "TEXT");
}

TEST_F(SqliteEngineTest, SqlErrorsAreBadRequestsWithSqlitesMessage) {
  auto session = engine_.OpenSession(spec_, "", SessionLimits{});
  ASSERT_TRUE(session.ok());
  auto r = (*session)->Execute("SELEC 1", {});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().Is(errors::kDataBadRequest));
  EXPECT_NE(r.status().message().find("syntax error"), std::string::npos);
  EXPECT_TRUE((*session)->Execute("   ", {}).status().Is(errors::kDataBadRequest));
}

TEST_F(SqliteEngineTest, TransactionsRollBack) {
  auto a = engine_.OpenSession(spec_, "", SessionLimits{});
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*a)->Execute("CREATE TABLE t (x)", {}).ok());
  ASSERT_TRUE((*a)->Begin().ok());
  ASSERT_TRUE((*a)->Execute("INSERT INTO t VALUES (1)", {}).ok());
  ASSERT_TRUE((*a)->Rollback().ok());
  auto n = (*a)->Execute("SELECT count(*) FROM t", {});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(std::get<int64_t>(n->rows[0][0]), 0);
}

// The Data API's confinement: what RDS's Data API allows on the instance's
// own database runs; what reaches other files or the engine is refused.
class SqliteDataApiRulesTest : public SqliteEngineTest {
 protected:
  void SetUp() override {
    SqliteEngineTest::SetUp();
    auto s = engine_.OpenSession(spec_, "", SessionLimits{});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    session_ = std::move(*s);
    ASSERT_TRUE(session_->Execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v)", {}).ok());
  }
  void TearDown() override {
    session_.reset();
    SqliteEngineTest::TearDown();
  }
  Status Run(const std::string& sql) { return session_->Execute(sql, {}).status(); }
  void ExpectRefused(const std::string& sql) {
    Status st = Run(sql);
    EXPECT_TRUE(st.Is(errors::kDataBadRequest)) << sql << ": " << st.ToString();
    EXPECT_NE(st.message().find("not allowed"), std::string::npos) << sql << ": " << st.ToString();
  }
  std::unique_ptr<Session> session_;
};

TEST_F(SqliteDataApiRulesTest, OrdinarySqlRuns) {
  for (const char* sql : {
           "INSERT INTO t (v) VALUES (1)", "UPDATE t SET v = 2", "SELECT * FROM t", "DELETE FROM t WHERE v = 3",
           "CREATE INDEX t_v ON t (v)", "CREATE VIEW tv AS SELECT v FROM t",
           "CREATE TRIGGER tt AFTER INSERT ON t BEGIN UPDATE t SET v = v WHERE id = new.id; END",
           "ALTER TABLE t ADD COLUMN w", "ALTER TABLE t RENAME COLUMN w TO w2", "CREATE TABLE u (a)",
           "ALTER TABLE u RENAME TO u2", "DROP TABLE u2", "CREATE TEMP TABLE scratch (a)",
           "INSERT INTO temp.scratch VALUES (1)", "SELECT * FROM main.t JOIN temp.scratch",
           "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 10) SELECT sum(x) FROM c",
           "BEGIN", "SAVEPOINT s", "RELEASE s", "COMMIT", "ANALYZE", "REINDEX", "VACUUM",
           "PRAGMA table_info(t)", "PRAGMA table_xinfo(t)", "PRAGMA index_list(t)", "PRAGMA index_info(t_v)",
           "PRAGMA foreign_key_list(t)", "PRAGMA foreign_keys", "PRAGMA foreign_keys = ON",
           "PRAGMA integrity_check", "PRAGMA quick_check", "PRAGMA user_version",
           "SELECT name FROM pragma_table_info('t')", "CREATE VIRTUAL TABLE f USING fts5(body)",
           "INSERT INTO f VALUES ('hello world')", "SELECT * FROM f WHERE f MATCH 'hello'",
           "DROP VIEW tv", "DROP TRIGGER tt", "DROP INDEX t_v"}) {
    Status st = Run(sql);
    EXPECT_TRUE(st.ok()) << sql << ": " << st.ToString();
  }
}

TEST_F(SqliteDataApiRulesTest, OtherFilesAreOutOfReach) {
  auto outside = spec_.data_dir / "outside.db";
  ExpectRefused("ATTACH '" + outside.string() + "' AS x");
  ExpectRefused("ATTACH '' AS x");
  ExpectRefused("ATTACH ':memory:' AS x");
  ExpectRefused("ATTACH 'file:" + outside.string() + "?mode=rwc' AS x");
  ExpectRefused("DETACH temp");
  ExpectRefused("VACUUM INTO '" + outside.string() + "'");
  ExpectRefused("VACUUM main INTO '" + outside.string() + "'");
  EXPECT_FALSE(std::filesystem::exists(outside));
  // Refused statements leave the session usable.
  EXPECT_TRUE(Run("SELECT count(*) FROM t").ok());
}

TEST_F(SqliteDataApiRulesTest, EngineLevelPragmasAndFunctionsAreRefused) {
  for (const char* sql :
       {"PRAGMA journal_mode", "PRAGMA journal_mode = DELETE", "PRAGMA main.journal_mode = OFF",
        "PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA wal_autocheckpoint = 0", "PRAGMA synchronous = OFF",
        "PRAGMA locking_mode = EXCLUSIVE", "PRAGMA writable_schema = ON", "PRAGMA mmap_size = 268435456",
        "PRAGMA cache_size = -2000000", "PRAGMA temp_store_directory = '/tmp'", "PRAGMA schema_version = 1",
        "PRAGMA secure_delete = OFF", "PRAGMA auto_vacuum = FULL", "PRAGMA page_size = 512",
        "PRAGMA trusted_schema = ON", "PRAGMA busy_timeout = 100000", "SELECT * FROM pragma_journal_mode",
        "SELECT fts3_tokenizer('simple')", "SELECT load_extension('libm.so.6')"}) {
    ExpectRefused(sql);
  }
  // A view is checked where it is used.
  ASSERT_TRUE(Run("CREATE VIEW leak AS SELECT fts3_tokenizer('simple') AS p").ok());
  EXPECT_TRUE(Run("SELECT p FROM leak").Is(errors::kDataBadRequest));
  auto db = sqlite::Db::Open(SqliteEngine::DatabaseFile(spec_).string());
  ASSERT_TRUE(db.ok());
  auto mode = db->Prepare("PRAGMA journal_mode");
  ASSERT_TRUE(mode.ok());
  ASSERT_TRUE(*mode->Step());
  EXPECT_EQ(mode->Text(0), "wal");
}

TEST_F(SqliteDataApiRulesTest, TheEnginesOwnConnectionsAreNotConfined) {
  // Capture and snapshots open the file themselves and keep every power.
  auto db = sqlite::Db::Open(SqliteEngine::DatabaseFile(spec_).string());
  ASSERT_TRUE(db.ok());
  EXPECT_TRUE(db->Exec("PRAGMA wal_checkpoint(PASSIVE)").ok());
}

TEST_F(SqliteDataApiRulesTest, SqlWithANulIsRefusedAtOnce) {
  std::string sql("SELECT 1;\0 SELECT 2", 19);
  Status st = Run(sql);
  EXPECT_TRUE(st.Is(errors::kDataBadRequest)) << st.ToString();
  EXPECT_NE(st.message().find("NUL"), std::string::npos);
}

TEST_F(SqliteEngineTest, ARunawayStatementEndsAtItsDeadline) {
  SessionLimits limits;
  limits.statement_timeout = std::chrono::milliseconds(200);
  auto s = engine_.OpenSession(spec_, "", limits);
  ASSERT_TRUE(s.ok());
  auto start = std::chrono::steady_clock::now();
  auto r = (*s)->Execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c", {});
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().Is(errors::kDataStatementTimeout)) << r.status().ToString();
  EXPECT_LT(took, std::chrono::seconds(2));
  EXPECT_TRUE((*s)->Execute("SELECT 1", {}).ok()) << "the next call gets a fresh deadline";
}

TEST_F(SqliteEngineTest, AResultOverTheLimitIsRefusedBeforeItIsRead) {
  auto s = engine_.OpenSession(spec_, "", SessionLimits{});
  ASSERT_TRUE(s.ok());
  auto r = (*s)->Execute("SELECT zeroblob(400000000)", {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), kResultTooLargeMessage);
  EXPECT_TRUE((*s)->Execute("SELECT zeroblob(1000000)", {}).ok());
}

TEST_F(SqliteEngineTest, WritersQueueBehindAnOpenTransactionAndGetBusyInTime) {
  SessionLimits limits;
  limits.lock_timeout = std::chrono::milliseconds(300);
  limits.max_queued_writers = 1;
  auto holder = engine_.OpenSession(spec_, "", limits);
  ASSERT_TRUE(holder.ok());
  ASSERT_TRUE((*holder)->Execute("CREATE TABLE t (x)", {}).ok());
  ASSERT_TRUE((*holder)->Begin().ok());
  ASSERT_TRUE((*holder)->Execute("INSERT INTO t VALUES (1)", {}).ok());
  auto other = engine_.OpenSession(spec_, "", limits);
  ASSERT_TRUE(other.ok());
  auto start = std::chrono::steady_clock::now();
  auto r = (*other)->Execute("INSERT INTO t VALUES (2)", {});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("busy"), std::string::npos) << r.status().ToString();
  EXPECT_TRUE((*other)->Execute("SELECT count(*) FROM t", {}).ok()) << "readers are not queued";
  // A writer waiting in the queue goes as soon as the holder commits.
  std::thread waiter([&] {
    auto w = engine_.OpenSession(spec_, "", SessionLimits{});
    ASSERT_TRUE(w.ok());
    EXPECT_TRUE((*w)->Execute("INSERT INTO t VALUES (3)", {}).ok());
  });
  ASSERT_TRUE((*holder)->Commit().ok());
  waiter.join();
  auto n = (*other)->Execute("SELECT count(*) FROM t", {});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(std::get<int64_t>(n->rows[0][0]), 2);
}

// A snapshot's read transaction keeps the WAL from restarting, so every commit
// meanwhile would extend the file; the view keeps zeros ahead of the writer
// instead, and the zeros lose nothing: a copy of the files as they stand (what
// a crash leaves) recovers every commit.
TEST_F(SqliteEngineTest, AViewKeepsTheWalAheadOfTheWriterAndLosesNothing) {
  const std::string path = SqliteEngine::DatabaseFile(spec_).string();
  auto db = sqlite::Db::Open(path);
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->Exec("CREATE TABLE seq (id INTEGER PRIMARY KEY, pad BLOB)").ok());
  auto view = engine_.OpenSnapshot(spec_, TimePoint{});
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  std::vector<std::byte> page(4096);
  auto read = [&] { ASSERT_TRUE((*view)->Files()[0].read_at(0, page).ok()); };
  auto room = [&]() -> int64_t {
    auto wal = ReadWalIndex(path + "-wal");
    EXPECT_TRUE(wal.ok());
    uint64_t end = kWalHeaderSize + wal->committed_frames * (kWalFrameHeaderSize + wal->page_size);
    return static_cast<int64_t>(std::filesystem::file_size(path + "-wal")) - static_cast<int64_t>(end);
  };
  // No writer, no zeros: the room is kept only once commits push the file's end.
  const auto idle_size = std::filesystem::file_size(path + "-wal");
  for (auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
       std::chrono::steady_clock::now() < until;) {
    read();  // several of the readers' checks (every 10 ms) run meanwhile
  }
  EXPECT_EQ(std::filesystem::file_size(path + "-wal"), idle_size);

  constexpr int kRows = 6000;  // about 24 MiB of frames
  for (int i = 1; i <= kRows; ++i) {
    ASSERT_TRUE(db->Exec("INSERT INTO seq VALUES (" + std::to_string(i) + ", randomblob(3000))").ok());
    if (i % 50 == 0) read();  // the snapshot's readers check the room as they go
  }
  EXPECT_GT(std::filesystem::file_size(path + "-wal"), 24u << 20);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (room() < (8 << 20) && std::chrono::steady_clock::now() < deadline) read();
  EXPECT_GE(room(), 8 << 20) << "the WAL file should reach well past its last frame";

  // What a crash leaves: the database and its WAL, zeros and all.
  auto copy = spec_.data_dir / "crash-copy.db";
  std::filesystem::copy_file(path, copy);
  std::filesystem::copy_file(path + "-wal", copy.string() + "-wal");
  view->reset();
  EXPECT_EQ(IntactSeqCountAndMax(copy.string()), std::make_pair(int64_t{kRows}, int64_t{kRows}));
  // The writer goes on over the zeros once the view is gone.
  ASSERT_TRUE(db->Exec("INSERT INTO seq VALUES (" + std::to_string(kRows + 1) + ", randomblob(3000))").ok());
}

}  // namespace
}  // namespace strata::engine

namespace strata::engine {
namespace {

// Copies a snapshot view into a standalone file, as a restore would.
void Materialize(const SnapshotView& v, const std::filesystem::path& out) {
  const auto& f = v.Files().at(0);
  std::string bytes(f.size, '\0');
  auto n = f.read_at(0, std::span<std::byte>(reinterpret_cast<std::byte*>(bytes.data()), bytes.size()));
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  ASSERT_EQ(*n, f.size);
  FILE* fp = fopen(out.c_str(), "wb");
  ASSERT_NE(fp, nullptr);
  fwrite(bytes.data(), 1, bytes.size(), fp);
  fclose(fp);
}

TEST_F(SqliteEngineTest, SnapshotsAreConsistentWhileAWriterRuns) {
  {
    auto s = engine_.OpenSession(spec_, "", SessionLimits{});
    ASSERT_TRUE(s.ok());
    ASSERT_TRUE((*s)->Execute("CREATE TABLE seq (id INTEGER PRIMARY KEY, pad TEXT)", {}).ok());
  }
  std::atomic<bool> stop{false};
  std::atomic<int64_t> written{0};
  std::thread writer([&] {
    auto db = sqlite::Db::Open(SqliteEngine::DatabaseFile(spec_).string());
    ASSERT_TRUE(db.ok());
    for (int64_t i = 1; !stop; ++i) {
      std::string sql = "INSERT INTO seq VALUES (" + std::to_string(i) + ", hex(randomblob(300)))";
      ASSERT_TRUE(db->Exec(sql).ok());
      written = i;
      if (i % 500 == 0) {
        ASSERT_TRUE(db->Exec("PRAGMA wal_checkpoint(PASSIVE)").ok());
      }
    }
  });
  while (written < 200) std::this_thread::yield();
  for (int round = 0; round < 5; ++round) {
    auto view = engine_.OpenSnapshot(spec_, TimePoint{});
    ASSERT_TRUE(view.ok()) << view.status().ToString();
    auto copy = spec_.data_dir / ("copy" + std::to_string(round) + ".db");
    Materialize(**view, copy);
    view->reset();
    auto [count, max_id] = IntactSeqCountAndMax(copy.string());
    EXPECT_EQ(count, max_id) << "ids must be a gap-free prefix";
    EXPECT_GE(count, 200);
  }
  stop = true;
  writer.join();
}

}  // namespace
}  // namespace strata::engine
