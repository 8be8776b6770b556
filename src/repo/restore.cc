// Restoring a snapshot: each file written from its chunks (delta: chunks
// already right in an existing file are kept), frames read in ranged reads
// of adjacent frames and decoded once for all their chunks.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <unordered_map>

#include <fmt/format.h>

#include "common/aligned_buffer.h"
#include "common/disk_space.h"
#include "repo/repo_internal.h"
#include "repo/workers.h"

namespace strata::repo {

constexpr uint64_t kMaxRestoreRun = 4ull << 20;  // coalesce adjacent frames into reads up to this
constexpr size_t kRestoreLookahead = 1024;       // chunks looked at to extend one read

// Decoded frames a restore thread has read, oldest dropped first once they
// pass a byte budget. A failed decode is kept too, so every chunk of a bad
// frame reports it. The buffers of dropped frames are handed out again.
class FrameCache {
 public:
  const Result<std::string>* Get(const Location& loc) const {
    auto it = frames_.find(loc.FrameKey());
    return it == frames_.end() ? nullptr : &it->second;
  }
  // A buffer to decode the next frame into.
  std::string Buffer() {
    if (spare_.empty()) return std::string();
    std::string b = std::move(spare_.back());
    spare_.pop_back();
    return b;
  }
  void Put(const Location& loc, Result<std::string> frame) {
    uint64_t key = loc.FrameKey();
    if (frames_.count(key)) {
      if (frame.ok()) spare_.push_back(std::move(*frame));
      return;
    }
    bytes_ += frame.ok() ? frame->size() : 0;
    frames_.emplace(key, std::move(frame));
    order_.push_back(key);
    while (bytes_ > kBudget && order_.size() > 1) {
      auto it = frames_.find(order_.front());
      if (it->second.ok()) {
        bytes_ -= it->second->size();
        spare_.push_back(std::move(*it->second));
      }
      frames_.erase(it);
      order_.pop_front();
    }
  }

 private:
  static constexpr uint64_t kBudget = 16ull << 20;
  std::unordered_map<uint64_t, Result<std::string>> frames_;
  std::deque<uint64_t> order_;
  std::vector<std::string> spare_;
  uint64_t bytes_ = 0;
};

// Reads the frame of chunk i (at `loc`) into the cache, and with it, in
// the same ranged read, the frames right after it in its pack that the
// next chunks of [i, end) need.
void Repository::Impl::ReadFrames(const std::vector<Hash>& ids, size_t i, size_t end, const Location& loc,
                                  FrameCache& cache) {
  uint64_t start = loc.offset, stop = loc.offset + loc.stored_size, decoded = loc.frame_raw_size;
  std::vector<std::pair<Hash, Location>> frames{{ids[i], loc}};
  for (size_t j = i + 1, looked = 0;
       j < end && looked < kRestoreLookahead && stop - start < kMaxRestoreRun && decoded < kMaxRestoreRun;
       ++j, ++looked) {
    auto next = Find(ids[j]);
    if (!next) break;
    if (next->pack != loc.pack || cache.Get(*next) || (next->offset >= start && next->offset < stop)) continue;
    if (next->offset != stop) break;
    frames.emplace_back(ids[j], *next);
    stop += next->stored_size;
    decoded += next->frame_raw_size;
  }
  thread_local std::string bytes;  // reused: a restore reads a GiB in ranges of MiBs
  Status read = store->GetRangeInto(PackKey(PackId(loc.pack)), start, stop - start, bytes);
  for (const auto& [id, at] : frames) {
    if (!read.ok()) {
      cache.Put(at, read);
      continue;
    }
    cache.Put(at, DecodeFrame(id, at, std::string_view(bytes).substr(at.offset - start, at.stored_size),
                              cache.Buffer()));
  }
}

namespace {

// Writes file `f` of snapshot `id` (manifest `m`) under target_dir, on the workers.
Status RestoreFile(Repository::Impl& repo, const std::string& id, const Manifest& m, const ManifestFile& f,
                   const std::string& target_dir, const RestoreOptions& options, Workers& workers,
                   const ProgressFn& progress, uint64_t total, std::atomic<uint64_t>& done_bytes) {
  std::filesystem::path path = std::filesystem::path(target_dir) / f.path;
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) return Status(errors::kIoError, fmt::format("create {}: {}", path.parent_path().string(), ec.message()));
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, f.mode & 07777);
  if (fd < 0) return Status(errors::kIoError, fmt::format("open {}: {}", path.string(), strerror(errno)));
  struct stat st;
  bool existing = ::fstat(fd, &st) == 0 && st.st_size > 0;
  if (::ftruncate(fd, static_cast<off_t>(f.size)) != 0) {
    ::close(fd);
    return Status(errors::kIoError, fmt::format("truncate {}: {}", path.string(), strerror(errno)));
  }
  // Direct writes go around the page cache: on a VM whose free memory the
  // host reclaims, filling fresh page-cache pages cost twice what the
  // disk takes to write them. A file system that refuses O_DIRECT gets
  // buffered writes.
  int direct_fd = -1;
  if (options.direct && m.chunk_size % kDirectIoAlign == 0) direct_fd = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  std::atomic<bool> direct_ok{true};
  const uint32_t cs = m.chunk_size;
  // Each thread takes a contiguous stripe of chunks and reads adjacent chunks
  // of one pack in a single ranged read.
  std::mutex err_mu;
  Status first_error;
  auto fail = [&](Status s) {
    std::lock_guard lock(err_mu);
    if (first_error.ok()) first_error = std::move(s);
  };
  workers.For(f.chunks.size(), [&](size_t b, size_t e) {
    FrameCache cache;
    std::string existing_buf;
    // Chunks decoded and checked, waiting to be written at out_at
    // (aligned, for the direct writes of RestoreOptions::direct).
    thread_local AlignedBuffer out(kMaxRestoreRun + (1u << 20));
    out.clear();
    uint64_t out_at = 0;
    auto flush = [&]() -> bool {
      if (out.empty()) return true;
      // Direct: whole aligned blocks; a file's last partial block buffered.
      size_t direct = direct_fd >= 0 && direct_ok ? out.size() / kDirectIoAlign * kDirectIoAlign : 0;
      ssize_t wrote = direct ? ::pwrite(direct_fd, out.data(), direct, static_cast<off_t>(out_at)) : 0;
      if (wrote != static_cast<ssize_t>(direct)) {
        // Some file systems take O_DIRECT at open and refuse the write:
        // the rest of the file goes through the page cache.
        if (wrote < 0 && errno != EINVAL) {
          fail(disk::ErrnoStatus("write " + path.string(), errno));
          return false;
        }
        // A short write (a full disk) is finished through the page cache
        // too, which then says why it cannot be (ENOSPC): a short write's
        // errno is stale ("Success").
        if (wrote < 0) direct_ok = false;
        direct = wrote > 0 ? static_cast<size_t>(wrote) : 0;
      }
      if (direct < out.size()) {
        const size_t n = out.size() - direct;
        if (Status w = disk::PwriteAll(fd, out.data() + direct, n, out_at + direct, "write " + path.string());
            !w.ok()) {
          fail(std::move(w));
          return false;
        }
        // Writeback starts now, while the next frames decode, instead of
        // all of it waiting for the sync at the end (a hint: an error is
        // found by that sync).
        (void)::sync_file_range(fd, static_cast<off_t>(out_at + direct), static_cast<off_t>(n), SYNC_FILE_RANGE_WRITE);
      }
      done_bytes += out.size();
      out.clear();
      if (progress && total) progress(static_cast<int>(done_bytes * 99 / total));
      return true;
    };
    for (size_t i = b; i < e; ++i) {
      if (i % 256 == 0) {
        std::lock_guard lock(err_mu);
        if (!first_error.ok()) return;
      }
      uint64_t off = uint64_t{i} * cs;
      size_t want = static_cast<size_t>(std::min<uint64_t>(cs, f.size - off));
      if (existing) {
        existing_buf.resize(want);
        if (::pread(fd, existing_buf.data(), want, static_cast<off_t>(off)) == static_cast<ssize_t>(want) &&
            repo.ChunkMatches(f.chunks[i], existing_buf)) {
          if (!flush()) return;
          done_bytes += want;
          continue;
        }
      }
      auto loc = repo.Find(f.chunks[i]);
      if (!loc) {
        fail(Status(errors::kCorruption, fmt::format("snapshot {}: chunk {} of {} at offset {} is missing",
                                                     id, ToHex(f.chunks[i]).substr(0, 16), f.path, off)));
        return;
      }
      const Result<std::string>* frame = cache.Get(*loc);
      if (!frame) {
        repo.ReadFrames(f.chunks, i, e, *loc, cache);
        frame = cache.Get(*loc);
      }
      if (frame && !frame->ok() && !frame->status().Is(errors::kCorruption)) {
        fail(frame->status().WithContext(fmt::format("snapshot {}: {} at offset {}", id, f.path, off)));
        return;
      }
      std::optional<std::string_view> chunk;
      if (frame && frame->ok()) chunk = Repository::Impl::ChunkIn(**frame, *loc);
      if (!chunk || chunk->size() != want || !repo.ChunkMatches(f.chunks[i], *chunk)) {
        std::string why = !frame ? "not read" : !frame->ok() ? frame->status().message() : "hash mismatch";
        fail(Status(errors::kCorruption,
                    fmt::format("snapshot {}: chunk of {} at offset {} is corrupt ({})", id, f.path, off, why)));
        return;
      }
      if (out.empty()) out_at = off;
      out.append(*chunk);
      if (out.size() >= kMaxRestoreRun && !flush()) return;
    }
    flush();
  });
  if (direct_fd >= 0) ::close(direct_fd);
  ::close(fd);
  return first_error;
}

}  // namespace

Status Repository::RestoreSnapshot(const std::string& id, const std::string& target_dir,
                                   const ProgressFn& progress, const RestoreOptions& options) {
  std::shared_lock gc_guard(impl_->gc_mu);
  ASSIGN_OR_RETURN(auto m, impl_->ReadManifest(id));
  const uint64_t total = m.LogicalBytes();
  std::atomic<uint64_t> done_bytes{0};
  // By default twice the snapshot's threads: a restore's threads wait on
  // the store's reads and the target's writes about as long as they
  // decode, and an S3 read waits longer.
  const int restore_threads = impl_->options.restore_threads > 0 ? impl_->options.restore_threads
                                                                 : std::max(1, impl_->options.threads) * 2;
  Workers workers(restore_threads);
  for (const auto& f : m.files) {
    RETURN_IF_ERROR(RestoreFile(*impl_, id, m, f, target_dir, options, workers, progress, total, done_bytes));
  }
  // One sync of the target's file system at the end: a cluster of a thousand
  // small files restores without a thousand fsyncs in a row.
  int dir = ::open(target_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return Status(errors::kIoError, fmt::format("open {}: {}", target_dir, strerror(errno)));
  int sync = ::syncfs(dir);
  ::close(dir);
  if (sync != 0) return Status(errors::kIoError, fmt::format("sync {}: {}", target_dir, strerror(errno)));
  if (progress) progress(100);
  return Status::Ok();
}

}  // namespace strata::repo
