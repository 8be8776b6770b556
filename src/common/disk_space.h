// Free disk space: the numbers, ENOSPC reported as itself, and the guard
// that keeps stratad working on a full disk.
//
// Why a guard: on a full disk every write fails, including the catalog
// writes that delete snapshots and instances, so space could not be freed
// through the API, and stratad could not restart. The guard keeps a
// preallocated reserve file (DATA/.reserve) and gives it back, an eighth at
// a time, just before stratad's own writes that must not fail (the start, a
// delete, the events that say the disk is low): those writes then find
// blocks where anything else that filled the disk would have found none.
// Releasing only on demand, not as soon as space runs low, keeps the reserve
// from being eaten by whatever is filling the disk. Below a low-water mark
// automatic work that grows files waits (AutomaticWorkPaused) and work a
// caller asks for is refused (RefuseIfLow); when space returns the reserve is
// made whole again.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace strata::disk {

// Bytes an unprivileged writer may still use on the file system holding
// `path` (statvfs f_bavail: root's reserved blocks are not counted as free).
Result<uint64_t> FreeBytes(const std::filesystem::path& path);

// `what: strerror(e)` as NoSpace for ENOSPC and EDQUOT, IOError otherwise.
Status ErrnoStatus(std::string_view what, int e);

// Writes all `n` bytes at `offset`. A short write is continued: the next
// write then fails with the real reason (ENOSPC), which is what the Status
// says; a short write's errno is stale (often 0, "Success").
Status PwriteAll(int fd, const void* data, size_t n, uint64_t offset, std::string_view what);

struct GuardOptions {
  // Watched file systems; the first is the data dir, which holds the reserve.
  std::vector<std::filesystem::path> watched;
  std::filesystem::path reserve_file;
  uint64_t reserve_bytes = uint64_t{64} << 20;  // 0: no reserve
  uint64_t low_water_bytes = uint64_t{256} << 20;
  // MakeRoom releases reserve while the data dir has less free than this.
  uint64_t room_bytes = uint64_t{4} << 20;
  // For tests: how free space is measured.
  std::function<Result<uint64_t>(const std::filesystem::path&)> free_bytes = FreeBytes;
};

struct SpaceState {
  bool low = false;
  uint64_t free_bytes = 0;            // the least free of the watched file systems
  std::filesystem::path where;        // the watched path with that least
};

// Thread-safe.
class DiskGuard {
 public:
  explicit DiskGuard(GuardOptions options);

  // Measures the watched file systems and, when there is room for it above
  // the low-water mark, makes the reserve whole. Sets Low().
  SpaceState Poll();
  // As of the last Poll: below the low-water mark.
  bool Low() const { return low_.load(); }
  // For work a caller asked for that would grow the disk's use: `code` with a
  // message saying how much is free where, when below the low-water mark now.
  Status RefuseIfLow(const ErrorCode& code, std::string_view work);
  // Before a write of stratad's own that must not fail: when the data dir
  // has less than room_bytes free, releases an eighth of the reserve (at
  // least 1 MiB). Returns whether it released anything.
  bool MakeRoom(std::string_view why);
  // The reserve file's current size.
  uint64_t ReserveSize();
  const GuardOptions& options() const { return options_; }

 private:
  SpaceState Measure();
  uint64_t ReserveSizeLocked();

  GuardOptions options_;
  std::mutex mu_;
  std::atomic<bool> low_{false};
};

// The guard lower layers consult (an engine's WAL room); none: never paused.
void InstallProcessGuard(DiskGuard* guard);
// Whether automatic work that grows files must wait: the installed guard is low.
bool AutomaticWorkPaused();

}  // namespace strata::disk
