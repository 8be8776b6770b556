#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include <fmt/format.h>

#include "common/aligned_buffer.h"
#include "common/disk_space.h"
#include "common/ids.h"
#include "storage/storage.h"

namespace strata::storage {
namespace {

namespace fs = std::filesystem;
constexpr std::string_view kTempSuffix = ".strata-tmp";
// No write holds a temp file this long without writing to it.
constexpr auto kTempFileAbandonedAfter = std::chrono::minutes(10);

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

// Objects that reach this size (packs, large manifests) are written with
// O_DIRECT: nobody reads them soon (a restore comes days later, or never),
// so passing them through the page cache only pushed out pages the
// databases on this host use, and allocating page-cache pages for tens of
// MiB cost more than the disk (3x on the benchmark VM). Smaller objects go
// buffered. Writes go in steps of this size from an aligned buffer, each on
// the disk before the next starts, so a running database's WAL fsync waits
// behind at most one step, never a whole pack.
constexpr size_t kStep = 1 << 20;
constexpr uint64_t kDirectReadAtLeast = 256 << 10;
constexpr size_t kKeptReadBuffer = 16 << 20;

// Aligned step buffers, handed from writer to writer: a fresh MiB for every
// object would be 256 page faults each time.
class StepBuffers {
 public:
  // Never destroyed: a writer may still give a buffer back while statics
  // are torn down, and the buffers kept stay reachable for leak checkers.
  static StepBuffers& Get() {
    static auto* pool = new StepBuffers();
    return *pool;
  }
  char* Take() {
    {
      std::lock_guard lock(mu_);
      if (!free_.empty()) {
        char* p = free_.back();
        free_.pop_back();
        return p;
      }
    }
    void* p = nullptr;
    return ::posix_memalign(&p, kDirectIoAlign, kStep) == 0 ? static_cast<char*>(p) : nullptr;
  }
  void Give(char* p) {
    if (!p) return;
    std::lock_guard lock(mu_);
    if (free_.size() < kKept) {
      free_.push_back(p);
      return;
    }
    std::free(p);
  }

 private:
  static constexpr size_t kKept = 8;
  std::mutex mu_;
  std::vector<char*> free_;
};

// Writes to a temp file beside the final name; Commit fsyncs it, renames it
// into place and fsyncs the directory. The file is opened when the first
// step fills (O_DIRECT then) or at Commit (a small object: buffered).
class PosixWriter final : public ObjectWriter {
 public:
  PosixWriter(fs::path final_path, fs::path tmp) : final_(std::move(final_path)), tmp_(std::move(tmp)) {}
  ~PosixWriter() override {
    if (fd_ >= 0) {
      ::close(fd_);
      ::unlink(tmp_.c_str());
    }
    StepBuffers::Get().Give(step_);
  }

  Status Append(std::string_view bytes) override {
    if (failed_) return Status(errors::kIoError, "write " + tmp_.string() + " failed before");
    if (!step_) step_ = StepBuffers::Get().Take();
    if (!step_) return Fail(Status(errors::kIoError, "no memory for a write buffer"));
    while (!bytes.empty()) {
      size_t n = std::min(kStep - fill_, bytes.size());
      std::memcpy(step_ + fill_, bytes.data(), n);
      fill_ += n;
      bytes.remove_prefix(n);
      if (fill_ == kStep) {
        if (fd_ < 0) RETURN_IF_ERROR(Fail(Open(true)));
        RETURN_IF_ERROR(Fail(WriteStep()));
      }
    }
    return Status::Ok();
  }

  Status Commit() override {
    if (failed_) return Status(errors::kIoError, "write " + tmp_.string() + " failed before");
    if (fd_ < 0) RETURN_IF_ERROR(Fail(Open(false)));
    if (fill_ > 0) RETURN_IF_ERROR(Fail(WriteStep()));
    if (direct_ && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0) return Fail(Errno("truncate " + tmp_.string()));
    if (::fsync(fd_) != 0) return Fail(Errno("fsync " + tmp_.string()));
    ::close(fd_);
    fd_ = -1;
    if (::rename(tmp_.c_str(), final_.c_str()) != 0) {
      Status st = Errno("rename " + tmp_.string());
      ::unlink(tmp_.c_str());
      failed_ = true;
      return st;
    }
    return FsyncDir(final_.parent_path());
  }

 private:
  Status Fail(Status st) {
    if (!st.ok()) failed_ = true;
    return st;
  }

  Status Open(bool direct) {
    if (direct) {
      fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_DIRECT, 0600);
      if (fd_ >= 0) {
        direct_ = true;
        return Status::Ok();
      }
      if (errno != EINVAL) return Errno("create " + tmp_.string());
      ::unlink(tmp_.c_str());  // a file system without O_DIRECT may have made it before refusing
    }
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd_ < 0) return Errno("create " + tmp_.string());
    return Status::Ok();
  }

  // Writes the step buffer's fill_ bytes at size_.
  Status WriteStep() {
    if (direct_) {
      // The last step of an object is padded to the alignment; Commit cuts
      // the file back to its size.
      size_t padded = (fill_ + kDirectIoAlign - 1) / kDirectIoAlign * kDirectIoAlign;
      std::memset(step_ + fill_, 0, padded - fill_);
      ssize_t w;
      do {
        w = ::pwrite(fd_, step_, padded, static_cast<off_t>(size_));
      } while (w < 0 && errno == EINTR);
      if (w < 0 && errno == EINVAL && size_ == 0) {
        // The file system took the flag but not the write: go on buffered.
        int flags = ::fcntl(fd_, F_GETFL);
        if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) != 0) return Errno("fcntl " + tmp_.string());
        direct_ = false;
        return WriteStep();
      }
      if (w < 0) return Errno("write " + tmp_.string());
      if (static_cast<size_t>(w) != padded) {
        // A short write (a full disk): the rest written again says why,
        // where a short write's errno would say "Success".
        return disk::PwriteAll(fd_, step_ + w, padded - static_cast<size_t>(w), size_ + static_cast<size_t>(w),
                               "write " + tmp_.string());
      }
    } else {
      // Handed to writeback at once and the step before it waited for: the
      // object trickles to disk instead of reaching the final fsync as one
      // burst.
      size_t done = 0;
      while (done < fill_) {
        ssize_t n = ::pwrite(fd_, step_ + done, fill_ - done, static_cast<off_t>(size_ + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return Errno("write " + tmp_.string());
        done += static_cast<size_t>(n);
      }
      // Hints to writeback (no Status): a failure here is found by the fsync at Commit.
      (void)::sync_file_range(fd_, static_cast<off_t>(size_), static_cast<off_t>(fill_), SYNC_FILE_RANGE_WRITE);
      if (size_ >= kStep) {
        (void)::sync_file_range(fd_, static_cast<off_t>(size_ - kStep), kStep,
                                SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
      }
    }
    size_ += fill_;
    fill_ = 0;
    return Status::Ok();
  }

  fs::path final_;
  fs::path tmp_;
  int fd_ = -1;
  bool direct_ = false;
  bool failed_ = false;
  char* step_ = nullptr;
  size_t fill_ = 0;
  uint64_t size_ = 0;
};

class PosixStore final : public ObjectStore {
 public:
  explicit PosixStore(fs::path root) : root_(std::move(root)) {}

  Status Put(const std::string& key, std::string_view bytes) override {
    ASSIGN_OR_RETURN(auto writer, NewWriter(key));
    RETURN_IF_ERROR(writer->Append(bytes));
    return writer->Commit();
  }

  Result<std::unique_ptr<ObjectWriter>> NewWriter(const std::string& key) override {
    if (!ValidKey(key)) return Status(errors::kInvalidParameterValue, "bad object key " + key);
    fs::path final_path = root_ / key;
    std::error_code ec;
    fs::create_directories(final_path.parent_path(), ec);
    if (ec) return Status(errors::kIoError, fmt::format("mkdir {}: {}", final_path.parent_path().string(), ec.message()));
    fs::path tmp = final_path;
    tmp += fmt::format(".{}{}", RandomHex(6), kTempSuffix);
    return std::unique_ptr<ObjectWriter>(std::make_unique<PosixWriter>(final_path, tmp));
  }

  Result<std::string> Get(const std::string& key) override {
    auto size = Stat(key);
    if (!size.ok()) return size.status();
    if (!*size) return Status(errors::kObjectNotFound, "no object " + key);
    return GetRange(key, 0, **size);
  }

  Result<std::string> GetRange(const std::string& key, uint64_t offset, uint64_t length) override {
    std::string out;
    RETURN_IF_ERROR(GetRangeInto(key, offset, length, out));
    return out;
  }

  // Ranges from kDirectReadAtLeast are read with O_DIRECT, for the reason
  // large objects are written so: they are not in the page cache (written
  // direct), read once, and page-cache pages for them cost more than the
  // disk. Read whole aligned blocks into a thread's aligned buffer, then
  // copied out.
  Status GetRangeInto(const std::string& key, uint64_t offset, uint64_t length, std::string& out) override {
    if (!ValidKey(key)) return Status(errors::kInvalidParameterValue, "bad object key " + key);
    fs::path p = root_ / key;
    const bool direct = length >= kDirectReadAtLeast;
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
    if (fd < 0 && direct && errno == EINVAL) fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return Status(errors::kObjectNotFound, "no object " + key);
      return Errno("open " + p.string());
    }
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    const bool is_direct = direct && (::fcntl(fd, F_GETFL) & O_DIRECT);
    char* into;
    uint64_t from = offset, span = length;
    thread_local AlignedBuffer aligned;
    if (is_direct) {
      from = offset / kDirectIoAlign * kDirectIoAlign;
      span = (offset + length + kDirectIoAlign - 1) / kDirectIoAlign * kDirectIoAlign - from;
      into = aligned.Space(span);
    } else {
      out.resize(length);
      into = out.data();
    }
    uint64_t done = 0;
    while (done < span) {
      ssize_t n = ::pread(fd, into + done, span - done, static_cast<off_t>(from + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Errno("read " + p.string());
      }
      if (n == 0) break;
      done += static_cast<uint64_t>(n);
      if (is_direct && done % kDirectIoAlign != 0) break;  // a direct read ends short only at the end of the file
    }
    if (done < offset - from + length) {
      return Status(errors::kCorruption, fmt::format("object {} is shorter than {} bytes at {}", key, length, offset));
    }
    if (is_direct) out.assign(into + (offset - from), length);
    // Restores read a few MiB at a time and keep their buffer; a whole large
    // object (a manifest, a pack garbage collection rewrites) must not stay
    // behind in a long-lived thread.
    if (aligned.capacity() > kKeptReadBuffer) aligned.Release();
    return Status::Ok();
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

  // Temp files left by a crash are garbage by definition. A recent one may
  // be another process's write in progress (`strata repo verify` opens the
  // repository of a running stratad), so only old ones go.
  void RemoveTempFiles() {
    std::error_code ec;
    std::vector<fs::path> stale;
    const auto cutoff = fs::file_time_type::clock::now() - kTempFileAbandonedAfter;
    for (auto it = fs::recursive_directory_iterator(root_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (name.size() > kTempSuffix.size() &&
          name.compare(name.size() - kTempSuffix.size(), kTempSuffix.size(), kTempSuffix) == 0) {
        std::error_code time_ec;
        auto written = fs::last_write_time(it->path(), time_ec);
        if (!time_ec && written < cutoff) stale.push_back(it->path());
      }
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
