// Restoring: direct writes, and repositories of older formats that must
// still restore; frames as the pack writer forms them.
#include "repo/repo_test_util.h"

#include <fmt/format.h>

#include <set>

#include "repo/format.h"

namespace strata::repo {
namespace {

// Direct restores write whole 4 KiB blocks around the page cache and a
// file's partial last block through it; a delta restore over an existing
// target mixes them with its reads of what is there.
TEST(RepoRestore, DirectWritesRestoreExactly) {
  fs::path dir = fs::temp_directory_path() / ("strata-direct-" + RandomHex(6));
  auto repo = std::move(Repository::Open(std::move(storage::OpenPosixStore(dir / "repo")).value(),
                                         RepoOptions{.chunk_size = 4096}))
                  .value();
  MemFile big{"base/data.db", MixedData(2000, 4096, 21) + "a tail that is not a whole block"};
  MemFile small{"small", "tiny"};
  ASSERT_TRUE(repo->CreateSnapshot("s", {}, {big.Source(), small.Source()}).ok());
  ASSERT_TRUE(repo->RestoreSnapshot("s", (dir / "out").string(), nullptr, {.direct = true}).ok());
  EXPECT_EQ(ReadFile(dir / "out" / "base" / "data.db"), big.bytes);
  EXPECT_EQ(ReadFile(dir / "out" / "small"), small.bytes);
  // Over a target that differs in places.
  {
    std::fstream f(dir / "out" / "base" / "data.db", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096 * 7 + 5);
    f.write("scribble", 8);
    f.seekp(static_cast<std::streamoff>(big.bytes.size() - 3));
    f.write("xyz", 3);
  }
  ASSERT_TRUE(repo->RestoreSnapshot("s", (dir / "out").string(), nullptr, {.direct = true}).ok());
  EXPECT_EQ(ReadFile(dir / "out" / "base" / "data.db"), big.bytes);
  fs::remove_all(dir);
}

// A repository in a new directory whose config says it is of an older
// `format` (of 512-byte SHA-256 chunks), and its objects' store, to write
// its objects into.
std::pair<fs::path, std::unique_ptr<storage::ObjectStore>> OlderRepository(int format) {
  fs::path dir = fs::temp_directory_path() / fmt::format("strata-repo-v{}-{}", format, RandomHex(6));
  EXPECT_TRUE(Repository::Open(std::move(storage::OpenPosixStore(dir)).value(), RepoOptions{.chunk_size = 512}).ok());
  auto store = std::move(storage::OpenPosixStore(dir)).value();
  EXPECT_TRUE(store
                  ->Put("config", fmt::format(R"({{"format_version": {}, "chunk_size": 512, "hash": "sha256"}})",
                                              format))
                  .ok());
  return {dir, std::move(store)};
}

// Stores pack `pack_id` (page0, then page1) and its `index` (checksummed
// here), and snapshot "old" of them: data.db, page1 then page0.
void PutOlderSnapshot(storage::ObjectStore& store, const std::string& pack_id, std::string index,
                      const std::string& page0, const std::string& page1) {
  Hash sum = Sha256(index);
  index.append(reinterpret_cast<const char*>(sum.data()), 32);
  EXPECT_TRUE(store.Put("packs/" + pack_id, page0 + page1).ok());
  EXPECT_TRUE(store.Put("index/" + pack_id, index).ok());
  Manifest m{"old", 512, {}, {ManifestFile{"data.db", 1024, 0600, {Sha256(page1), Sha256(page0)}}}};
  EXPECT_TRUE(store.Put("snapshots/old", EncodeManifest(m)).ok());
}

// A repository written before frames: format-1 index entries, each chunk
// its own blob. It still restores and verifies.
TEST(RepoFormat, AFormatOneIndexOfSingleChunkBlobsStillRestores) {
  auto [dir, store] = OlderRepository(1);
  RepoOptions opts{.chunk_size = 512};
  std::string page0(512, 'a'), page1 = MixedData(1, 512, 3);
  std::string index = "SIDX0001";
  auto put_entry = [&](const Hash& h, uint64_t offset) {
    index.append(reinterpret_cast<const char*>(h.data()), 32);
    for (int i = 0; i < 8; ++i) index.push_back(static_cast<char>((offset >> (8 * i)) & 0xff));
    for (uint32_t v : {512u, 512u})
      for (int i = 0; i < 4; ++i) index.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    index.push_back(0);  // raw
  };
  put_entry(Sha256(page0), 0);
  put_entry(Sha256(page1), 512);
  PutOlderSnapshot(*store, "0123456789abcdef0123456789abcdef", index, page0, page1);

  auto repo = std::move(Repository::Open(std::move(storage::OpenPosixStore(dir)).value(), opts)).value();
  ASSERT_TRUE(repo->RestoreSnapshot("old", (dir / "out").string()).ok());
  EXPECT_EQ(ReadFile(dir / "out" / "data.db"), page1 + page0);
  auto report = repo->Verify(false);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok());
  EXPECT_EQ(report->chunks_checked, 2u);
  EXPECT_NE(store->Get("config")->find(R"("format_version": 1)"), std::string::npos)
      << "reading leaves the repository as it was (it may be read-only)";
  MemFile more{"data.db", page1 + std::string(512, 'z')};
  ASSERT_TRUE(repo->CreateSnapshot("new", {}, {more.Source()}).ok());
  EXPECT_NE(store->Get("config")->find(R"("format_version": 7)"), std::string::npos)
      << "raised before the first new index, so that a Strata from before them refuses the repository";
  ASSERT_TRUE(repo->RestoreSnapshot("new", (dir / "out2").string()).ok());
  EXPECT_EQ(ReadFile(dir / "out2" / "data.db"), more.bytes);
  fs::remove_all(dir);
}

// A repository written with frames but before compact indexes (format 3,
// SIDX0002: each entry repeats its frame's fields) still restores, and its
// config is raised to 5 when the first compact index is written.
TEST(RepoFormat, AFormatThreeIndexStillRestores) {
  auto [dir, store] = OlderRepository(3);
  RepoOptions opts{.chunk_size = 512};
  std::string page0(512, 'b'), page1 = MixedData(1, 512, 4);
  std::string index = "SIDX0002";
  auto put_u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) index.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  // One raw frame of two chunks at offset 0.
  for (uint32_t k = 0; k < 2; ++k) {
    Hash h = Sha256(k == 0 ? page0 : page1);
    index.append(reinterpret_cast<const char*>(h.data()), 32);
    for (int i = 0; i < 8; ++i) index.push_back(0);  // frame offset 0
    put_u32(1024);                                    // frame stored size
    put_u32(512);                                     // chunk size
    index.push_back(0);                               // raw
    put_u32(1024);                                    // frame decoded size
    put_u32(512 * k);                                 // place in the frame
  }
  PutOlderSnapshot(*store, "00000000000000000000000000000003", index, page0, page1);

  auto repo = std::move(Repository::Open(std::move(storage::OpenPosixStore(dir)).value(), opts)).value();
  ASSERT_TRUE(repo->RestoreSnapshot("old", (dir / "out").string()).ok());
  EXPECT_EQ(ReadFile(dir / "out" / "data.db"), page1 + page0);
  EXPECT_TRUE(repo->Verify(false)->ok());
  MemFile more{"data.db", page0 + std::string(512, 'y')};
  ASSERT_TRUE(repo->CreateSnapshot("new", {}, {more.Source()}).ok());
  EXPECT_NE(store->Get("config")->find(R"("format_version": 7)"), std::string::npos);
  auto indexes = store->List("index/");
  ASSERT_TRUE(indexes.ok());
  ASSERT_EQ(indexes->size(), 2u);
  for (const auto& o : *indexes) {
    if (o.key.find("00000003") == std::string::npos) {
      EXPECT_EQ(store->Get(o.key)->substr(0, 8), "SIDX0003");
    }
  }
  ASSERT_TRUE(repo->RestoreSnapshot("new", (dir / "out2").string()).ok());
  EXPECT_EQ(ReadFile(dir / "out2" / "data.db"), more.bytes);
  fs::remove_all(dir);
}

TEST(RepoFormat, ACompactIndexRoundTripsAtAboutThirtyThreeBytesAChunk) {
  std::vector<IndexEntry> entries;
  uint64_t offset = 0;
  for (uint32_t f = 0; f < 300; ++f) {
    const uint32_t chunks = f % 7 == 0 ? 5 : 32, stored = 20000 + f;
    const uint32_t decoded = chunks * 8192 - (f == 299 ? 8092 : 0);  // the last frame ends in a short tail chunk
    for (uint32_t k = 0; k < chunks; ++k) {
      const uint32_t size = (f == 299 && k == chunks - 1) ? 100 : 8192;
      entries.push_back(IndexEntry{Sha256(std::to_string(f) + "/" + std::to_string(k)), offset, stored, size,
                                   f % 3 ? Codec::kZstd : Codec::kRaw, decoded, k * 8192, true});
    }
    offset += stored;
  }
  std::string bytes = EncodeIndex(entries);
  EXPECT_EQ(bytes.substr(0, 8), "SIDX0003");
  EXPECT_LT(bytes.size(), entries.size() * 34) << "32 bytes of id and little else a chunk";
  auto back = DecodeIndex(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto &a = entries[i], &b = (*back)[i];
    ASSERT_TRUE(a.hash == b.hash && a.offset == b.offset && a.stored_size == b.stored_size &&
                a.raw_size == b.raw_size && a.codec == b.codec && a.frame_raw_size == b.frame_raw_size &&
                a.in_frame == b.in_frame && b.framed)
        << "entry " << i;
  }
  for (size_t at : {size_t{9}, bytes.size() / 2, bytes.size() - 40}) {
    std::string bad = bytes;
    bad[at] ^= 1;
    EXPECT_TRUE(DecodeIndex(bad).status().Is(errors::kCorruption)) << "flipped byte at " << at;
  }
  // Counts that disagree behind a valid checksum (an index written wrong)
  // are corrupt too, not an allocation or a read past the end.
  for (size_t field : {size_t{8}, size_t{12}, size_t{16}}) {  // frames, chunks, compressed table size
    std::string bad = bytes.substr(0, bytes.size() - 32);
    bad[field] = static_cast<char>(bad[field] + 1);
    Hash sum = Sha256(bad);
    bad.append(reinterpret_cast<const char*>(sum.data()), 32);
    EXPECT_TRUE(DecodeIndex(bad).status().Is(errors::kCorruption)) << "count at " << field;
  }
}

// New chunks share frames: a file of compressible pages is stored in far
// fewer, better-compressed frames than one blob per chunk would need.
TEST(RepoFormat, ConsecutiveNewChunksShareAFrame) {
  auto repo = std::move(Repository::Open(storage::NewMemoryStore(),
                                         RepoOptions{.chunk_size = 512, .frame_bytes = 8192}))
                  .value();
  std::string text;
  for (int i = 0; text.size() < 512 * 64; ++i) text += "row " + std::to_string(i % 97) + ";";
  text.resize(512 * 64);
  MemFile a{"data.db", text};
  auto framed = repo->CreateSnapshot("framed", {}, {a.Source()});
  ASSERT_TRUE(framed.ok());
  auto single = std::move(Repository::Open(storage::NewMemoryStore(),
                                           RepoOptions{.chunk_size = 512, .frame_bytes = 512}))
                    .value();
  auto one_by_one = single->CreateSnapshot("single", {}, {a.Source()});
  ASSERT_TRUE(one_by_one.ok());
  EXPECT_EQ(framed->new_chunks, one_by_one->new_chunks);
  EXPECT_LT(framed->stored_bytes * 2, one_by_one->stored_bytes) << "frames of 16 chunks compress better";
  fs::path out = fs::temp_directory_path() / ("strata-frames-" + RandomHex(6));
  ASSERT_TRUE(repo->RestoreSnapshot("framed", out.string()).ok());
  EXPECT_EQ(ReadFile(out / "data.db"), text);
  fs::remove_all(out);
}

// The chunks' zstd level is the opener's choice: snapshots stored at the
// fastest and at a slow level in one repository restore alike, and the slow
// level stores less.
TEST(RepoFormat, TheZstdLevelCanChangeBetweenOpens) {
  auto mem = storage::NewMemoryStore();
  auto* store = mem.get();
  auto open = [&](int level) {
    return std::move(Repository::Open(storage::NewBorrowedStore(store), RepoOptions{.zstd_level = level})).value();
  };
  std::string fast_text, slow_text;
  for (int i = 0; fast_text.size() < (256u << 10); ++i) {
    fast_text += fmt::format("row {} of the fast one, {};", i, i * 7919 % 1000);
    slow_text += fmt::format("row {} of the slow one, {};", i, i * 7919 % 1000);
  }
  MemFile fast_file{"data.db", fast_text}, slow_file{"data.db", slow_text};
  auto fast = open(-7)->CreateSnapshot("fast", {}, {fast_file.Source()});
  ASSERT_TRUE(fast.ok()) << fast.status().ToString();
  auto slow_repo = open(19);
  auto slow = slow_repo->CreateSnapshot("slow", {}, {slow_file.Source()});
  ASSERT_TRUE(slow.ok()) << slow.status().ToString();
  EXPECT_LT(slow->stored_bytes * 3, fast->stored_bytes * 2) << "level 19 against -7";
  for (const auto& [id, text] : {std::pair{"fast", &fast_text}, std::pair{"slow", &slow_text}}) {
    fs::path out = fs::temp_directory_path() / ("strata-level-" + RandomHex(6));
    ASSERT_TRUE(slow_repo->RestoreSnapshot(id, out.string()).ok()) << id;
    EXPECT_EQ(ReadFile(out / "data.db"), *text) << id;
    fs::remove_all(out);
  }
  auto report = slow_repo->Verify(false);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok());
}

TEST(RepoFormat, RandomChunksGoIntoFramesApartFromCompressibleOnes) {
  auto mem = storage::NewMemoryStore();
  auto* store = mem.get();
  auto repo = std::move(Repository::Open(std::move(mem), RepoOptions{.chunk_size = 4096, .frame_bytes = 64 << 10}))
                  .value();
  MemFile a{"data.db", MixedData(64, 4096, 12)};  // text and random pages, alternating
  ASSERT_TRUE(repo->CreateSnapshot("s", {}, {a.Source()}).ok());
  auto index_keys = *store->List("index/");
  ASSERT_EQ(index_keys.size(), 1u);
  auto entries = DecodeIndex(*store->Get(index_keys[0].key));
  ASSERT_TRUE(entries.ok());
  ASSERT_EQ(entries->size(), 32u + 7u);  // every random page; the text pages repeat every 7
  // Every frame holds one kind: raw frames only random pages, zstd frames
  // only text pages; no frame mixes them.
  std::map<uint64_t, std::set<bool>> kinds;  // frame offset -> is each member a random page
  for (const auto& e : *entries) {
    size_t page = 0;
    for (; page < 64; ++page)
      if (Sha256(std::string_view(a.bytes).substr(page * 4096, 4096)) == e.hash) break;
    ASSERT_LT(page, 64u);
    kinds[e.offset].insert(page % 2 == 1);
    EXPECT_EQ(e.codec, page % 2 ? Codec::kRaw : Codec::kZstd) << "page " << page;
  }
  for (const auto& [offset, k] : kinds) EXPECT_EQ(k.size(), 1u) << "frame at " << offset << " mixes kinds";
  fs::path out = fs::temp_directory_path() / ("strata-kinds-" + RandomHex(6));
  ASSERT_TRUE(repo->RestoreSnapshot("s", out.string()).ok());
  EXPECT_EQ(ReadFile(out / "data.db"), a.bytes);
  fs::remove_all(out);
}

}  // namespace
}  // namespace strata::repo
