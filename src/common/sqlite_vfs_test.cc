#include "common/sqlite_vfs.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "common/sqlite.h"

namespace strata::sqlite {
namespace {

namespace fs = std::filesystem;

// The VFS only adds work before a -shm region is mapped: WAL databases with
// several connections work through it as through SQLite's own, and the
// -shm file's regions are written blocks, not holes.
TEST(ShmSafeVfsTest, IsTheDefaultAndWalDatabasesWorkThroughIt) {
  fs::path dir = fs::temp_directory_path() / ("vfs_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string path = (dir / "d.db").string();
  {
    auto writer = Db::Open(path);
    ASSERT_TRUE(writer.ok()) << writer.status().ToString();
    EXPECT_STREQ(sqlite3_vfs_find(nullptr)->zName, "strata-unix");
    ASSERT_TRUE(writer->Exec("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);").ok());
    auto reader = Db::Open(path, SQLITE_OPEN_READONLY);
    ASSERT_TRUE(reader.ok());
    auto count = reader->Prepare("SELECT count(*) FROM t");
    ASSERT_TRUE(count.ok());
    auto row = count->Step();
    ASSERT_TRUE(row.ok() && *row);
    EXPECT_EQ(count->Int(0), 2);
    struct stat st {};
    ASSERT_EQ(::stat((path + "-shm").c_str(), &st), 0);
    EXPECT_GE(st.st_size, 32768);
    EXPECT_GE(st.st_blocks * 512, st.st_size) << "every block of the -shm file is allocated";
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace strata::sqlite
