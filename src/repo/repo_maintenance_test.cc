// Maintenance: copy and delete, garbage collection, verify, and sizes.
#include "repo/repo_test_util.h"

#include <set>

#include "repo/format.h"

namespace strata::repo {
namespace {

TEST_P(RepoTest, CopyDeleteAndGarbageCollection) {
  MemFile a{"data.db", MixedData(300, 512, 3)};
  ASSERT_TRUE(repo_->CreateSnapshot("a", {}, {a.Source()}).ok());
  ASSERT_TRUE(repo_->CopySnapshot("a", "b", {{"copy", "1"}}).ok());
  auto before = repo_->Stats();
  ASSERT_TRUE(repo_->DeleteSnapshot("a").ok());
  auto gc = repo_->CollectGarbage();
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(gc->bytes_freed, 0u) << "b still needs every chunk";
  ASSERT_TRUE(repo_->RestoreSnapshot("b", (dir_ / "out").string()).ok());
  EXPECT_EQ(ReadFile(dir_ / "out" / "data.db"), a.bytes);
  ASSERT_TRUE(repo_->DeleteSnapshot("b").ok());
  gc = repo_->CollectGarbage();
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(repo_->Stats()->stored_bytes, 0u);
  EXPECT_GT(before->stored_bytes, 0u);
  EXPECT_TRUE(repo_->Verify(false)->ok());
}

TEST_P(RepoTest, GarbageCollectionRewritesMostlyDeadPacks) {
  opts_.pack_target_bytes = 1 << 30;  // one pack per snapshot
  Reopen();
  MemFile a{"data.db", MixedData(100, 512, 4)};
  MemFile b{"data.db", MixedData(100, 512, 5)};
  b.bytes.replace(0, 512 * 10, a.bytes.substr(0, 512 * 10));
  ASSERT_TRUE(repo_->CreateSnapshot("a", {}, {a.Source()}).ok());
  ASSERT_TRUE(repo_->CreateSnapshot("b", {}, {b.Source()}).ok());
  ASSERT_TRUE(repo_->DeleteSnapshot("a").ok());
  auto gc = repo_->CollectGarbage();
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(gc->packs_rewritten, 1u);
  ASSERT_TRUE(repo_->Verify(false)->ok());
  ASSERT_TRUE(repo_->RestoreSnapshot("b", (dir_ / "out").string()).ok());
  EXPECT_EQ(ReadFile(dir_ / "out" / "data.db"), b.bytes);
}

// A file's short tail is one chunk of a frame whose share of the frame's
// bytes rounds to nothing; when it is the pack's only live chunk, the pack
// is still alive.
TEST_P(RepoTest, GarbageCollectionKeepsAPackWhoseOnlyLiveChunkIsATinyTail) {
  opts_.pack_target_bytes = 1 << 30;  // one pack per snapshot
  Reopen();
  std::string tail = "end";
  MemFile a{"data.db", std::string(512 * 5, 'a') + tail};
  MemFile b{"data.db", std::string(512 * 5, 'b') + tail};
  ASSERT_TRUE(repo_->CreateSnapshot("a", {}, {a.Source()}).ok());
  auto sb = repo_->CreateSnapshot("b", {}, {b.Source()});
  ASSERT_TRUE(sb.ok());
  ASSERT_EQ(sb->new_chunks, 1u) << "b stores its own page and takes a's tail";
  ASSERT_TRUE(repo_->DeleteSnapshot("a").ok());
  auto gc = repo_->CollectGarbage();
  ASSERT_TRUE(gc.ok()) << gc.status().ToString();
  auto report = repo_->Verify(false);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok()) << "b's tail chunk, stored with a, was collected";
  ASSERT_TRUE(repo_->RestoreSnapshot("b", (dir_ / "out").string()).ok());
  EXPECT_EQ(ReadFile(dir_ / "out" / "data.db"), b.bytes);
}

TEST_P(RepoTest, AFlippedByteIsFoundByVerifyAndRestore) {
  MemFile a{"data.db", MixedData(100, 512, 9)};
  ASSERT_TRUE(repo_->CreateSnapshot("s", {}, {a.Source()}).ok());
  auto store = DriverStore();
  for (const char* prefix : {"packs/", "index/", "snapshots/"}) {
    auto objs = *store->List(prefix);
    ASSERT_FALSE(objs.empty());
    std::string key = objs[0].key;
    std::string orig = *store->Get(key);
    std::string bad = orig;
    bad[bad.size() / 2] ^= 1;
    ASSERT_TRUE(store->Put(key, bad).ok());
    Reopen();
    auto report = repo_->Verify(false);
    ASSERT_TRUE(report.ok());
    EXPECT_FALSE(report->ok()) << "verify missed a flipped byte in " << key;
    EXPECT_FALSE(repo_->RestoreSnapshot("s", (dir_ / "out").string()).ok()) << key;
    ASSERT_TRUE(store->Put(key, orig).ok());
    Reopen();
    EXPECT_TRUE(repo_->Verify(false)->ok());
  }
}

TEST(RepoSizes, UniqueBytesAreWhatOnlyThatSnapshotHolds) {
  auto repo = std::move(Repository::Open(storage::NewMemoryStore(),
                                         RepoOptions{.chunk_size = 512, .pack_target_bytes = 64 << 10,
                                                     .batch_bytes = 16 << 10}))
                  .value();
  MemFile a{"data.db", MixedData(200, 512, 11)};
  ASSERT_TRUE(repo->CreateSnapshot("one", {}, {a.Source()}).ok());
  for (int p = 0; p < 10; ++p) a.bytes[p * 512 * 7 + 3] ^= 0x33;  // 10 pages change
  ASSERT_TRUE(repo->CreateSnapshot("two", {}, {a.Source()}).ok());
  ASSERT_TRUE(repo->CopySnapshot("two", "two-copy", {}).ok());
  auto sizes = repo->SnapshotSizes();
  ASSERT_TRUE(sizes.ok()) << sizes.status().ToString();
  std::map<std::string, SnapshotSize> by_id;
  for (const auto& s : *sizes) by_id[s.id] = s;
  ASSERT_EQ(by_id.size(), 3u);
  EXPECT_EQ(by_id["one"].logical_bytes, a.bytes.size());
  EXPECT_GT(by_id["one"].unique_bytes, 0u) << "the 10 old page versions are only in one";
  EXPECT_LT(by_id["one"].unique_bytes, by_id["one"].referenced_bytes / 5);
  EXPECT_EQ(by_id["two"].unique_bytes, 0u) << "a copy shares everything";
  EXPECT_EQ(by_id["two"].referenced_bytes, by_id["two-copy"].referenced_bytes);
  auto totals = repo->Stats();
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->snapshots, 3u);
}

}  // namespace
}  // namespace strata::repo
