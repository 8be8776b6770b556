#include "common/private_files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace strata {
namespace {

namespace fs = std::filesystem;

mode_t ModeOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(lstat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

void Touch(const fs::path& p, mode_t mode) {
  std::ofstream(p).put('x');
  ASSERT_EQ(chmod(p.c_str(), mode), 0);
}

// What an older build (umask 022) left: everything group- and
// world-readable. One start later only the owner can read it.
TEST(PrivateFilesTest, TakesGroupAndOtherRightsFromWhatAnOlderBuildLeft) {
  fs::path dir = fs::temp_directory_path() / ("private-files-test-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "instances" / "db-SQLITE");
  fs::create_directories(dir / "repo" / "chunks");
  Touch(dir / "catalog.db", 0644);
  Touch(dir / "catalog.db-wal", 0664);
  Touch(dir / "credentials", 0600);
  Touch(dir / "instances" / "db-SQLITE" / "data.db", 0644);
  Touch(dir / "repo" / "chunks" / "c1", 0644);
  for (const auto& d : {dir, dir / "instances", dir / "instances" / "db-SQLITE", dir / "repo"}) {
    ASSERT_EQ(chmod(d.c_str(), 0755), 0);
  }
  fs::create_symlink("/etc/passwd", dir / "link");

  ASSERT_TRUE(PrivatizeDataDir(dir).ok());
  EXPECT_EQ(ModeOf(dir), 0700);
  EXPECT_EQ(ModeOf(dir / "catalog.db"), 0600);
  EXPECT_EQ(ModeOf(dir / "catalog.db-wal"), 0600);
  EXPECT_EQ(ModeOf(dir / "credentials"), 0600);
  EXPECT_EQ(ModeOf(dir / "instances"), 0700);
  EXPECT_EQ(ModeOf(dir / "instances" / "db-SQLITE"), 0700);
  EXPECT_EQ(ModeOf(dir / "instances" / "db-SQLITE" / "data.db"), 0600);
  EXPECT_EQ(ModeOf(dir / "repo"), 0700);  // its contents are behind it
  EXPECT_EQ(ModeOf("/etc/passwd"), 0644u);  // a link is not followed
  fs::remove_all(dir);
}

TEST(PrivateFilesTest, TheUmaskMakesNewFilesPrivate) {
  mode_t before = umask(022);
  UsePrivateUmask();
  fs::path p = fs::temp_directory_path() / ("private-umask-test-" + std::to_string(getpid()));
  std::ofstream(p).put('x');
  EXPECT_EQ(ModeOf(p), 0600);
  fs::remove(p);
  umask(before);
}

}  // namespace
}  // namespace strata
