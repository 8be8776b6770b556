#include "common/atomic_file.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace strata {
namespace {

namespace fs = std::filesystem;

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("atomic-file-test-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    fs::permissions(dir_, fs::perms::owner_all);
    fs::remove_all(dir_);
  }

  static std::string Read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  static mode_t ModeOf(const fs::path& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
    return st.st_mode & 07777;
  }
  // Only the file itself: no temporary file is left behind.
  size_t EntriesInDir() const {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++n;
    return n;
  }

  fs::path dir_;
};

TEST_F(AtomicFileTest, WritesAndReplacesContentsPrivately) {
  const fs::path file = dir_ / "credentials";
  ASSERT_TRUE(WriteFileAtomically(file, "first\n").ok());
  EXPECT_EQ(Read(file), "first\n");
  EXPECT_EQ(ModeOf(file), 0600u);
  ASSERT_TRUE(WriteFileAtomically(file, "second, longer\n").ok());
  EXPECT_EQ(Read(file), "second, longer\n");
  ASSERT_TRUE(WriteFileAtomically(file, "").ok());
  EXPECT_EQ(Read(file), "");
  EXPECT_EQ(EntriesInDir(), 1u);
}

TEST_F(AtomicFileTest, GivesTheModeAskedForWhateverTheUmask) {
  const fs::path file = dir_ / "after-create.sql";
  const mode_t old_umask = ::umask(077);
  Status st = WriteFileAtomically(file, "SELECT 1;\n", {.mode = 0644});
  ::umask(old_umask);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(ModeOf(file), 0644u);
}

TEST_F(AtomicFileTest, WithoutReplaceAnExistingFileIsKept) {
  const fs::path file = dir_ / "credentials";
  ASSERT_TRUE(WriteFileAtomically(file, "original\n", {.replace = false}).ok());
  Status st = WriteFileAtomically(file, "intruder\n", {.replace = false});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.ToString().find("already exists"), std::string::npos) << st.ToString();
  EXPECT_EQ(Read(file), "original\n");
  EXPECT_EQ(EntriesInDir(), 1u);
}

TEST_F(AtomicFileTest, SkipIfUnchangedLeavesTheFileAlone) {
  const fs::path file = dir_ / "repository";
  ASSERT_TRUE(WriteFileAtomically(file, "same\n").ok());
  ASSERT_EQ(::chmod(file.c_str(), 0640), 0);
  ASSERT_TRUE(WriteFileAtomically(file, "same\n", {.skip_if_unchanged = true}).ok());
  EXPECT_EQ(ModeOf(file), 0640u);  // not rewritten
  ASSERT_TRUE(WriteFileAtomically(file, "changed\n", {.skip_if_unchanged = true}).ok());
  EXPECT_EQ(Read(file), "changed\n");
  EXPECT_EQ(ModeOf(file), 0600u);
}

// The write fails halfway through the new contents (the file size limit
// stands in for a full disk): the old file is whole and no temporary is left.
TEST_F(AtomicFileTest, AWriteThatFailsMidwayLeavesTheOldFileIntact) {
  const fs::path file = dir_ / "endpoint";
  ASSERT_TRUE(WriteFileAtomically(file, "http://127.0.0.1:1234\n").ok());
  struct rlimit old_limit {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  Status st = WriteFileAtomically(file, std::string(64 << 10, 'x'));
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(Read(file), "http://127.0.0.1:1234\n");
  EXPECT_EQ(EntriesInDir(), 1u);
}

// A directory the writer may not create files in. Root may write anywhere:
// then this thread checks file access as an ordinary user who owns the
// directory (setfsuid is per thread).
TEST_F(AtomicFileTest, AnUnwritableDirectoryFailsAndKeepsTheOldFile) {
  const fs::path file = dir_ / "repository-key";
  ASSERT_TRUE(WriteFileAtomically(file, "old\n").ok());
  const bool root = ::geteuid() == 0;
  constexpr uid_t kNobody = 65534;
  if (root) {
    ASSERT_EQ(::chown(dir_.c_str(), kNobody, kNobody), 0);
  }
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
  if (root) ::setfsuid(kNobody);
  Status st = WriteFileAtomically(file, "new\n");
  if (root) ::setfsuid(0);
  fs::permissions(dir_, fs::perms::owner_all);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(Read(file), "old\n");
  EXPECT_EQ(EntriesInDir(), 1u);
}

// The target's place is taken by a directory: the rename fails, nothing of
// the attempt remains.
TEST_F(AtomicFileTest, AFailedRenameRemovesTheTemporaryFile) {
  const fs::path target = dir_ / "taken";
  fs::create_directories(target / "inside");
  Status st = WriteFileAtomically(target, "text\n");
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(fs::is_directory(target));
  EXPECT_EQ(EntriesInDir(), 1u);
}

TEST_F(AtomicFileTest, AMissingDirectoryIsAnError) {
  Status st = WriteFileAtomically(dir_ / "no-such-dir" / "file", "text\n");
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(EntriesInDir(), 0u);
}

}  // namespace
}  // namespace strata
