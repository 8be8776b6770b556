// What control/ needs of the backup repository, in its own terms: store the
// files of a consistent snapshot view under an id, restore them into a
// directory, copy, delete. The implementation over repo/ lives in
// repo_backup_store.cc; keeping the seam narrow lets control/ tests and the
// state machines stay independent of the repository's format.
//
// Thread safety: every method may be called from any thread concurrently.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "engine/engine.h"

namespace strata::control {

struct StoredSnapshot {
  int64_t logical_bytes = 0;  // the database's size
  int64_t stored_bytes = 0;   // bytes this snapshot added to the repository
  int64_t read_bytes = 0;     // bytes read from the view (less than logical_bytes when incremental)
  bool incremental = false;   // the parent served at least one file
};

// What a snapshot may take from an earlier stored snapshot instead of
// reading it: every file named in `changed` equals the parent's file of
// that path outside its ranges (and past the parent's end). The store falls
// back to reading a file whole when the parent cannot serve it.
struct IncrementalBase {
  std::string parent_id{};      // a stored snapshot id; empty: a full snapshot
  engine::FileRanges changed{};
};

using Progress = std::function<void(int percent)>;
// The files of a snapshot known only once the others are stored.
using LateFiles = std::function<Result<std::vector<engine::FileSource>>()>;

// One stored segment of an instance's change log: segments seq..last_seq
// of the stream as shipped (last_seq > seq once compaction merged them).
struct LogSegmentRef {
  uint64_t seq = 0;
  TimePoint first{};  // the commit times it spans
  TimePoint last{};
  int64_t stored_bytes = 0;
  uint64_t last_seq = 0;  // 0: the same as seq
};

// What one CompactLog pass did.
struct LogCompaction {
  uint64_t segments_merged = 0;
  uint64_t segments_written = 0;
  int64_t bytes_before = 0;
  int64_t bytes_after = 0;
  bool more = false;  // the pass stopped at its bound: there is more to merge
};

class BackupStore {
 public:
  virtual ~BackupStore() = default;
  // Stores `files` (then `late_files`, if given) as snapshot `id`, reading
  // only what `base` says may differ from its parent, in chunks of the
  // engine's `page_size` (at least 4 KiB) so that a changed page is a changed
  // chunk. Visible
  // (and listed) only once every byte is durable; on failure nothing is left
  // that claims to be the snapshot.
  virtual Result<StoredSnapshot> PutSnapshot(const std::string& id,
                                             const std::map<std::string, std::string>& metadata,
                                             const std::vector<engine::FileSource>& files, uint32_t page_size,
                                             const IncrementalBase& base, const Progress& progress,
                                             const LateFiles& late_files = nullptr) = 0;
  // Writes the snapshot's files under `target` (created if missing), every
  // chunk checked before it is written.
  // direct: written around the page cache (nothing reads them whole next).
  virtual Status RestoreSnapshot(const std::string& id, const std::filesystem::path& target,
                                 const Progress& progress, bool direct = false) = 0;
  // A new snapshot sharing the source's data (no bytes copied).
  virtual Status CopySnapshot(const std::string& from, const std::string& to,
                              const std::map<std::string, std::string>& metadata) = 0;
  // Forgets the snapshot; its storage is reclaimed by garbage collection.
  virtual Status DeleteSnapshot(const std::string& id) = 0;
  // Reclaims the storage no snapshot references any more.
  virtual Status CollectGarbage() = 0;
  // The change log of `stream` (an instance's DbiResourceId): durable when
  // PutLogSegment returns; listed in order by the times they span. The
  // payload is the concatenation of `pieces`.
  virtual Status PutLogSegment(const std::string& stream, TimePoint first, TimePoint last,
                               std::span<const std::string_view> pieces) = 0;
  virtual Result<std::vector<LogSegmentRef>> ListLogSegments(const std::string& stream, TimePoint from,
                                                             TimePoint to) = 0;
  virtual Result<std::string> ReadLogSegment(const std::string& stream, const LogSegmentRef& segment) = 0;
  // Deletes the segments that end before `time`; returns how many.
  virtual Result<uint64_t> DeleteLogSegmentsBefore(const std::string& stream, TimePoint time) = 0;
  // Merges the small segments that end before `before` into large ones,
  // and a drained backlog's large ones in pairs (fewer objects, better
  // compression); readers see the same records.
  virtual Result<LogCompaction> CompactLog(const std::string& stream, TimePoint before) = 0;
  // Ids of every stored snapshot, to reconcile with the catalog after a crash.
  virtual Result<std::vector<std::string>> ListSnapshots() = 0;
};

}  // namespace strata::control
