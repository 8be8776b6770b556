#include "repo/chunk_index.h"

#include <cstring>

namespace strata::repo {
namespace {

// Slot count of a part: a power of two, at most 80% full.
constexpr size_t kFirstPartSlots = 64;
bool TooFull(size_t used, size_t slots) { return (used + 1) * 5 > slots * 4; }

void KeyOf(const Hash& id, uint32_t key[4]) { std::memcpy(key, id.data(), 16); }

// Byte 0 picks the part; the home slot comes from bytes 8-15, independent of it.
size_t Home(const uint32_t key[4], size_t slots) { return (uint64_t{key[3]} << 32 | key[2]) & (slots - 1); }

}  // namespace

void ChunkIndex::Insert(Part& part, const Slot& slot) {
  size_t mask = part.size() - 1;
  for (size_t i = Home(slot.key, part.size());; i = (i + 1) & mask) {
    if (part[i].frame == kEmpty) {
      part[i] = slot;
      return;
    }
  }
}

void ChunkIndex::AddPack(uint32_t pack, const std::vector<IndexEntry>& entries) {
  uint64_t last_offset = UINT64_MAX;
  for (const auto& e : entries) {
    // A frame's entries are adjacent in its index; a format-1 entry is its own frame.
    if (frames_.empty() || e.offset != last_offset || !e.framed || frames_.back().pack != pack) {
      frames_.push_back(Frame{e.offset, pack, e.stored_size, e.frame_raw_size, e.codec, e.framed});
      last_offset = e.offset;
    }
    if (Contains(e.hash)) continue;
    Part& part = parts_[e.hash[0]];
    size_t& used = used_[e.hash[0]];
    if (part.empty() || TooFull(used, part.size())) {
      Part grown(part.empty() ? kFirstPartSlots : part.size() * 2);
      for (const auto& s : part)
        if (s.frame != kEmpty) Insert(grown, s);
      part.swap(grown);
    }
    Slot s;
    KeyOf(e.hash, s.key);
    s.frame = static_cast<uint32_t>(frames_.size() - 1);
    s.in_frame = e.in_frame;
    s.raw_size = e.raw_size;
    Insert(part, s);
    ++used;
    ++size_;
  }
}

const ChunkIndex::Slot* ChunkIndex::Lookup(const Hash& id) const {
  const Part& part = parts_[id[0]];
  if (part.empty()) return nullptr;
  uint32_t key[4];
  KeyOf(id, key);
  size_t mask = part.size() - 1;
  for (size_t i = Home(key, part.size());; i = (i + 1) & mask) {
    const Slot& s = part[i];
    if (s.frame == kEmpty) return nullptr;
    if (std::memcmp(s.key, key, sizeof key) == 0) return &s;
  }
}

bool ChunkIndex::Contains(const Hash& id) const { return Lookup(id) != nullptr; }

std::optional<Location> ChunkIndex::Find(const Hash& id) const {
  const Slot* s = Lookup(id);
  if (!s) return std::nullopt;
  const Frame& f = frames_[s->frame];
  return Location{f.pack, f.offset, f.stored_size, s->raw_size, f.codec, f.raw_size, s->in_frame, f.framed};
}

void ChunkIndex::Clear() {
  for (auto& p : parts_) Part().swap(p);
  used_.fill(0);
  std::vector<Frame>().swap(frames_);
  size_ = 0;
}

}  // namespace strata::repo
