#include "engine/sqlite/sqlite_wal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>

#include "common/disk_space.h"
#include "common/log.h"

namespace strata::engine {
namespace {

uint32_t Be32(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

// SQLite's WAL checksum: pairs of 32-bit words, read big- or little-endian as
// the header's magic says, folded into (s1, s2).
void Checksum(bool big_endian, const unsigned char* data, size_t n, uint32_t& s1, uint32_t& s2) {
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint32_t x0, x1;
    if (big_endian) {
      x0 = Be32(data + i);
      x1 = Be32(data + i + 4);
    } else {
      x0 = uint32_t(data[i]) | (uint32_t(data[i + 1]) << 8) | (uint32_t(data[i + 2]) << 16) |
           (uint32_t(data[i + 3]) << 24);
      x1 = uint32_t(data[i + 4]) | (uint32_t(data[i + 5]) << 8) | (uint32_t(data[i + 6]) << 16) |
           (uint32_t(data[i + 7]) << 24);
    }
    s1 += x0 + s2;
    s2 += x1 + s1;
  }
}

bool ReadAt(int fd, uint64_t off, unsigned char* buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, buf + done, n - done, static_cast<off_t>(off + done));
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

}  // namespace

std::optional<WalHeader> ReadWalHeader(int fd) {
  unsigned char hdr[kWalHeaderSize];
  if (!ReadAt(fd, 0, hdr, sizeof hdr)) return std::nullopt;
  uint32_t magic = Be32(hdr);
  if (magic != 0x377f0682 && magic != 0x377f0683) return std::nullopt;
  WalHeader h;
  h.big_endian = magic & 1;
  h.page_size = Be32(hdr + 8);
  if (h.page_size < 512 || h.page_size > 65536 || (h.page_size & (h.page_size - 1))) return std::nullopt;
  h.checkpoint_seq = Be32(hdr + 12);
  h.salt1 = Be32(hdr + 16);
  h.salt2 = Be32(hdr + 20);
  uint32_t s1 = 0, s2 = 0;
  Checksum(h.big_endian, hdr, 24, s1, s2);
  if (s1 != Be32(hdr + 24) || s2 != Be32(hdr + 28)) return std::nullopt;
  h.checksum1 = s1;
  h.checksum2 = s2;
  return h;
}

namespace {

bool SameCursor(const WalCursor& a, const WalCursor& b) { return a.frames == b.frames && a.s1 == b.s1 && a.s2 == b.s2; }

// Verifies frames after the last commit found (or scan.from) up to the last
// valid frame, or until the commits found span max_frames past scan.from.
void ExtendScan(int fd, const WalHeader& hdr, WalScan& scan, uint64_t max_frames) {
  const uint64_t frame_size = kWalFrameHeaderSize + hdr.page_size;
  std::vector<unsigned char> frame(frame_size);
  const WalCursor at = scan.commits.empty() ? scan.from : scan.commits.back().after;
  uint32_t s1 = at.s1, s2 = at.s2;
  uint64_t n = at.frames;
  scan.at_end = false;
  for (;;) {
    if (!scan.commits.empty() && scan.commits.back().after.frames - scan.from.frames >= max_frames) return;
    if (!ReadAt(fd, kWalHeaderSize + n * frame_size, frame.data(), frame.size())) break;
    uint32_t pgno = Be32(frame.data());
    uint32_t commit_size = Be32(frame.data() + 4);
    if (pgno == 0 || Be32(frame.data() + 8) != hdr.salt1 || Be32(frame.data() + 12) != hdr.salt2) break;
    Checksum(hdr.big_endian, frame.data(), 8, s1, s2);
    Checksum(hdr.big_endian, frame.data() + kWalFrameHeaderSize, hdr.page_size, s1, s2);
    if (s1 != Be32(frame.data() + 16) || s2 != Be32(frame.data() + 20)) break;
    ++n;
    if (commit_size != 0) scan.commits.push_back({WalCursor{n, s1, s2}, commit_size});
  }
  scan.at_end = true;
}

}  // namespace

Result<std::vector<WalTransaction>> ReadWalTransactions(int fd, const WalHeader& hdr, WalCursor& cursor,
                                                        WalScan& scan, uint64_t max_bytes, bool& more) {
  if (scan.salt1 != hdr.salt1 || scan.salt2 != hdr.salt2 || !SameCursor(scan.from, cursor)) {
    scan = WalScan{hdr.salt1, hdr.salt2, cursor, {}, true};
  }
  const uint64_t max_frames = std::max<uint64_t>(1, max_bytes / hdr.page_size);
  ExtendScan(fd, hdr, scan, max_frames);
  const uint64_t frame_size = kWalFrameHeaderSize + hdr.page_size;
  std::vector<unsigned char> frame(frame_size);
  std::vector<WalTransaction> out;
  uint64_t frames_taken = 0;
  while (!scan.commits.empty()) {
    const WalCommit c = scan.commits.front();
    const uint64_t n = c.after.frames - cursor.frames;
    if (!out.empty() && frames_taken + n > max_frames) break;
    WalTransaction tx;
    tx.db_pages = c.db_pages;
    bool whole = true;
    for (uint64_t f = cursor.frames; f < c.after.frames && whole; ++f) {
      // Verified already; the salts show it is still the same generation's frame.
      whole = ReadAt(fd, kWalHeaderSize + f * frame_size, frame.data(), frame.size()) &&
              FrameHeaderOfGeneration(frame.data(), hdr);
      if (whole) {
        tx.pages[Be32(frame.data())].assign(reinterpret_cast<const char*>(frame.data()) + kWalFrameHeaderSize,
                                            hdr.page_size);
      }
    }
    if (!whole) {
      // The file changed under the scan: verify again from the cursor next time.
      scan = WalScan{hdr.salt1, hdr.salt2, cursor, {}, false};
      break;
    }
    frames_taken += n;
    cursor = c.after;
    scan.from = cursor;
    scan.commits.pop_front();
    out.push_back(std::move(tx));
  }
  more = !scan.commits.empty() || !scan.at_end;
  return out;
}

void SkipWalTransactions(int fd, const WalHeader& hdr, WalCursor& cursor) {
  WalScan scan{hdr.salt1, hdr.salt2, cursor, {}, true};
  ExtendScan(fd, hdr, scan, UINT64_MAX);
  if (!scan.commits.empty()) cursor = scan.commits.back().after;
}

Result<WalIndex> ReadWalIndex(const std::string& wal_path) {
  WalIndex idx;
  int fd = ::open(wal_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return idx;
    return Status(errors::kIoError, fmt::format("open {}: {}", wal_path, strerror(errno)));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};

  unsigned char hdr[kWalHeaderSize];
  if (!ReadAt(fd, 0, hdr, sizeof hdr)) return idx;  // empty or short: nothing committed
  uint32_t magic = Be32(hdr);
  if (magic != 0x377f0682 && magic != 0x377f0683) return idx;
  bool big_endian = magic & 1;
  idx.page_size = Be32(hdr + 8);
  if (idx.page_size < 512 || idx.page_size > 65536 || (idx.page_size & (idx.page_size - 1))) {
    return idx;
  }
  idx.checkpoint_seq = Be32(hdr + 12);
  idx.salt1 = Be32(hdr + 16);
  idx.salt2 = Be32(hdr + 20);
  uint32_t s1 = 0, s2 = 0;
  Checksum(big_endian, hdr, 24, s1, s2);
  if (s1 != Be32(hdr + 24) || s2 != Be32(hdr + 28)) return idx;

  std::vector<unsigned char> frame(kWalFrameHeaderSize + idx.page_size);
  std::map<uint32_t, uint64_t> pending;  // frames of the transaction not yet committed
  uint64_t frame_no = 0;
  for (uint64_t off = kWalHeaderSize;; off += frame.size()) {
    if (!ReadAt(fd, off, frame.data(), frame.size())) break;
    uint32_t pgno = Be32(frame.data());
    uint32_t commit_size = Be32(frame.data() + 4);
    if (pgno == 0 || Be32(frame.data() + 8) != idx.salt1 || Be32(frame.data() + 12) != idx.salt2) break;
    Checksum(big_endian, frame.data(), 8, s1, s2);
    Checksum(big_endian, frame.data() + kWalFrameHeaderSize, idx.page_size, s1, s2);
    if (s1 != Be32(frame.data() + 16) || s2 != Be32(frame.data() + 20)) break;
    ++frame_no;
    pending[pgno] = off + kWalFrameHeaderSize;
    if (commit_size != 0) {
      for (const auto& [p, o] : pending) idx.page_offsets[p] = o;
      pending.clear();
      idx.db_pages = commit_size;
      idx.committed_frames = frame_no;
      idx.commit_frames.push_back(frame_no);
    }
  }
  return idx;
}

bool FrameHeaderOfGeneration(const unsigned char* frame_header, const WalHeader& hdr) {
  return Be32(frame_header + 8) == hdr.salt1 && Be32(frame_header + 12) == hdr.salt2;
}

bool FrameOfGeneration(int fd, uint64_t offset, const WalHeader& hdr) {
  unsigned char fh[kWalFrameHeaderSize];
  return ReadAt(fd, offset, fh, sizeof fh) && FrameHeaderOfGeneration(fh, hdr);
}

int RetryEvery50us(void* max_attempts, int attempt) {
  if (attempt >= *static_cast<const int*>(max_attempts)) return 0;
  ::usleep(50);
  return 1;
}

bool ExtendWal(sqlite::Db& writer, const std::string& wal_path, uint64_t size, bool sync_under_lock) {
  // Room ahead of the writers is a speed-up, never needed: on a disk below
  // its low-water mark it would take space the operator frees for deletes.
  if (disk::AutomaticWorkPaused()) return false;
  if (!writer.Exec("BEGIN IMMEDIATE").ok()) return false;
  int fd = ::open(wal_path.c_str(), O_WRONLY | O_CLOEXEC);
  struct stat sb {};
  bool ok = fd >= 0 && ::fstat(fd, &sb) == 0;
  if (ok) {
    static const std::string kZeros(1 << 20, '\0');
    for (uint64_t at = static_cast<uint64_t>(sb.st_size); ok && at < size; at += kZeros.size()) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(kZeros.size(), size - at));
      ok = ::pwrite(fd, kZeros.data(), n, static_cast<off_t>(at)) == static_cast<ssize_t>(n);
    }
    if (ok && sync_under_lock) ok = ::fdatasync(fd) == 0;
  }
  if (Status st = writer.Exec("ROLLBACK"); !st.ok()) {
    // Still holding the write lock would stall the instance's writers: say so.
    log::Warn("could not release the write lock after growing the WAL",
              {{"wal", wal_path}, {"error", st.ToString()}});
  }
  if (ok && !sync_under_lock) ok = ::fdatasync(fd) == 0;
  if (fd >= 0) ::close(fd);
  return ok;
}

Result<uint32_t> DatabasePageSize(sqlite::Db& db) {
  ASSIGN_OR_RETURN(auto ps, db.Prepare("PRAGMA page_size"));
  ASSIGN_OR_RETURN(bool row, ps.Step());
  if (!row) return Status(errors::kIoError, "cannot read page_size");
  return static_cast<uint32_t>(ps.Int(0));
}

}  // namespace strata::engine
