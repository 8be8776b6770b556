// repo/: the backup repository. Database files are cut into fixed-size,
// page-aligned chunks addressed by the SHA-256 of their content, compressed
// with zstd (stored raw when that does not help), and packed into pack
// objects of tens of MiB with an index object each. A snapshot is a manifest:
// its files and their chunk lists, plus the caller's metadata.
//
// Layout in the object store (see docs/repository.md):
//   config                 format version and chunking settings (JSON)
//   packs/<id>             chunk blobs back to back
//   index/<id>             the pack's entries (hash, offset, sizes), checksummed
//   snapshots/<id>         a manifest, checksummed
//   log/<stream>/<seq>-<first>-<last>
//                          a change-log segment: the engine's log records for
//                          commit times [first, last] (microseconds), zstd, checksummed
//
// Invariants:
// - A pack's index is written only after the pack is durable; a chunk exists
//   for the repository only once an index names it.
// - A manifest is written only after every chunk it names is durable, so a
//   snapshot exists if and only if its manifest does: an interrupted backup
//   leaves unreferenced packs (collected by garbage collection), never a
//   listed snapshot with missing data.
// - Every chunk's hash is checked when it is read back (restore, verify).
//
// repo/ knows nothing of engines or HTTP.
// Thread safety: all methods may be called concurrently. Backups and
// restores run in parallel with each other; CollectGarbage waits for running
// backups and holds new ones back while it runs, so it never deletes a chunk
// a backup is about to reference.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "storage/storage.h"

namespace strata::repo {

struct RepoOptions {
  // Chunk size for new repositories (a power of two, 512 B to 1 MiB). The
  // default, 4 KiB, is SQLite's default page size: an updated page changes
  // exactly one chunk, which is what keeps an incremental snapshot at the
  // size of what changed. An existing repository keeps its own.
  uint32_t chunk_size = 4096;
  int zstd_level = 1;
  uint64_t pack_target_bytes = 32ull << 20;
  int threads = 2;
  // Bytes of file data read ahead per batch (memory stays near 2 batches + 1 pack).
  uint64_t batch_bytes = 8ull << 20;

  // Pack and batch sizes that keep a snapshot's working memory (three
  // batches in flight, a pack filling and one being stored) within `bytes`,
  // whatever the database's size. The manifest (32 bytes per chunk) comes on top.
  static RepoOptions ForMemoryBudget(uint64_t bytes);
};

// One file to back up: read_at(offset, out) fills `out` (short only at the
// end of the file) and returns the bytes read.
struct FileSource {
  std::string path;
  uint64_t size = 0;
  uint32_t mode = 0600;
  std::function<Result<size_t>(uint64_t offset, std::span<std::byte> out)> read_at;
};

using ProgressFn = std::function<void(int percent)>;
// Files known only once the others are read (a PostgreSQL backup's label
// and WAL): called after them, its files are stored in the same snapshot.
using LateFilesFn = std::function<Result<std::vector<FileSource>>()>;

struct SnapshotStats {
  uint64_t logical_bytes = 0;  // sum of file sizes
  uint64_t chunks = 0;
  uint64_t new_chunks = 0;
  uint64_t stored_bytes = 0;  // bytes this snapshot added to packs
};

struct SnapshotInfo {
  std::string id;
  std::map<std::string, std::string> metadata;
  uint64_t logical_bytes = 0;
  uint64_t chunks = 0;
};

struct VerifyProblem {
  std::string what;  // "missing chunk", "corrupt chunk", "corrupt manifest", ...
  std::string object;
  std::vector<std::string> snapshots;  // the snapshots it affects
};

struct VerifyReport {
  uint64_t snapshots = 0;
  uint64_t chunks_checked = 0;
  std::vector<VerifyProblem> problems;
  bool ok() const { return problems.empty(); }
};

struct GcStats {
  uint64_t packs_deleted = 0;
  uint64_t packs_rewritten = 0;
  uint64_t bytes_freed = 0;
};

// A change-log segment as listed: its place in the stream and its time range.
struct LogSegment {
  std::string stream;
  uint64_t seq = 0;
  int64_t first_time_us = 0;
  int64_t last_time_us = 0;
  uint64_t stored_bytes = 0;
};

struct RepoStats {
  uint64_t snapshots = 0;
  uint64_t packs = 0;
  uint64_t chunks = 0;
  uint64_t stored_bytes = 0;  // pack bytes
  uint64_t log_segments = 0;
  uint64_t log_bytes = 0;
};

// What one snapshot costs: its logical size, the stored bytes of every chunk
// it references, and of those only it references (what deleting it frees).
struct SnapshotSize {
  std::string id;
  uint64_t logical_bytes = 0;
  uint64_t referenced_bytes = 0;
  uint64_t unique_bytes = 0;
};

class Repository {
 public:
  // Opens the repository in `store`, creating its config on first use.
  static Result<std::unique_ptr<Repository>> Open(std::unique_ptr<storage::ObjectStore> store,
                                                  RepoOptions options = {});
  ~Repository();

  uint32_t chunk_size() const;

  // Stores `files` as snapshot `id` (DBSnapshot-independent: callers pass a
  // unique id). Chunks already in the repository are not stored again.
  // Fails with kInvalidParameterValue if `id` exists.
  Result<SnapshotStats> CreateSnapshot(const std::string& id,
                                       const std::map<std::string, std::string>& metadata,
                                       const std::vector<FileSource>& files,
                                       const ProgressFn& progress = nullptr,
                                       const LateFilesFn& late_files = nullptr);
  // Writes the snapshot's files under target_dir. Chunks already correct in an
  // existing target file are not rewritten (delta restore). A missing or
  // corrupt chunk fails with kCorruption naming the file and offset.
  Status RestoreSnapshot(const std::string& id, const std::string& target_dir,
                         const ProgressFn& progress = nullptr);
  Result<SnapshotInfo> GetSnapshot(const std::string& id);
  Result<std::vector<std::string>> ListSnapshots();
  // A new manifest with the source's chunk lists and new metadata: no data copied.
  Status CopySnapshot(const std::string& from, const std::string& to,
                      const std::map<std::string, std::string>& metadata);
  // Removes the manifest; chunks go with the next CollectGarbage.
  Status DeleteSnapshot(const std::string& id);

  // quick: every chunk a manifest names is in an index and its pack exists.
  // full: also reads every pack and re-hashes every chunk.
  // Change log. Segments of one stream (an instance's DbiResourceId) are
  // numbered in append order; each covers commit times [first, last]. Append
  // is atomic: a segment is complete or absent.
  Result<LogSegment> AppendLogSegment(const std::string& stream, int64_t first_time_us,
                                      int64_t last_time_us, std::string_view payload);
  // Segments whose time range meets [from, to], in order: one listing, so
  // "the segments needed to reach T from a snapshot taken at S" is one call.
  Result<std::vector<LogSegment>> ListLogSegments(const std::string& stream, int64_t from_us,
                                                  int64_t to_us);
  Result<std::string> ReadLogSegment(const LogSegment& segment);
  // Deletes the segments that end before `time_us` (retention); returns how many.
  Result<uint64_t> DeleteLogSegmentsBefore(const std::string& stream, int64_t time_us);

  Result<VerifyReport> Verify(bool quick);
  Result<GcStats> CollectGarbage();
  Result<RepoStats> Stats();
  // Reads every manifest: the sizes of each snapshot, by id.
  Result<std::vector<SnapshotSize>> SnapshotSizes();

  class Impl;

 private:
  explicit Repository(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::repo
