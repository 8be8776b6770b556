#include "common/disk_space.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

namespace strata::disk {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kMiB = uint64_t{1} << 20;

class DiskGuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("disk_guard_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  GuardOptions Options() {
    GuardOptions o;
    o.watched = {dir_};
    o.reserve_file = dir_ / ".reserve";
    o.reserve_bytes = 8 * kMiB;
    o.low_water_bytes = 32 * kMiB;
    o.room_bytes = 4 * kMiB;
    o.free_bytes = [this](const fs::path&) -> Result<uint64_t> { return free_; };
    return o;
  }

  fs::path dir_;
  uint64_t free_ = 1024 * kMiB;
};

TEST_F(DiskGuardTest, ReserveIsMadeAtStartAndGivenBackAStepAtATimeOnlyWhenRoomIsNeeded) {
  DiskGuard guard(Options());
  SpaceState s = guard.Poll();
  EXPECT_FALSE(s.low);
  EXPECT_EQ(guard.ReserveSize(), 8 * kMiB);

  // Below the low-water mark: paused, but the reserve stays until needed.
  free_ = 10 * kMiB;
  EXPECT_TRUE(guard.Poll().low);
  EXPECT_TRUE(guard.Low());
  EXPECT_EQ(guard.ReserveSize(), 8 * kMiB);
  EXPECT_FALSE(guard.MakeRoom("test")) << "10 MiB free is room enough";

  // An eighth of 8 MiB a time, as often as the room is needed.
  free_ = 0;
  for (uint64_t left = 7; left > 0; --left) {
    EXPECT_TRUE(guard.MakeRoom("test"));
    EXPECT_EQ(guard.ReserveSize(), left * kMiB);
  }
  EXPECT_TRUE(guard.MakeRoom("test"));
  EXPECT_EQ(guard.ReserveSize(), 0u);
  EXPECT_FALSE(fs::exists(dir_ / ".reserve"));
  EXPECT_FALSE(guard.MakeRoom("test")) << "nothing left to give";

  // Not made whole while that would take the disk under the mark again.
  free_ = 36 * kMiB;
  EXPECT_FALSE(guard.Poll().low);
  EXPECT_EQ(guard.ReserveSize(), 0u);
  free_ = 40 * kMiB;
  guard.Poll();
  EXPECT_EQ(guard.ReserveSize(), 8 * kMiB);
}

TEST_F(DiskGuardTest, RefusesRequestedWorkBelowTheMarkWithTheRealReason) {
  DiskGuard guard(Options());
  EXPECT_TRUE(guard.RefuseIfLow(errors::kSnapshotQuotaExceeded, "a snapshot").ok());
  free_ = 3 * kMiB;
  Status st = guard.RefuseIfLow(errors::kSnapshotQuotaExceeded, "a snapshot");
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(st.Is(errors::kSnapshotQuotaExceeded));
  EXPECT_NE(st.message().find("No space left on device"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("3.0 MiB free"), std::string::npos) << st.message();
}

TEST_F(DiskGuardTest, ProcessGuardPausesAutomaticWork) {
  DiskGuard guard(Options());
  EXPECT_FALSE(AutomaticWorkPaused());
  InstallProcessGuard(&guard);
  guard.Poll();
  EXPECT_FALSE(AutomaticWorkPaused());
  free_ = 0;
  guard.Poll();
  EXPECT_TRUE(AutomaticWorkPaused());
  InstallProcessGuard(nullptr);
  EXPECT_FALSE(AutomaticWorkPaused());
}

TEST(PwriteAllTest, AFullDeviceSaysNoSpaceNotSuccess) {
  int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::string data(8192, 'x');
  Status st = PwriteAll(fd, data.data(), data.size(), 0, "write /dev/full");
  ::close(fd);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(st.Is(errors::kNoSpace));
  EXPECT_EQ(st.message(), "write /dev/full: No space left on device");
}

TEST(FreeBytesTest, MeasuresAFileSystem) {
  auto free = FreeBytes(fs::temp_directory_path());
  ASSERT_TRUE(free.ok()) << free.status().ToString();
  EXPECT_FALSE(FreeBytes("/no/such/dir").ok());
}

}  // namespace
}  // namespace strata::disk
