// repo/: the backup repository. Database files are cut into fixed-size,
// page-aligned chunks addressed by the SHA-256 of their content, compressed
// with zstd (stored raw when that does not help), and packed into pack
// objects of tens of MiB with an index object each. A snapshot is a manifest:
// its files and their chunk lists, plus the caller's metadata.
//
// Optionally encrypted at rest: chunk ids are then HMAC-SHA256 under a repo
// key instead of SHA-256, and every chunk blob, index, manifest and
// change-log segment is sealed with AES-256-GCM under a data key. Both keys
// are random, made when the repository is created, and stored only wrapped
// by a key-encryption key that a Keyring (below) holds.
//
// Layout in the object store (see docs/repository.md):
//   config                 format version and chunking settings (JSON);
//                          format 4 (2 before frames): encrypted, with the key id(s)
//   keys/<key-id>          encrypted repositories: the data and chunk-id
//                          keys, wrapped by the keyring's key <key-id>
//   packs/<id>             frames back to back: runs of consecutive new
//                          chunks compressed (and sealed) together
//   index/<id>             the pack's entries (hash, frame offset and sizes,
//                          place in the frame), checksummed
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
// - Every chunk's hash is checked when it is read back (restore, verify);
//   encrypted, every frame and object is also authenticated (GCM tag), an
//   object under an AAD naming its key; a frame moved elsewhere authenticates
//   but yields chunks that fail their keyed ids, so it is corrupt too.
//
// repo/ knows nothing of engines or HTTP.
// Thread safety: all methods may be called concurrently. Backups and
// restores run in parallel with each other; CollectGarbage waits for running
// backups and holds new ones back while it runs, so it never deletes a chunk
// a backup is about to reference.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "storage/storage.h"

namespace strata::repo {

// Where the key-encryption keys (KEKs) of encrypted repositories come from,
// named by key id. The repository never sees a KEK: it asks the keyring to
// wrap its keys when it is created and to unwrap them when it is opened, as
// it would ask a KMS (Encrypt/Decrypt with an encryption context). A key file
// is the keyring there is today; a KMS client would implement these three.
// Thread safety: implementations must allow concurrent calls.
class Keyring {
 public:
  virtual ~Keyring() = default;
  // The key id a new repository is encrypted with.
  virtual std::string DefaultKeyId() const = 0;
  // Encrypts `plain` under key `key_id`, bound to `context` (not secret, not
  // stored in the result; Unwrap must be given the same). The result is
  // opaque to the repository, which stores it.
  virtual Result<std::string> Wrap(const std::string& key_id, std::string_view plain,
                                   std::string_view context) = 0;
  // The plain bytes, or kKMSKeyNotAccessible with a message saying why: the
  // keyring has no key `key_id`, or its key does not open `wrapped` (another
  // key under the same name, or a damaged object). Never wrong bytes.
  virtual Result<std::string> Unwrap(const std::string& key_id, std::string_view wrapped,
                                     std::string_view context) = 0;
};

// A keyring of one 256-bit key read from a file: 32 raw bytes, or 64 hex
// digits (`openssl rand -hex 32`), surrounding whitespace ignored. The file
// must not be readable by group or others (kInvalidParameterValue otherwise,
// as ssh does for private keys). `key_id` names the key ([A-Za-z0-9._-], up
// to 64 characters); empty: derived from the key ("key-" and 16 hex digits of
// an HMAC of it), so the same file always has the same id.
Result<std::shared_ptr<Keyring>> OpenKeyFile(const std::filesystem::path& path, const std::string& key_id = "");
// The same from a key's 32 bytes, for tests and tools.
Result<std::shared_ptr<Keyring>> NewKeyringOfKey(std::string_view key, const std::string& key_id = "");

struct RepoOptions {
  // Chunk size for new repositories (a power of two, 512 B to 1 MiB). The
  // default, 4 KiB, is SQLite's default page size: an updated page changes
  // exactly one chunk, which is what keeps an incremental snapshot at the
  // size of what changed. An existing repository keeps its own.
  uint32_t chunk_size = 4096;
  int zstd_level = 1;
  // New chunks are compressed (and sealed) in frames of up to this many
  // bytes of consecutive chunks. On pgbench's files, zstd -1 stores 30.5 MiB
  // per 320 MiB in 4 KiB pieces, 17.9 in 64 KiB frames, 16.2 in 256 KiB and
  // 15.6 in 1 MiB ones (15.5 compressing each file whole, as pgBackRest
  // does), and runs 1.4-1.7x faster on frames than on 4 KiB. Restore decodes
  // a frame once for all its chunks; a delta restore that needs one chunk
  // of a frame decodes all of it (about 0.5 ms for 1 MiB). 1 MiB since
  // 2026-12-06: on a 1 GiB pgbench cluster it stores 3 MiB less than 256 KiB
  // over a full and an incremental snapshot (bench/RESULTS.md).
  uint32_t frame_bytes = 1u << 20;
  uint64_t pack_target_bytes = 32ull << 20;
  // A snapshot's lanes (and garbage collection's threads). A full snapshot
  // is bound by the CPU (SHA-256 and zstd of every chunk), so it runs as
  // fast as it has cores to run on.
  int threads = 2;
  // A restore's threads; 0: twice `threads` (they wait on the store's
  // reads and the target's writes about as long as they decode).
  int restore_threads = 0;
  // Bytes of file data read ahead per batch (memory stays near 2 batches + 1 pack).
  uint64_t batch_bytes = 8ull << 20;

  // Thread counts, pack and batch sizes that keep one snapshot's working
  // memory (each lane's batch and its frames, a pack's blocks filling and
  // being stored) and one restore's (about kRestoreThreadBytes a thread)
  // within `bytes`, whatever the database's size, on a machine with `cpus`
  // cores. The manifest (32 bytes per chunk) comes on top.
  static RepoOptions ForMemoryBudget(uint64_t bytes, int cpus = 2);
  // What one restore thread holds at most: its decoded frames (16 MiB),
  // the run it is writing (up to 5 MiB) and the pack range it read (4 MiB).
  static constexpr uint64_t kRestoreThreadBytes = 32ull << 20;

  // Encryption at rest. A new repository is created encrypted under
  // keyring->DefaultKeyId() when a keyring is given, unencrypted when not;
  // that choice is for the repository's life. Opening an encrypted
  // repository needs a keyring that holds its key (kKMSKeyNotAccessible
  // otherwise: no key, another key id, or the wrong key under its id).
  // Opening an unencrypted repository with a keyring fails with
  // kInvalidParameterCombination rather than quietly storing plaintext for
  // an operator who asked for encryption.
  std::shared_ptr<Keyring> keyring = nullptr;
};

// One file to back up: read_at(offset, out) fills `out` (short only at the
// end of the file) and returns the bytes read. It is called from several
// threads at once, for different offsets of the same file.
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

// A byte range [offset, offset + length) of a file.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// How a snapshot is restored.
struct RestoreOptions {
  // Write the files around the page cache (O_DIRECT). Faster where filling
  // the page cache is slow, but the files are then cold: best when what
  // follows reads little of them (a PostgreSQL server's start), not when
  // it reads them whole at once (SQLite's quick_check).
  bool direct = false;
};

// How a snapshot is taken. Everything is optional: {} is a full snapshot.
struct SnapshotOptions {
  ProgressFn progress = nullptr;
  LateFilesFn late_files = nullptr;
  // The snapshot's chunk size (a power of two, 512 B to 1 MiB), best the
  // engine's page size; 0: the repository's. Chunks of different sizes do
  // not deduplicate against each other.
  uint32_t chunk_size = 0;
  // An incremental snapshot: a file listed in `changed` is taken from
  // snapshot `parent_id` except for the listed ranges (aligned outward to
  // whole chunks), which are read, as is everything past the end of the
  // parent's file (a file may grow or shrink). A file listed with no ranges
  // is read only where its size differs from the parent's. The caller
  // vouches that outside these ranges the file's bytes equal the parent's
  // file of the same path; the repository cannot check that.
  //
  // A file is read whole, as in a full snapshot, when it is not listed, or
  // when the parent is unusable for it: parent_id empty or not in the
  // repository (or its manifest unreadable), a different chunk size, no file
  // of that path in the parent, or a parent chunk the repository no longer
  // indexes. Falling back is never an error: the snapshot is the same,
  // only slower.
  std::string parent_id{};
  std::map<std::string, std::vector<ByteRange>> changed{};
};

struct SnapshotStats {
  uint64_t logical_bytes = 0;  // sum of file sizes
  uint64_t chunks = 0;
  uint64_t new_chunks = 0;
  uint64_t stored_bytes = 0;  // bytes this snapshot added to packs
  uint64_t read_bytes = 0;    // bytes read from the files (less than logical_bytes when incremental)
  uint64_t parent_chunks = 0; // chunk ids taken from the parent's manifest without reading
  bool parent_used = false;   // the parent's manifest was read and served at least one file
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
// A compacted segment holds the payloads of segments seq..last_seq, one after
// another; a segment as appended has last_seq == seq.
struct LogSegment {
  std::string stream;
  uint64_t seq = 0;
  TimePoint first_time;
  TimePoint last_time;
  uint64_t stored_bytes = 0;
  uint64_t last_seq = 0;  // 0: the same as seq
  uint64_t LastSeq() const { return last_seq ? last_seq : seq; }
};

// Which log segments CompactLog merges: runs of consecutive small segments
// (and, with merge_large, unmerged large ones) that all end before
// `before`, into segments of about target bytes.
struct LogCompactionOptions {
  TimePoint before;
  // A segment stored in fewer bytes is small; a merged segment is written
  // once two or more members hold target_stored_bytes or target_raw_bytes.
  uint64_t small_stored_bytes = 1u << 20;
  uint64_t target_stored_bytes = 4u << 20;
  uint64_t target_raw_bytes = 16u << 20;
  // Nor does a merged segment span more time than this: retention deletes
  // whole segments, so a long one would keep old records past their time.
  std::chrono::microseconds max_span = std::chrono::hours(1);
  // Merged segments one pass writes at most; the rest waits for the next.
  uint64_t max_segments_written = 8;
  // Merged segments are written once and read rarely: worth a slower level
  // than the live segments' 1 (11% smaller on PostgreSQL WAL at level 3).
  int zstd_level = 3;
  // Large live segments (a drained backlog's, stored at level 1) are merged
  // too, two or more at a time, so that they are recompressed at zstd_level;
  // a merged segment is never taken again for its size alone.
  bool merge_large = false;
  // A small segment's frames are copied as they are, not compressed again,
  // when it holds this much payload or more (separate frames that large
  // compress about as well as one) and its frames are this many times
  // smaller than the payload already: recompressing costs CPU in
  // proportion to the payload and saves about a tenth of the stored bytes,
  // nothing worth it on a log that compresses so well (a busy SQLite
  // writer's frames of similar rows: 100 times), and beside that busy
  // writer it cost 2-3% of its commits.
  uint64_t keep_frames_raw_bytes = 1u << 20;
  uint64_t keep_frames_ratio = 8;
};

struct LogCompactionStats {
  uint64_t segments_merged = 0;   // segments replaced
  uint64_t segments_written = 0;  // merged segments written
  uint64_t bytes_before = 0;      // stored bytes of the segments replaced
  uint64_t bytes_after = 0;       // stored bytes of the merged segments
  bool more = false;              // stopped at max_segments_written: call again
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
  // The key id an encrypted repository was opened with; empty: unencrypted.
  const std::string& key_id() const;

  // Stores `files` as snapshot `id` (DBSnapshot-independent: callers pass a
  // unique id). Chunks already in the repository are not stored again.
  // Fails with kInvalidParameterValue if `id` exists.
  //
  // Incremental (options.parent_id, options.changed): the parent's manifest
  // is read once at the start; chunks outside the changed ranges take the
  // parent's chunk ids. They stay live: this snapshot holds the GC lock
  // shared from start to manifest (so CollectGarbage cannot run in
  // between, even if the parent is deleted meanwhile), only chunks the
  // repository still indexes are reused, and once written the new manifest
  // names them itself. The result is a snapshot like any other: it does
  // not depend on its parent afterwards.
  Result<SnapshotStats> CreateSnapshot(const std::string& id,
                                       const std::map<std::string, std::string>& metadata,
                                       const std::vector<FileSource>& files, const SnapshotOptions& options);
  Result<SnapshotStats> CreateSnapshot(const std::string& id,
                                       const std::map<std::string, std::string>& metadata,
                                       const std::vector<FileSource>& files,
                                       const ProgressFn& progress = nullptr,
                                       const LateFilesFn& late_files = nullptr) {
    return CreateSnapshot(id, metadata, files, SnapshotOptions{.progress = progress, .late_files = late_files});
  }
  // Writes the snapshot's files under target_dir. Chunks already correct in an
  // existing target file are not rewritten (delta restore). A missing or
  // corrupt chunk fails with kCorruption naming the file and offset (in an
  // encrypted repository, a chunk that does not authenticate is corrupt).
  Status RestoreSnapshot(const std::string& id, const std::string& target_dir,
                         const ProgressFn& progress = nullptr, const RestoreOptions& options = {});
  Result<SnapshotInfo> GetSnapshot(const std::string& id);
  Result<std::vector<std::string>> ListSnapshots();
  // A new manifest with the source's chunk lists and new metadata: no data copied.
  Status CopySnapshot(const std::string& from, const std::string& to,
                      const std::map<std::string, std::string>& metadata);
  // Removes the manifest; chunks go with the next CollectGarbage.
  Status DeleteSnapshot(const std::string& id);

  // Change log. Segments of one stream (an instance's DbiResourceId) are
  // numbered in append order; each covers commit times [first, last]. Append
  // is atomic: a segment is complete or absent.
  // The payload is the concatenation of `pieces` (read in place).
  Result<LogSegment> AppendLogSegment(const std::string& stream, TimePoint first_time, TimePoint last_time,
                                      std::span<const std::string_view> pieces);
  Result<LogSegment> AppendLogSegment(const std::string& stream, TimePoint first_time, TimePoint last_time,
                                      std::string_view payload) {
    return AppendLogSegment(stream, first_time, last_time, std::span<const std::string_view>(&payload, 1));
  }
  // Segments whose time range meets [from, to], in order: one listing, so
  // "the segments needed to reach T from a snapshot taken at S" is one call.
  Result<std::vector<LogSegment>> ListLogSegments(const std::string& stream, TimePoint from, TimePoint to);
  // A segment that compaction has merged away since it was listed is read
  // from the merged segment that holds it: the payload then also holds its
  // neighbours' records, which a reader tells apart by their own numbers.
  Result<std::string> ReadLogSegment(const LogSegment& segment);
  // Deletes the segments that end before `time` (retention); returns how many.
  Result<uint64_t> DeleteLogSegmentsBefore(const std::string& stream, TimePoint time);
  // Merges runs of small segments (a capture ships one every fraction of a
  // second under load) into few large ones (and, with merge_large, a
  // drained backlog's level-1 segments in pairs), so that a stream is not
  // hundreds of thousands of objects a day and compresses as a whole. The
  // merged segment is durable before its members are deleted; a crash in
  // between leaves members that listings hide and the next call deletes.
  // One call per stream at a time; appends and reads may run meanwhile.
  Result<LogCompactionStats> CompactLog(const std::string& stream, const LogCompactionOptions& options);

  // quick: every chunk a manifest names is in an index and its pack exists.
  // full: also reads every pack and re-hashes (and, encrypted, authenticates)
  // every chunk, and reads every change-log segment.
  Result<VerifyReport> Verify(bool quick);
  Result<GcStats> CollectGarbage();
  Result<RepoStats> Stats();
  // Reads every manifest: the sizes of each snapshot, by id.
  Result<std::vector<SnapshotSize>> SnapshotSizes();

  // Test hook: the 32-byte id the repository gives a chunk of these bytes.
  Result<std::string> TEST_ChunkId(std::string_view plain) const;

  class Impl;

 private:
  explicit Repository(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::repo
