// Private to repo/: the pack writer that snapshots and garbage collection
// stream new chunks through.
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "repo/repo_internal.h"

namespace strata::repo {

// Streams new chunks into packs. Frames are appended to a block of
// kBlockBytes; a full block goes to the writer's store thread, which
// appends it to the pack's object writer, and at the pack's end commits
// the pack, then writes its index and indexes its chunks (the index only
// after the pack is durable). Disk writes so overlap hashing and
// compression, and the snapshot waits for the store only when
// kQueuedBlocks blocks are waiting already: memory stays at a few blocks,
// recycled, whatever the size of the snapshot or of a pack.
// Finish() waits until every pack is indexed and reports the first error.
class Repository::Impl::PackWriter {
 public:
  explicit PackWriter(Impl* repo);
  ~PackWriter();

  // Claims chunk `h` for this writer, to be Added: false when the
  // repository has it, or it is claimed already (by another lane of the
  // snapshot): then the caller only names it. A claimed chunk counts as
  // stored until its pack is indexed, and as known after.
  bool Claim(const Hash& h);

  // Appends frames[0, n) to the pack, together: frames of one unit stay
  // adjacent even while other lanes add theirs, so a restore reads a
  // stretch of a file in one ranged read. Thread-safe.
  Status Add(const std::vector<EncodedFrame>& frames, size_t n);
  // Ends the pack being written and waits until every pack is indexed.
  Status Finish();
  uint64_t added_bytes() {
    std::lock_guard add_lock(add_mu_);
    return added_bytes_;
  }

 private:
  static constexpr uint64_t kBlockBytes = 4ull << 20;
  static constexpr size_t kQueuedBlocks = 3;

  // Called under add_mu_.
  Status AddLocked(const EncodedFrame& frame);

  struct Block {
    std::string bytes;
    bool ends_pack = false;
    std::vector<IndexEntry> entries;  // the pack's, on the block that ends it
  };

  // Hands the current block to the store thread, waiting while the queue
  // is full. Called under add_mu_.
  Status Send(bool ends_pack);

  void StoreLoop();
  Status Store(const Block& block, std::unique_ptr<storage::ObjectWriter>& pack, std::string& pack_id);

  Impl* repo_;
  const uint64_t block_bytes_;
  // The adding side, under add_mu_: the block filling and its pack.
  std::mutex add_mu_;
  Block block_;
  std::vector<IndexEntry> entries_;
  uint64_t pack_bytes_ = 0;
  uint64_t added_bytes_ = 0;
  // Shared with the store thread, under mu_.
  mutable std::mutex mu_;
  std::condition_variable wake_, idle_;
  std::deque<Block> queue_;
  std::vector<std::string> spare_;
  std::unordered_set<Hash, HashHasher> pending_;
  Status status_;
  bool busy_ = false;
  bool stopping_ = false;
  std::thread store_thread_;
};

}  // namespace strata::repo
