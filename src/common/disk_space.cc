#include "common/disk_space.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "common/log.h"

namespace strata::disk {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

std::atomic<DiskGuard*> g_process_guard{nullptr};

std::string Mib(uint64_t bytes) { return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / kMiB); }

// Grows `path` to `size` bytes of allocated blocks. On failure the file is cut
// back to what it had, so a failed attempt holds no half of the space.
Status GrowReserve(const std::filesystem::path& path, uint64_t from, uint64_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus("create " + path.string(), errno);
  int rc = ::fallocate(fd, 0, static_cast<off_t>(from), static_cast<off_t>(size - from));
  int e = errno;
  if (rc != 0 && (e == EOPNOTSUPP || e == ENOSYS)) {
    // A file system without fallocate: zeros written allocate the blocks too.
    static const std::string kZeros(kMiB, '\0');
    Status st;
    for (uint64_t at = from; st.ok() && at < size; at += kZeros.size()) {
      st = PwriteAll(fd, kZeros.data(), static_cast<size_t>(std::min<uint64_t>(kZeros.size(), size - at)), at,
                     "write " + path.string());
    }
    if (st.ok() && ::fsync(fd) != 0) st = ErrnoStatus("fsync " + path.string(), errno);
    if (!st.ok()) (void)::ftruncate(fd, static_cast<off_t>(from));
    ::close(fd);
    return st;
  }
  if (rc != 0) {
    (void)::ftruncate(fd, static_cast<off_t>(from));
    ::close(fd);
    return ErrnoStatus("fallocate " + path.string(), e);
  }
  rc = ::fsync(fd);
  e = errno;
  ::close(fd);
  return rc == 0 ? Status::Ok() : ErrnoStatus("fsync " + path.string(), e);
}

}  // namespace

Result<uint64_t> FreeBytes(const std::filesystem::path& path) {
  struct statvfs sv {};
  if (::statvfs(path.c_str(), &sv) != 0) return ErrnoStatus("statvfs " + path.string(), errno);
  return static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
}

Status ErrnoStatus(std::string_view what, int e) {
  const ErrorCode& code = (e == ENOSPC || e == EDQUOT) ? errors::kNoSpace : errors::kIoError;
  return Status(code, fmt::format("{}: {}", what, std::strerror(e)));
}

Status PwriteAll(int fd, const void* data, size_t n, uint64_t offset, std::string_view what) {
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::pwrite(fd, p + done, n - done, static_cast<off_t>(offset + done));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return ErrnoStatus(what, errno);
    // A write of nothing with no error: the file system has no block to give.
    if (w == 0) return ErrnoStatus(what, ENOSPC);
    done += static_cast<size_t>(w);
  }
  return Status::Ok();
}

DiskGuard::DiskGuard(GuardOptions options) : options_(std::move(options)) {}

uint64_t DiskGuard::ReserveSizeLocked() {
  struct stat st {};
  if (options_.reserve_file.empty() || ::stat(options_.reserve_file.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_size);
}

uint64_t DiskGuard::ReserveSize() {
  std::lock_guard lock(mu_);
  return ReserveSizeLocked();
}

SpaceState DiskGuard::Measure() {
  SpaceState s;
  bool first = true;
  for (const auto& path : options_.watched) {
    auto free = options_.free_bytes(path);
    if (!free.ok()) {
      log::Warn("cannot measure free disk space", {{"error", free.status().ToString()}});
      continue;
    }
    if (first || *free < s.free_bytes) {
      s.free_bytes = *free;
      s.where = path;
      first = false;
    }
  }
  s.low = !first && s.free_bytes < options_.low_water_bytes;
  return s;
}

SpaceState DiskGuard::Poll() {
  std::lock_guard lock(mu_);
  SpaceState s = Measure();
  uint64_t have = ReserveSizeLocked();
  if (!options_.reserve_file.empty() && have < options_.reserve_bytes && !options_.watched.empty()) {
    // Made whole only when the low-water mark is still met afterwards: a
    // reserve taken back at once would only flap.
    auto free = options_.free_bytes(options_.watched.front());
    uint64_t missing = options_.reserve_bytes - have;
    if (free.ok() && *free >= options_.low_water_bytes + missing) {
      if (Status st = GrowReserve(options_.reserve_file, have, options_.reserve_bytes); !st.ok()) {
        log::Warn("cannot restore the disk reserve", {{"error", st.ToString()}});
      } else {
        log::Info("disk reserve in place", {{"file", options_.reserve_file.string()}, {"size", Mib(options_.reserve_bytes)}});
        s = Measure();
      }
    }
  }
  low_ = s.low;
  return s;
}

Status DiskGuard::RefuseIfLow(const ErrorCode& code, std::string_view work) {
  SpaceState s;
  {
    std::lock_guard lock(mu_);
    s = Measure();
  }
  if (!s.low) return Status::Ok();
  return Status(code, fmt::format("Not enough free disk space for {}: {} free on {}, below the low-water mark of "
                                  "{} (No space left on device). Delete snapshots or instances to free space.",
                                  work, Mib(s.free_bytes), s.where.string(), Mib(options_.low_water_bytes)));
}

bool DiskGuard::MakeRoom(std::string_view why) {
  std::lock_guard lock(mu_);
  if (options_.reserve_file.empty() || options_.watched.empty()) return false;
  auto free = options_.free_bytes(options_.watched.front());
  if (free.ok() && *free >= options_.room_bytes) return false;
  uint64_t have = ReserveSizeLocked();
  if (have == 0) return false;
  // An eighth of the whole reserve (at least 1 MiB) at a time: a delete's
  // catalog writes need kilobytes, and whatever else is writing may take
  // what is given back before the next emergency comes.
  const uint64_t step = std::max(kMiB, options_.reserve_bytes / 8 / 4096 * 4096);
  uint64_t keep = have > step ? have - step : 0;
  int rc = keep == 0 ? ::unlink(options_.reserve_file.c_str())
                     : ::truncate(options_.reserve_file.c_str(), static_cast<off_t>(keep));
  if (rc != 0) {
    log::Warn("cannot release the disk reserve", {{"error", ErrnoStatus(options_.reserve_file.string(), errno).ToString()}});
    return false;
  }
  log::Warn("disk reserve released", {{"for", std::string(why)},
                                      {"released", Mib(have - keep)},
                                      {"left", Mib(keep)},
                                      {"free_before", Mib(free.ok() ? *free : 0)}});
  return true;
}

void InstallProcessGuard(DiskGuard* guard) { g_process_guard = guard; }

bool AutomaticWorkPaused() {
  DiskGuard* g = g_process_guard.load();
  return g != nullptr && g->Low();
}

}  // namespace strata::disk
