#include "common/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <fstream>
#include <iterator>
#include <string>

#include "common/disk_space.h"

namespace strata {
namespace {

bool HoldsExactly(const std::filesystem::path& path, std::string_view contents) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::string old((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return !in.bad() && old == contents;
}

// A directory's fsync makes the names in it (a rename, a link) durable.
Status SyncDirectory(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return disk::ErrnoStatus("cannot open " + dir.string(), errno);
  Status st = Status::Ok();
  // EINVAL: a file system that cannot sync a directory (as PostgreSQL, Strata
  // takes that as done; the rename itself has happened).
  if (::fsync(fd) != 0 && errno != EINVAL) st = disk::ErrnoStatus("cannot sync " + dir.string(), errno);
  ::close(fd);
  return st;
}

// Writes, syncs and closes the temporary file `fd` (named `tmp`).
Status FillTemporary(int fd, const std::string& tmp, std::string_view contents, mode_t mode) {
  Status st = Status::Ok();
  if (::fchmod(fd, mode) != 0) st = disk::ErrnoStatus("cannot chmod " + tmp, errno);
  if (st.ok()) st = disk::PwriteAll(fd, contents.data(), contents.size(), 0, "cannot write " + tmp);
  if (st.ok() && ::fsync(fd) != 0) st = disk::ErrnoStatus("cannot write " + tmp, errno);
  if (::close(fd) != 0 && st.ok()) st = disk::ErrnoStatus("cannot write " + tmp, errno);
  return st;
}

}  // namespace

Status WriteFileAtomically(const std::filesystem::path& path, std::string_view contents,
                           const AtomicWriteOptions& options) {
  if (options.skip_if_unchanged && HoldsExactly(path, contents)) return Status::Ok();
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  // A unique name: two writers of one file never share a temporary file.
  std::string tmp = path.string() + ".tmp-XXXXXX";
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return disk::ErrnoStatus("cannot create a temporary file for " + path.string(), errno);
  Status st = FillTemporary(fd, tmp, contents, options.mode);
  if (st.ok() && options.replace && ::rename(tmp.c_str(), path.c_str()) != 0) {
    st = disk::ErrnoStatus("cannot replace " + path.string(), errno);
  }
  if (st.ok() && !options.replace && ::link(tmp.c_str(), path.c_str()) != 0) {
    st = errno == EEXIST ? Status(errors::kIoError, fmt::format("{} already exists", path.string()))
                         : disk::ErrnoStatus("cannot create " + path.string(), errno);
  }
  // Renamed: the name is gone already. Otherwise (linked, or failed) it goes now.
  if (!st.ok() || !options.replace) ::unlink(tmp.c_str());
  if (!st.ok()) return st;
  return SyncDirectory(dir);
}

}  // namespace strata
