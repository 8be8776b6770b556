#include "repo/chunk_index.h"

#include <gtest/gtest.h>

#include <string>
#include <unordered_map>

namespace strata::repo {
namespace {

Hash IdOf(uint64_t n) { return Sha256(std::to_string(n)); }

// 64 chunks of 4 KiB per 256 KiB frame, frames back to back in each pack.
std::vector<IndexEntry> PackEntries(uint64_t first, uint64_t count) {
  std::vector<IndexEntry> out;
  for (uint64_t n = first; n < first + count; ++n) {
    uint64_t k = n - first;
    out.push_back(IndexEntry{IdOf(n), (k / 64) * 100000, 90000, 4096, Codec::kZstd, 64 * 4096,
                             static_cast<uint32_t>((k % 64) * 4096), true});
  }
  return out;
}

TEST(ChunkIndex, FindsEveryChunkOfManyPacksAndNothingElse) {
  ChunkIndex index;
  std::unordered_map<Hash, Location, HashHasher> want;
  for (uint32_t pack = 0; pack < 40; ++pack) {
    auto entries = PackEntries(pack * 5000ull, 5000);
    index.AddPack(pack, entries);
    for (const auto& e : entries) want.emplace(e.hash, Location::Of(pack, e));
  }
  ASSERT_EQ(index.size(), 200000u);
  for (const auto& [id, loc] : want) {
    auto got = index.Find(id);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->pack, loc.pack);
    EXPECT_EQ(got->offset, loc.offset);
    EXPECT_EQ(got->stored_size, loc.stored_size);
    EXPECT_EQ(got->raw_size, loc.raw_size);
    EXPECT_EQ(got->frame_raw_size, loc.frame_raw_size);
    EXPECT_EQ(got->in_frame, loc.in_frame);
    EXPECT_EQ(got->codec, loc.codec);
    EXPECT_TRUE(got->framed);
  }
  for (uint64_t n = 200000; n < 210000; ++n) EXPECT_FALSE(index.Contains(IdOf(n)));
}

TEST(ChunkIndex, AChunkKeepsItsFirstLocationAndFormatOneEntriesAreTheirOwnFrames) {
  ChunkIndex index;
  index.AddPack(0, PackEntries(0, 10));
  auto again = PackEntries(5, 10);  // chunks 5-9 again, in pack 1
  index.AddPack(1, again);
  EXPECT_EQ(index.size(), 15u);
  EXPECT_EQ(index.Find(IdOf(7))->pack, 0u);
  EXPECT_EQ(index.Find(IdOf(12))->pack, 1u);

  std::vector<IndexEntry> v1;
  for (uint64_t n = 100; n < 103; ++n) {
    v1.push_back(IndexEntry{IdOf(n), (n - 100) * 600, 600, 4096, Codec::kZstd, 4096, 0, false});
  }
  index.AddPack(2, v1);
  for (uint64_t n = 100; n < 103; ++n) {
    auto loc = index.Find(IdOf(n));
    ASSERT_TRUE(loc.has_value());
    EXPECT_EQ(loc->offset, (n - 100) * 600);
    EXPECT_FALSE(loc->framed);
    EXPECT_EQ(loc->StoredShare(), 600u);
  }
  index.Clear();
  EXPECT_EQ(index.size(), 0u);
  EXPECT_FALSE(index.Contains(IdOf(1)));
}

}  // namespace
}  // namespace strata::repo
