#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include <fmt/format.h>

#include "common/ids.h"
#include "storage/storage.h"

namespace strata::storage {
namespace {

namespace fs = std::filesystem;
constexpr std::string_view kTempSuffix = ".strata-tmp";

Status Errno(const std::string& what) {
  int e = errno;
  const ErrorCode& code = (e == ENOSPC || e == EDQUOT) ? errors::kNoSpace : errors::kIoError;
  return Status(code, fmt::format("{}: {}", what, strerror(e)));
}

bool ValidKey(const std::string& key) {
  if (key.empty() || key.front() == '/' || key.find("..") != std::string::npos) return false;
  if (key.size() >= kTempSuffix.size() &&
      key.compare(key.size() - kTempSuffix.size(), kTempSuffix.size(), kTempSuffix) == 0)
    return false;
  return true;
}

Status FsyncDir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("open dir " + dir.string());
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Errno("fsync dir " + dir.string());
  return Status::Ok();
}

class PosixStore final : public ObjectStore {
 public:
  explicit PosixStore(fs::path root) : root_(std::move(root)) {}

  Status Put(const std::string& key, std::string_view bytes) override {
    if (!ValidKey(key)) return Status(errors::kInvalidParameterValue, "bad object key " + key);
    fs::path final_path = root_ / key;
    std::error_code ec;
    fs::create_directories(final_path.parent_path(), ec);
    if (ec) return Status(errors::kIoError, fmt::format("mkdir {}: {}", final_path.parent_path().string(), ec.message()));
    fs::path tmp = final_path;
    tmp += fmt::format(".{}{}", RandomHex(6), kTempSuffix);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return Errno("create " + tmp.string());
    // Written in steps, each handed to writeback at once and the one before
    // it waited for: the pack trickles to disk instead of reaching the final
    // fsync as one burst of tens of MiB, which would queue a running
    // database's own WAL fsyncs behind it.
    constexpr size_t kStep = 1 << 20;
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::write(fd, bytes.data() + done, std::min(kStep, bytes.size() - done));
      if (n < 0) {
        if (errno == EINTR) continue;
        Status st = Errno("write " + tmp.string());
        ::close(fd);
        ::unlink(tmp.c_str());
        return st;
      }
      (void)::sync_file_range(fd, static_cast<off_t>(done), n, SYNC_FILE_RANGE_WRITE);
      if (done >= kStep) {
        (void)::sync_file_range(fd, static_cast<off_t>(done - kStep), kStep,
                                SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
      }
      done += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0) {
      Status st = Errno("fsync " + tmp.string());
      ::close(fd);
      ::unlink(tmp.c_str());
      return st;
    }
    ::close(fd);
    if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
      Status st = Errno("rename " + tmp.string());
      ::unlink(tmp.c_str());
      return st;
    }
    return FsyncDir(final_path.parent_path());
  }

  Result<std::string> Get(const std::string& key) override {
    auto size = Stat(key);
    if (!size.ok()) return size.status();
    if (!*size) return Status(errors::kObjectNotFound, "no object " + key);
    return GetRange(key, 0, **size);
  }

  Result<std::string> GetRange(const std::string& key, uint64_t offset, uint64_t length) override {
    if (!ValidKey(key)) return Status(errors::kInvalidParameterValue, "bad object key " + key);
    fs::path p = root_ / key;
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return Status(errors::kObjectNotFound, "no object " + key);
      return Errno("open " + p.string());
    }
    std::string out(length, '\0');
    size_t done = 0;
    while (done < length) {
      ssize_t n = ::pread(fd, out.data() + done, length - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        Status st = Errno("read " + p.string());
        ::close(fd);
        return st;
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    ::close(fd);
    if (done != length) {
      return Status(errors::kCorruption, fmt::format("object {} is shorter than {} bytes at {}", key, length, offset));
    }
    return out;
  }

  Result<std::vector<ObjectInfo>> List(const std::string& prefix) override {
    std::vector<ObjectInfo> out;
    std::error_code ec;
    if (!fs::exists(root_, ec)) return out;
    for (auto it = fs::recursive_directory_iterator(root_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      std::string key = fs::relative(it->path(), root_, ec).generic_string();
      if (ec || !ValidKey(key) || key.rfind(prefix, 0) != 0) continue;
      out.push_back({key, static_cast<uint64_t>(it->file_size(ec))});
    }
    if (ec) return Status(errors::kIoError, fmt::format("list {}: {}", root_.string(), ec.message()));
    std::sort(out.begin(), out.end(), [](const ObjectInfo& a, const ObjectInfo& b) { return a.key < b.key; });
    return out;
  }

  Status Delete(const std::string& key) override {
    if (!ValidKey(key)) return Status(errors::kInvalidParameterValue, "bad object key " + key);
    fs::path p = root_ / key;
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) return Errno("delete " + p.string());
    return Status::Ok();
  }

  Result<std::optional<uint64_t>> Stat(const std::string& key) override {
    if (!ValidKey(key)) return Status(errors::kInvalidParameterValue, "bad object key " + key);
    struct stat st;
    fs::path p = root_ / key;
    if (::stat(p.c_str(), &st) != 0) {
      if (errno == ENOENT) return std::optional<uint64_t>();
      return Errno("stat " + p.string());
    }
    return std::optional<uint64_t>(static_cast<uint64_t>(st.st_size));
  }

  std::string Describe() const override { return "file://" + root_.string(); }

  // Temp files left by a crash are garbage by definition.
  void RemoveTempFiles() {
    std::error_code ec;
    std::vector<fs::path> stale;
    for (auto it = fs::recursive_directory_iterator(root_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (name.size() > kTempSuffix.size() && name.compare(name.size() - kTempSuffix.size(), kTempSuffix.size(), kTempSuffix) == 0)
        stale.push_back(it->path());
    }
    for (const auto& p : stale) fs::remove(p, ec);
  }

 private:
  fs::path root_;
};

}  // namespace

Result<std::unique_ptr<ObjectStore>> OpenPosixStore(const std::filesystem::path& root) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return Status(errors::kIoError, fmt::format("create {}: {}", root.string(), ec.message()));
  auto store = std::make_unique<PosixStore>(fs::absolute(root));
  store->RemoveTempFiles();
  return std::unique_ptr<ObjectStore>(std::move(store));
}

}  // namespace strata::storage
