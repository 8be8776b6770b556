// The repository's in-memory map from chunk id to where the chunk is stored,
// built from every pack index when the repository opens and kept for its
// life. A repository holds millions of chunks (a 10 GiB database is 2.6
// million 4 KiB chunks), so the map is compact: about 30 bytes per slot (the
// first 16 bytes of the id, the chunk's frame and place in it) at most 80%
// full, plus 24 bytes per frame shared by its chunks, where an
// std::unordered_map node with the full id and location took about 110.
//
// Keys are the first 16 bytes of the 32-byte id: ids are uniform (SHA-256 or
// HMAC-SHA256), two chunks share a prefix with odds of about 2^-65 in 2^32
// chunks, and every chunk read back is checked against its full id, so even
// then a restore fails loudly instead of writing the wrong page.
//
// The table is split into 256 parts by the id's first byte; growing one part
// moves 1/256 of the entries, so growth never doubles the memory at once.
// Not thread-safe: the repository locks around it.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "repo/format.h"

namespace strata::repo {

// Where a chunk is: its frame (pack, offset, stored size, codec, decoded
// size) and its place in the decoded frame. See IndexEntry.
struct Location {
  uint32_t pack = 0;  // the repository's number for the pack
  uint64_t offset = 0;
  uint32_t stored_size = 0;
  uint32_t raw_size = 0;
  Codec codec = Codec::kRaw;
  uint32_t frame_raw_size = 0;
  uint32_t in_frame = 0;
  bool framed = true;

  static Location Of(uint32_t pack, const IndexEntry& e) {
    return Location{pack, e.offset, e.stored_size, e.raw_size, e.codec, e.frame_raw_size, e.in_frame, e.framed};
  }
  // The chunk's part of its frame's stored bytes, for sizes and accounting.
  uint64_t StoredShare() const {
    return frame_raw_size == 0 ? stored_size : uint64_t{stored_size} * raw_size / frame_raw_size;
  }
  // Names the frame among all the repository's frames.
  uint64_t FrameKey() const { return (uint64_t{pack} << 40) | offset; }
};

class ChunkIndex {
 public:
  // Indexes the entries of pack number `pack`; a chunk already indexed keeps
  // the location it has.
  void AddPack(uint32_t pack, const std::vector<IndexEntry>& entries);
  std::optional<Location> Find(const Hash& id) const;
  bool Contains(const Hash& id) const;
  size_t size() const { return size_; }
  void Clear();

 private:
  struct Slot {
    uint32_t key[4];  // the id's first 16 bytes (4-byte words keep a slot at 28 bytes)
    uint32_t frame = kEmpty;  // index into frames_; kEmpty: a free slot
    uint32_t in_frame = 0;
    uint32_t raw_size = 0;
  };
  struct Frame {
    uint64_t offset = 0;
    uint32_t pack = 0;
    uint32_t stored_size = 0;
    uint32_t raw_size = 0;
    Codec codec = Codec::kRaw;
    bool framed = true;
  };
  static constexpr uint32_t kEmpty = UINT32_MAX;
  using Part = std::vector<Slot>;

  const Slot* Lookup(const Hash& id) const;
  static void Insert(Part& part, const Slot& slot);

  std::array<Part, 256> parts_;
  std::array<size_t, 256> used_{};
  std::vector<Frame> frames_;
  size_t size_ = 0;
};

}  // namespace strata::repo
