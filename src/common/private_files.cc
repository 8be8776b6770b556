#include "common/private_files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace strata {
namespace {

// Drops group and other rights from `path` if stratad's OS user owns it
// (never follows a symbolic link).
Status Privatize(const std::filesystem::path& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();  // gone meanwhile
    return Status(errors::kIoError, fmt::format("stat {}: {}", path.string(), std::strerror(errno)));
  }
  if (S_ISLNK(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) == 0) return Status::Ok();
  if (chmod(path.c_str(), st.st_mode & 07700) != 0) {
    return Status(errors::kIoError, fmt::format("chmod {}: {}", path.string(), std::strerror(errno)));
  }
  return Status::Ok();
}

bool OwnedDirectory(const std::filesystem::path& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid();
}

}  // namespace

void UsePrivateUmask() { ::umask(077); }

Status PrivatizeDataDir(const std::filesystem::path& data_dir) {
  RETURN_IF_ERROR(Privatize(data_dir));
  std::error_code ec;
  for (const auto& top : std::filesystem::directory_iterator(data_dir, ec)) {
    RETURN_IF_ERROR(Privatize(top.path()));
  }
  if (ec) return Status(errors::kIoError, fmt::format("list {}: {}", data_dir.string(), ec.message()));
  const auto instances = data_dir / "instances";
  if (!OwnedDirectory(instances)) return Status::Ok();
  for (const auto& instance : std::filesystem::directory_iterator(instances, ec)) {
    if (!OwnedDirectory(instance.path())) continue;  // a PostgreSQL instance's own user's
    RETURN_IF_ERROR(Privatize(instance.path()));
    std::error_code inner;
    for (const auto& file : std::filesystem::directory_iterator(instance.path(), inner)) {
      RETURN_IF_ERROR(Privatize(file.path()));
    }
    if (inner) return Status(errors::kIoError, fmt::format("list {}: {}", instance.path().string(), inner.message()));
  }
  if (ec) return Status(errors::kIoError, fmt::format("list {}: {}", instances.string(), ec.message()));
  return Status::Ok();
}

}  // namespace strata
