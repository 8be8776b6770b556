// Taking snapshots: full and incremental, crash safety, concurrency, and
// the options that size them. (RepoTest runs each on every driver, plain and encrypted.)
#include "repo/repo_test_util.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "repo/format.h"

namespace strata::repo {
namespace {

TEST_P(RepoTest, RoundTripsFilesExactly) {
  MemFile a{"data.db", MixedData(200, 512, 1)};
  MemFile b{"sub/other", std::string(1000, 'x') + "tail"};  // not a multiple of the chunk size
  MemFile empty{"empty", ""};
  int last = -1;
  auto stats = repo_->CreateSnapshot("s1", {{"instance", "app"}}, {a.Source(), b.Source(), empty.Source()},
                                     [&](int p) { EXPECT_GE(p, last); last = p; });
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(last, 100);
  EXPECT_EQ(stats->logical_bytes, a.bytes.size() + b.bytes.size());
  EXPECT_LT(stats->stored_bytes, stats->logical_bytes) << "compressible pages compress";
  ASSERT_TRUE(repo_->RestoreSnapshot("s1", (dir_ / "out").string()).ok());
  EXPECT_EQ(ReadFile(dir_ / "out" / "data.db"), a.bytes);
  EXPECT_EQ(ReadFile(dir_ / "out" / "sub" / "other"), b.bytes);
  EXPECT_TRUE(fs::exists(dir_ / "out" / "empty"));
  auto info = repo_->GetSnapshot("s1");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->metadata.at("instance"), "app");
  EXPECT_TRUE(repo_->CreateSnapshot("s1", {}, {a.Source()}).status().Is(errors::kInvalidParameterValue));
}

TEST_P(RepoTest, AnIncrementalCostsWhatChanged) {
  MemFile a{"data.db", MixedData(1000, 512, 2)};
  auto full = repo_->CreateSnapshot("full", {}, {a.Source()});
  ASSERT_TRUE(full.ok());
  std::mt19937 rng(7);
  for (int i = 0; i < 10; ++i) a.bytes[(rng() % 1000) * 512 + 17] ^= 0x5a;  // 1% of pages
  auto inc = repo_->CreateSnapshot("inc", {}, {a.Source()});
  ASSERT_TRUE(inc.ok());
  EXPECT_LE(inc->new_chunks, 10u);
  EXPECT_LE(inc->stored_bytes, a.bytes.size() / 50) << "at most 2% of the size";
  ASSERT_TRUE(repo_->RestoreSnapshot("inc", (dir_ / "out").string()).ok());
  EXPECT_EQ(ReadFile(dir_ / "out" / "data.db"), a.bytes);
  // Delta restore over the older contents rewrites only what differs.
  ASSERT_TRUE(repo_->RestoreSnapshot("full", (dir_ / "out").string()).ok());
  EXPECT_NE(ReadFile(dir_ / "out" / "data.db"), a.bytes);
}

// A MemFile that counts the bytes read from it.
struct CountingFile {
  MemFile file;
  std::shared_ptr<std::atomic<uint64_t>> read = std::make_shared<std::atomic<uint64_t>>(0);
  FileSource Source() const {
    FileSource s = file.Source();
    auto inner = s.read_at;
    auto counter = read;
    s.read_at = [inner, counter](uint64_t off, std::span<std::byte> out) -> Result<size_t> {
      ASSIGN_OR_RETURN(size_t n, inner(off, out));
      *counter += n;
      return n;
    };
    return s;
  }
};

// Changes `pages` random pages (chunk-sized) and returns their byte ranges.
std::vector<ByteRange> ChangePages(std::string& bytes, uint32_t page, int pages, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<ByteRange> ranges;
  for (int i = 0; i < pages; ++i) {
    uint64_t p = rng() % (bytes.size() / page);
    for (uint32_t k = 0; k < page; k += 64) bytes[p * page + k] ^= static_cast<char>(1 + rng() % 255);
    ranges.push_back({p * page, page});
  }
  return ranges;
}

TEST_P(RepoTest, AnIncrementalWithRangesReadsOnlyThemAndRestoresTheSameBytes) {
  CountingFile a{{"data.db", MixedData(1000, 512, 21)}};
  MemFile other{"other", std::string(3000, 'o')};
  ASSERT_TRUE(repo_->CreateSnapshot("full", {}, {a.Source(), other.Source()}).ok());
  auto ranges = ChangePages(a.file.bytes, 512, 10, 5);
  // A range that is not chunk-aligned takes both chunks it touches.
  a.file.bytes[700 * 512 + 505] ^= 0x11;
  a.file.bytes[701 * 512 + 3] ^= 0x22;
  ranges.push_back({700 * 512 + 505, 10});  // bytes 505..514 of chunk 700: into 701
  *a.read = 0;
  auto inc = repo_->CreateSnapshot("inc", {}, {a.Source(), other.Source()},
                                   {.parent_id = "full", .changed = {{"data.db", ranges}}});
  ASSERT_TRUE(inc.ok()) << inc.status().ToString();
  EXPECT_TRUE(inc->parent_used);
  EXPECT_LE(a.read->load(), 12u * 512) << "only the changed chunks are read";
  EXPECT_EQ(inc->read_bytes, a.read->load() + other.bytes.size()) << "a file not listed is read whole";
  EXPECT_GE(inc->parent_chunks, 1000u - 12);
  EXPECT_EQ(inc->chunks, 1000u + 6);
  EXPECT_LE(inc->stored_bytes, a.file.bytes.size() / 50);

  // The same bytes as a full snapshot of the same files: same chunk list, same restore.
  ASSERT_TRUE(repo_->CreateSnapshot("full2", {}, {a.Source(), other.Source()}).ok());
  ASSERT_TRUE(repo_->RestoreSnapshot("inc", (dir_ / "inc").string()).ok());
  ASSERT_TRUE(repo_->RestoreSnapshot("full2", (dir_ / "full2").string()).ok());
  EXPECT_EQ(ReadFile(dir_ / "inc" / "data.db"), a.file.bytes);
  EXPECT_EQ(ReadFile(dir_ / "full2" / "data.db"), a.file.bytes);
  EXPECT_EQ(ReadFile(dir_ / "inc" / "other"), other.bytes);

  // The parent's chunks now belong to the incremental too: deleting the
  // parent and collecting garbage leaves it whole.
  ASSERT_TRUE(repo_->DeleteSnapshot("full").ok());
  ASSERT_TRUE(repo_->DeleteSnapshot("full2").ok());
  ASSERT_TRUE(repo_->CollectGarbage().ok());
  EXPECT_TRUE(repo_->Verify(false)->ok());
  fs::remove_all(dir_ / "inc");
  ASSERT_TRUE(repo_->RestoreSnapshot("inc", (dir_ / "inc").string()).ok());
  EXPECT_EQ(ReadFile(dir_ / "inc" / "data.db"), a.file.bytes);
}

TEST_P(RepoTest, AnIncrementalFollowsAFileThatGrowsOrShrinks) {
  // 100 chunks and a partial one: the tail chunk is never the parent's once the size changes.
  CountingFile a{{"data.db", MixedData(101, 512, 22).substr(0, 100 * 512 + 100)}};
  ASSERT_TRUE(repo_->CreateSnapshot("p", {}, {a.Source()}).ok());
  a.file.bytes += MixedData(20, 512, 23);  // grows by 20 chunks; the old partial tail changes too
  *a.read = 0;
  auto grown = repo_->CreateSnapshot("grown", {}, {a.Source()}, {.parent_id = "p", .changed = {{"data.db", {}}}});
  ASSERT_TRUE(grown.ok()) << grown.status().ToString();
  EXPECT_EQ(a.read->load(), a.file.bytes.size() - 100 * 512) << "the old tail chunk and everything after it";
  ASSERT_TRUE(repo_->RestoreSnapshot("grown", (dir_ / "grown").string()).ok());
  EXPECT_EQ(ReadFile(dir_ / "grown" / "data.db"), a.file.bytes);

  a.file.bytes.resize(50 * 512 + 7);  // shrinks into a partial chunk
  *a.read = 0;
  auto shrunk = repo_->CreateSnapshot("shrunk", {}, {a.Source()}, {.parent_id = "grown", .changed = {{"data.db", {}}}});
  ASSERT_TRUE(shrunk.ok()) << shrunk.status().ToString();
  EXPECT_EQ(a.read->load(), 7u) << "only the new partial tail";
  ASSERT_TRUE(repo_->RestoreSnapshot("shrunk", (dir_ / "shrunk").string()).ok());
  EXPECT_EQ(ReadFile(dir_ / "shrunk" / "data.db"), a.file.bytes);

  // Same size, nothing changed: nothing is read, not even the partial tail.
  *a.read = 0;
  auto same = repo_->CreateSnapshot("same", {}, {a.Source()}, {.parent_id = "shrunk", .changed = {{"data.db", {}}}});
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(a.read->load(), 0u);
  EXPECT_EQ(same->new_chunks, 0u);
  ASSERT_TRUE(repo_->RestoreSnapshot("same", (dir_ / "same").string()).ok());
  EXPECT_EQ(ReadFile(dir_ / "same" / "data.db"), a.file.bytes);
}

TEST_P(RepoTest, AnIncrementalWithoutAUsableParentReadsEverything) {
  CountingFile a{{"data.db", MixedData(200, 512, 24)}};
  ASSERT_TRUE(repo_->CreateSnapshot("p", {}, {a.Source()}).ok());
  ChangePages(a.file.bytes, 512, 5, 9);
  struct Case {
    std::string name;
    SnapshotOptions options;
  };
  std::vector<Case> cases = {
      {"missing-parent", {.parent_id = "no-such", .changed = {{"data.db", {}}}}},
      {"no-parent", {.changed = {{"data.db", {}}}}},
      {"file-not-in-parent", {.parent_id = "p", .changed = {{"renamed.db", {}}}}},
      {"file-not-listed", {.parent_id = "p", .changed = {{"other", {}}}}},
  };
  for (auto& c : cases) {
    *a.read = 0;
    CountingFile f = a;
    if (c.name == "file-not-in-parent") f.file.path = "renamed.db";
    auto st = repo_->CreateSnapshot(c.name, {}, {f.Source()}, c.options);
    ASSERT_TRUE(st.ok()) << c.name << ": " << st.status().ToString();
    EXPECT_EQ(a.read->load(), a.file.bytes.size()) << c.name;
    EXPECT_EQ(st->parent_chunks, 0u) << c.name;
    ASSERT_TRUE(repo_->RestoreSnapshot(c.name, (dir_ / c.name).string()).ok());
    EXPECT_EQ(ReadFile(dir_ / c.name / f.file.path), a.file.bytes) << c.name;
  }

  // A parent whose chunks the repository no longer indexes (here: every
  // index removed) is not trusted for them.
  {
    auto store = DriverStore();
    auto indexes = store->List("index/");
    ASSERT_TRUE(indexes.ok());
    for (const auto& o : *indexes) ASSERT_TRUE(store->Delete(o.key).ok());
  }
  Reopen();
  *a.read = 0;
  auto unindexed = repo_->CreateSnapshot("unindexed", {}, {a.Source()}, {.parent_id = "p", .changed = {{"data.db", {}}}});
  ASSERT_TRUE(unindexed.ok()) << unindexed.status().ToString();
  EXPECT_EQ(a.read->load(), a.file.bytes.size());
  EXPECT_EQ(unindexed->parent_chunks, 0u);
  ASSERT_TRUE(repo_->RestoreSnapshot("unindexed", (dir_ / "unindexed").string()).ok());
  EXPECT_EQ(ReadFile(dir_ / "unindexed" / "data.db"), a.file.bytes);
}

TEST_P(RepoTest, ASnapshotTakesTheChunkSizeAskedAndAnIncrementalNeedsItsParentsToo) {
  CountingFile a{{"data.db", MixedData(100, 512, 26)}};
  ASSERT_TRUE(repo_->CreateSnapshot("p1024", {}, {a.Source()}, {.chunk_size = 1024}).ok());
  EXPECT_EQ(repo_->GetSnapshot("p1024")->chunks, 50u);
  ASSERT_TRUE(repo_->RestoreSnapshot("p1024", (dir_ / "out").string()).ok());
  EXPECT_EQ(ReadFile(dir_ / "out" / "data.db"), a.file.bytes);
  *a.read = 0;
  auto st = repo_->CreateSnapshot("s", {}, {a.Source()}, {.parent_id = "p1024", .changed = {{"data.db", {}}}});
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(a.read->load(), a.file.bytes.size()) << "a parent of 1 KiB chunks cannot serve 512 B chunks";
  EXPECT_FALSE(st->parent_used);
  EXPECT_TRUE(repo_->CreateSnapshot("bad", {}, {a.Source()}, {.chunk_size = 3000}).status().Is(
      errors::kInvalidParameterValue));
}

TEST_P(RepoTest, ACrashAtAnyStepLeavesAConsistentRepository) {
  MemFile base{"data.db", MixedData(200, 512, 6)};
  MemFile next{"data.db", MixedData(200, 512, 8)};
  auto mem = storage::NewMemoryStore();
  for (int64_t n = 0;; ++n) {
    // A fresh repository with one snapshot, then a crash after n storage ops
    // of a second snapshot plus a garbage collection.
    mem = storage::NewMemoryStore();
    Reopen(mem.get());
    ASSERT_TRUE(repo_->CreateSnapshot("base", {}, {base.Source()}).ok());
    ASSERT_TRUE(repo_->DeleteSnapshot("base").ok());
    ASSERT_TRUE(repo_->CreateSnapshot("keep", {}, {base.Source()}).ok());
    storage::FaultInjectingStore faulty(mem.get(), {});
    Reopen(&faulty);
    faulty.Rearm({.fail_after_ops = n});
    Status st = repo_->CreateSnapshot("next", {}, {next.Source()}).status();
    if (st.ok()) st = repo_->CollectGarbage().status();
    bool finished = st.ok();
    // "Restart": the same bytes, a healthy store.
    Reopen(mem.get());
    auto report = repo_->Verify(false);
    ASSERT_TRUE(report.ok());
    EXPECT_TRUE(report->ok()) << "crash after " << n << " ops: " << report->problems[0].what;
    auto ids = *repo_->ListSnapshots();
    for (const auto& id : ids) {
      ASSERT_TRUE(repo_->RestoreSnapshot(id, (dir_ / ("r" + std::to_string(n)) / id).string()).ok()) << id;
    }
    EXPECT_TRUE(std::find(ids.begin(), ids.end(), "keep") != ids.end());
    if (std::find(ids.begin(), ids.end(), "next") != ids.end()) {
      EXPECT_EQ(ReadFile(dir_ / ("r" + std::to_string(n)) / "next" / "data.db"), next.bytes);
    }
    // The garbage of an interrupted run goes with the next collection.
    ASSERT_TRUE(repo_->CollectGarbage().ok());
    ASSERT_TRUE(repo_->Verify(false)->ok());
    if (finished) break;
    ASSERT_LT(n, 200) << "the backup never finished";
  }
}

TEST_P(RepoTest, NoSpaceFailsCleanly) {
  MemFile a{"data.db", MixedData(200, 512, 10)};
  auto mem = storage::NewMemoryStore();
  storage::FaultInjectingStore full(mem.get(), {});
  Reopen(&full);
  full.Rearm({.fail_after_ops = 3, .crash = false, .error = &errors::kNoSpace});
  auto st = repo_->CreateSnapshot("s", {}, {a.Source()});
  EXPECT_TRUE(st.status().Is(errors::kNoSpace)) << st.status().ToString();
  Reopen(mem.get());
  EXPECT_TRUE(repo_->ListSnapshots()->empty());
  EXPECT_TRUE(repo_->Verify(false)->ok());
}

TEST_P(RepoTest, ConcurrentSnapshotsRestoresAndGc) {
  std::vector<MemFile> files;
  for (int i = 0; i < 4; ++i) files.push_back({"data.db", MixedData(100, 512, 20 + i)});
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < 3; ++k) {
        std::string id = "t" + std::to_string(i) + "-" + std::to_string(k);
        if (!repo_->CreateSnapshot(id, {}, {files[i].Source()}).ok()) ++failures;
        if (!repo_->RestoreSnapshot(id, (dir_ / id).string()).ok()) ++failures;
        if (ReadFile(dir_ / id / "data.db") != files[i].bytes) ++failures;
        if (k == 1 && !repo_->CollectGarbage().ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_TRUE(repo_->Verify(false)->ok());
}

INSTANTIATE_TEST_SUITE_P(Drivers, RepoTest,
                         ::testing::Values("posix", "s3", "posix-encrypted", "s3-encrypted"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(RepoOptions, AMemoryBudgetBoundsPacksAndBatches) {
  auto small = RepoOptions::ForMemoryBudget(64ull << 20);
  EXPECT_LE(3 * small.batch_bytes + 2 * small.pack_target_bytes, 64ull << 20);
  auto dflt = RepoOptions::ForMemoryBudget(256ull << 20);
  EXPECT_EQ(dflt.pack_target_bytes, 32ull << 20);
  EXPECT_LE(3 * dflt.batch_bytes + 2 * dflt.pack_target_bytes, 256ull << 20);
}

TEST(RepoOptions, ThreadsFollowTheCoresWithinTheMemoryBudget) {
  // Two cores and the default budget: what stratad always ran with before.
  auto two = RepoOptions::ForMemoryBudget(256ull << 20, 2);
  EXPECT_EQ(two.threads, 2);
  EXPECT_EQ(two.restore_threads, 4);
  EXPECT_EQ(two.batch_bytes, 8ull << 20);
  auto many = RepoOptions::ForMemoryBudget(256ull << 20, 64);
  EXPECT_EQ(many.threads, 8);  // the budget, not the cores, stops it
  EXPECT_EQ(many.restore_threads, 8);
  auto roomy = RepoOptions::ForMemoryBudget(4096ull << 20, 12);
  EXPECT_EQ(roomy.threads, 12);
  EXPECT_EQ(roomy.restore_threads, 24);
  for (uint64_t mib : {16, 64, 256, 1024, 4096}) {
    for (int cpus : {0, 1, 2, 4, 16, 128}) {
      SCOPED_TRACE(testing::Message() << mib << " MiB, " << cpus << " cpus");
      const uint64_t bytes = mib << 20;
      auto o = RepoOptions::ForMemoryBudget(bytes, cpus);
      EXPECT_GE(o.threads, 1);
      EXPECT_LE(o.threads, std::max(cpus, 1));
      EXPECT_GE(o.restore_threads, 1);
      EXPECT_LE(o.restore_threads, 2 * o.threads);
      // Each lane's batch and its frames, and two packs' worth of blocks.
      EXPECT_LE(2 * static_cast<uint64_t>(o.threads) * o.batch_bytes + 2 * o.pack_target_bytes,
                std::max<uint64_t>(bytes, 4ull << 20));
      EXPECT_LE(static_cast<uint64_t>(o.restore_threads) * RepoOptions::kRestoreThreadBytes,
                std::max(bytes, RepoOptions::kRestoreThreadBytes));
    }
  }
}

}  // namespace
}  // namespace strata::repo
