#include "repo/repo.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>

#include <cstring>
#include <fstream>
#include <set>
#include <thread>
#include <random>

#include "common/ids.h"
#include "repo/format.h"

namespace strata::repo {
namespace {

namespace fs = std::filesystem;

// A file in memory, served as a FileSource.
struct MemFile {
  std::string path;
  std::string bytes;
  FileSource Source() const {
    return FileSource{path, bytes.size(), 0644, [this](uint64_t off, std::span<std::byte> out) -> Result<size_t> {
                        if (off >= bytes.size()) return size_t{0};
                        size_t n = std::min<size_t>(out.size(), bytes.size() - off);
                        std::memcpy(out.data(), bytes.data() + off, n);
                        return n;
                      }};
  }
};

// Half compressible text-like pages, half random ones, as a database holds.
std::string MixedData(size_t pages, uint32_t page, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out;
  for (size_t p = 0; p < pages; ++p) {
    std::string pg(page, '\0');
    if (p % 2) {
      for (auto& c : pg) c = static_cast<char>(rng());
    } else {
      for (size_t i = 0; i < page; ++i) pg[i] = "row data "[i % 9] + static_cast<char>(p % 7);
    }
    out += pg;
  }
  return out;
}

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Every test runs on the posix driver and, when an S3 endpoint is given
// (S3_ENDPOINT and keys, as scripts/test exports for its Ceph RGW), on S3;
// and each of those again with the repository encrypted ("-encrypted"): the
// same behaviour, crash safety and corruption checks must hold either way.
class RepoTest : public ::testing::TestWithParam<std::string> {
 protected:
  bool OnS3() const { return GetParam().rfind("s3", 0) == 0; }
  bool Encrypted() const { return GetParam().find("-encrypted") != std::string::npos; }
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("repo_test_" + RandomHex(6));
    fs::create_directories(dir_);
    if (Encrypted()) opts_.keyring = std::move(NewKeyringOfKey(std::string(32, '\x42'), "test-key")).value();
    if (OnS3()) {
      const char* endpoint = std::getenv("S3_ENDPOINT");
      if (!endpoint || !*endpoint) GTEST_SKIP() << "S3_ENDPOINT not set: no S3 endpoint to test against";
      s3_.endpoint = endpoint;
      s3_.bucket = "strata-unit";
      s3_.prefix = "repo-" + RandomHex(6) + "/";
      s3_.path_style = true;
      s3_.credentials = {std::getenv("AWS_ACCESS_KEY_ID"), std::getenv("AWS_SECRET_ACCESS_KEY"), ""};
      ASSERT_TRUE(storage::CreateS3Bucket(s3_).ok());
    }
    Reopen();
  }
  void TearDown() override {
    repo_.reset();
    fs::remove_all(dir_);
  }
  void Reopen(storage::ObjectStore* via = nullptr) {
    repo_.reset();
    std::unique_ptr<storage::ObjectStore> store;
    if (via) {
      store = storage::NewBorrowedStore(via);
    } else {
      store = DriverStore();
    }
    auto r = Repository::Open(std::move(store), opts_);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    repo_ = std::move(*r);
  }
  // A second handle on the repository's objects, through the driver under test.
  std::unique_ptr<storage::ObjectStore> DriverStore() {
    if (OnS3()) return std::move(storage::OpenS3Store(s3_)).value();
    return std::move(storage::OpenPosixStore(dir_ / "repo")).value();
  }
  fs::path dir_;
  storage::S3Config s3_;
  RepoOptions opts_{.chunk_size = 512, .pack_target_bytes = 64 << 10, .batch_bytes = 16 << 10};
  std::unique_ptr<Repository> repo_;
};

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

}  // namespace
}  // namespace strata::repo

namespace strata::repo {
namespace {

TEST_P(RepoTest, ChangeLogSegmentsByTime) {
  ASSERT_TRUE(repo_->AppendLogSegment("db-A", 100, 200, "one").ok());
  ASSERT_TRUE(repo_->AppendLogSegment("db-A", 201, 300, "two").ok());
  auto third = repo_->AppendLogSegment("db-A", 301, 400, std::string(100000, 'z'));
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->seq, 3u);
  EXPECT_LT(third->stored_bytes, 1000u) << "segments are compressed";
  ASSERT_TRUE(repo_->AppendLogSegment("db-B", -50, 50, "other stream").ok());
  Reopen();  // sequence numbers continue after a restart
  auto fourth = repo_->AppendLogSegment("db-A", 401, 500, "four");
  ASSERT_TRUE(fourth.ok());
  EXPECT_EQ(fourth->seq, 4u);
  auto hit = repo_->ListLogSegments("db-A", 250, 310);
  ASSERT_TRUE(hit.ok());
  ASSERT_EQ(hit->size(), 2u);
  EXPECT_EQ(*repo_->ReadLogSegment((*hit)[0]), "two");
  auto neg = repo_->ListLogSegments("db-B", -100, 0);
  ASSERT_EQ(neg->size(), 1u);
  EXPECT_EQ((*neg)[0].first_time_us, -50);
  EXPECT_EQ(*repo_->DeleteLogSegmentsBefore("db-A", 301), 2u);
  EXPECT_EQ(repo_->ListLogSegments("db-A", INT64_MIN, INT64_MAX)->size(), 2u);
  EXPECT_TRUE(repo_->AppendLogSegment("db-A", 10, 5, "").status().Is(errors::kInvalidParameterValue));
  // A flipped byte in a segment is found.
  auto store = DriverStore();
  auto objs = *store->List("log/db-B/");
  std::string bad = *store->Get(objs[0].key);
  bad[10] ^= 1;
  ASSERT_TRUE(store->Put(objs[0].key, bad).ok());
  EXPECT_FALSE(repo_->Verify(false)->ok());
  EXPECT_TRUE(repo_->ReadLogSegment((*neg)[0]).status().Is(errors::kCorruption));
}

// A live segment arrives in pieces (record headers, WAL chunks read in
// place): large ones are compressed where they lie, runs of small ones
// gathered, in frames on two threads. A reader gets the payload whole.
TEST_P(RepoTest, ALargeSegmentInPiecesReadsBackWhole) {
  std::mt19937_64 rng(7);
  auto text = [&](size_t n) {  // compressible, not trivially
    std::string out(n, '\0');
    for (auto& c : out) c = static_cast<char>('a' + rng() % 8);
    return out;
  };
  std::vector<std::string> owned = {text(24), text(4 * 1048576 + 16), text(24), text(100000), text(24),
                                    text(3 * 1048576), text(7)};
  for (int i = 0; i < 3000; ++i) owned.push_back(text(700));  // many small: gathered runs
  owned.push_back(text(5 * 1048576 + 3));
  std::vector<std::string_view> pieces(owned.begin(), owned.end());
  std::string whole;
  for (const auto& p : owned) whole += p;
  auto seg = repo_->AppendLogSegment("db-A", 1, 2, std::span<const std::string_view>(pieces));
  ASSERT_TRUE(seg.ok()) << seg.status().ToString();
  EXPECT_LT(seg->stored_bytes, whole.size() / 2);
  auto back = repo_->ReadLogSegment(*seg);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == whole) << "sizes " << back->size() << " and " << whole.size();
  // Small payloads in pieces are one frame, as before.
  std::vector<std::string_view> few = {"ab", "", "cde"};
  auto small = repo_->AppendLogSegment("db-A", 3, 4, std::span<const std::string_view>(few));
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(*repo_->ReadLogSegment(*small), "abcde");
  auto report = repo_->Verify(false);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok());
}

// The stream's payloads as a reader sees them, in order.
std::string ReadWholeLog(Repository& repo, const std::string& stream) {
  std::string all;
  auto segs = repo.ListLogSegments(stream, INT64_MIN, INT64_MAX);
  EXPECT_TRUE(segs.ok());
  for (const auto& s : *segs) all += *repo.ReadLogSegment(s);
  return all;
}

TEST_P(RepoTest, CompactionMergesSmallSegmentsAndReadersSeeTheSameLog) {
  std::string expected;
  std::vector<LogSegment> appended;
  auto append = [&](int64_t t, const std::string& payload) {
    auto seg = repo_->AppendLogSegment("db-A", t, t + 5, payload);
    ASSERT_TRUE(seg.ok());
    appended.push_back(*seg);
    expected += payload;
  };
  for (int i = 0; i < 6; ++i) append(100 + 10 * i, "small-" + std::to_string(i) + ";");
  std::mt19937_64 rng(77);
  std::string noise(4096, '\0');
  for (auto& c : noise) c = static_cast<char>(rng());
  append(200, noise);  // does not compress: stored large, so a group ends here
  for (int i = 0; i < 5; ++i) append(300 + 10 * i, "later-" + std::to_string(i) + ";");
  append(1000, "newest;");  // ends after `before`: left alone
  LogCompactionOptions opts{.before_us = 900, .small_stored_bytes = 1500, .target_stored_bytes = 1u << 20};
  auto stats = repo_->CompactLog("db-A", opts);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->segments_merged, 11u);
  EXPECT_EQ(stats->segments_written, 2u);
  EXPECT_LT(stats->bytes_after, stats->bytes_before);

  auto segs = repo_->ListLogSegments("db-A", INT64_MIN, INT64_MAX);
  ASSERT_TRUE(segs.ok());
  ASSERT_EQ(segs->size(), 4u);
  EXPECT_EQ((*segs)[0].seq, 1u);
  EXPECT_EQ((*segs)[0].LastSeq(), 6u);
  EXPECT_EQ((*segs)[0].first_time_us, 100);
  EXPECT_EQ((*segs)[0].last_time_us, 155);
  EXPECT_EQ((*segs)[1].seq, 7u);
  EXPECT_EQ((*segs)[2].seq, 8u);
  EXPECT_EQ((*segs)[2].LastSeq(), 12u);
  EXPECT_EQ(ReadWholeLog(*repo_, "db-A"), expected);
  // A time query finds the merged segment that holds the time.
  auto hit = repo_->ListLogSegments("db-A", 125, 126);
  ASSERT_EQ(hit->size(), 1u);
  EXPECT_EQ((*hit)[0].LastSeq(), 6u);
  // A reader that listed before the merge still reads its segment's records.
  auto old = repo_->ReadLogSegment(appended[2]);
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_NE(old->find("small-2;"), std::string::npos);
  // Numbering goes on after the merged ones, also after a restart.
  Reopen();
  auto next = repo_->AppendLogSegment("db-A", 2000, 2001, "after;");
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->seq, 14u);
  expected += "after;";
  EXPECT_EQ(ReadWholeLog(*repo_, "db-A"), expected);
  // A second pass merges what is still small (the merged runs with the rest).
  opts.before_us = 5000;
  opts.small_stored_bytes = 1u << 20;
  ASSERT_TRUE(repo_->CompactLog("db-A", opts).ok());
  EXPECT_EQ(ReadWholeLog(*repo_, "db-A"), expected);
  EXPECT_EQ(repo_->ListLogSegments("db-A", INT64_MIN, INT64_MAX)->size(), 1u);
  auto report = repo_->Verify(false);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok());
  // A merged segment spans at most max_span_us, so retention can drop it.
  ASSERT_TRUE(repo_->AppendLogSegment("db-A", 9000, 9001, "x;").ok());
  ASSERT_TRUE(repo_->AppendLogSegment("db-A", 9100, 9101, "y;").ok());
  opts.before_us = 10000;
  opts.max_span_us = 5000;
  ASSERT_TRUE(repo_->CompactLog("db-A", opts).ok());
  EXPECT_EQ(repo_->ListLogSegments("db-A", INT64_MIN, INT64_MAX)->size(), 2u) << "the old merged one and x+y";
  EXPECT_EQ(ReadWholeLog(*repo_, "db-A"), expected + "x;y;");
  EXPECT_EQ(*repo_->DeleteLogSegmentsBefore("db-A", 9050), 1u);
  EXPECT_EQ(ReadWholeLog(*repo_, "db-A"), "x;y;");
  // Retention drops merged segments whole.
  EXPECT_EQ(*repo_->DeleteLogSegmentsBefore("db-A", 9200), 1u);
  EXPECT_TRUE(repo_->ListLogSegments("db-A", INT64_MIN, INT64_MAX)->empty());
  EXPECT_NE(DriverStore()->Get("config")->find(Encrypted() ? R"("format_version": 8)" : R"("format_version": 7)"),
            std::string::npos);
}

// A drained backlog's large live segments (level 1) are recompressed in
// pairs when asked to; a merged segment is not taken again for its size.
TEST_P(RepoTest, CompactionRecompressesLargeLiveSegmentsInPairs) {
  std::mt19937_64 rng(5);
  std::string expected;
  for (int i = 0; i < 5; ++i) {
    std::string text(50000, '\0');
    for (auto& c : text) c = static_cast<char>('a' + rng() % 8);
    ASSERT_TRUE(repo_->AppendLogSegment("db-A", 100 * i, 100 * i + 50, text).ok());
    expected += text;
  }
  LogCompactionOptions opts{.before_us = 10000, .small_stored_bytes = 1500, .target_stored_bytes = 1u << 20,
                            .target_raw_bytes = 60000};
  auto untouched = repo_->CompactLog("db-A", opts);
  ASSERT_TRUE(untouched.ok());
  EXPECT_EQ(untouched->segments_written, 0u) << "large segments stay unless asked";
  opts.merge_large = true;
  auto stats = repo_->CompactLog("db-A", opts);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->segments_merged, 4u);
  EXPECT_EQ(stats->segments_written, 2u);
  EXPECT_GT(stats->bytes_after, 0u);  // (smaller on WAL; this random text is not)
  auto segs = repo_->ListLogSegments("db-A", INT64_MIN, INT64_MAX);
  ASSERT_EQ(segs->size(), 3u) << "two pairs and the fifth alone";
  EXPECT_EQ((*segs)[0].LastSeq(), 2u);
  EXPECT_EQ((*segs)[1].LastSeq(), 4u);
  EXPECT_EQ((*segs)[2].seq, 5u);
  EXPECT_EQ(ReadWholeLog(*repo_, "db-A"), expected);
  auto again = repo_->CompactLog("db-A", opts);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->segments_written, 0u) << "merged segments are not merged again for their size";
}

// Segments whose frames are large and already small (a busy writer's log of
// similar rows) are merged by copying their frames; others are compressed
// again. Two identical payloads tell them apart: compressed together, the
// second costs next to nothing.
TEST_P(RepoTest, CompactionCopiesTheFramesOfWellCompressedSegments) {
  std::mt19937 rng(3);
  std::string rows;
  for (int i = 0; rows.size() < 100000; ++i) rows += fmt::format("row {:06d} {:08x} {}\n", i, rng(), std::string(200, 'x'));
  auto merged_ratio = [&](const std::string& stream, uint64_t keep_frames_ratio) {
    for (int i = 0; i < 2; ++i) EXPECT_TRUE(repo_->AppendLogSegment(stream, 10 * i, 10 * i + 5, rows).ok());
    LogCompactionOptions opts{.before_us = 1000, .small_stored_bytes = 1u << 20, .keep_frames_raw_bytes = 20000,
                              .keep_frames_ratio = keep_frames_ratio};
    auto stats = repo_->CompactLog(stream, opts);
    EXPECT_TRUE(stats.ok()) << stats.status().ToString();
    EXPECT_EQ(stats->segments_written, 1u);
    EXPECT_EQ(ReadWholeLog(*repo_, stream), rows + rows);
    return static_cast<double>(stats->bytes_after) / static_cast<double>(stats->bytes_before);
  };
  EXPECT_GT(merged_ratio("db-A", 8), 0.9) << "frames copied";
  EXPECT_LT(merged_ratio("db-B", 100000), 0.7) << "compressed again: the ratio asked for is not reached";

  // As stratad runs it (merge_large), with a small member among them: the
  // large ones' frames are copied, the small one is compressed on its own.
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(repo_->AppendLogSegment("db-C", 10 * i, 10 * i + 5, rows).ok());
  ASSERT_TRUE(repo_->AppendLogSegment("db-C", 30, 35, "tiny;").ok());
  LogCompactionOptions stratad_like{.before_us = 1000, .small_stored_bytes = 1u << 20,
                                    .merge_large = true, .keep_frames_raw_bytes = 20000};
  auto mixed = repo_->CompactLog("db-C", stratad_like);
  ASSERT_TRUE(mixed.ok()) << mixed.status().ToString();
  EXPECT_EQ(mixed->segments_merged, 3u);
  EXPECT_GT(static_cast<double>(mixed->bytes_after), 0.9 * static_cast<double>(mixed->bytes_before));
  EXPECT_EQ(ReadWholeLog(*repo_, "db-C"), rows + rows + "tiny;");
  // ... and merged again with the next: frames of frames.
  ASSERT_TRUE(repo_->AppendLogSegment("db-C", 40, 45, rows).ok());
  stratad_like.small_stored_bytes = 1u << 30;
  auto again = repo_->CompactLog("db-C", stratad_like);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->segments_written, 1u);
  EXPECT_EQ(ReadWholeLog(*repo_, "db-C"), rows + rows + "tiny;" + rows);
  auto report = repo_->Verify(false);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok());
}

// A member whose frames pass the checksum but do not decode (a bug that
// sealed them so) fails the pass: its neighbour is not merged with it and
// deleted, and stays readable.
TEST_P(RepoTest, CompactionLeavesFramesThatDoNotDecodeWhereTheyAre) {
  if (Encrypted()) GTEST_SKIP() << "a sealed object cannot be forged here";
  std::mt19937 rng(4);
  std::string rows;
  for (int i = 0; rows.size() < 100000; ++i) rows += fmt::format("row {:06d} {:08x} {}\n", i, rng(), std::string(200, 'x'));
  ASSERT_TRUE(repo_->AppendLogSegment("db-A", 10, 15, rows).ok());
  ASSERT_TRUE(repo_->AppendLogSegment("db-A", 20, 25, rows).ok());
  auto store = DriverStore();
  auto objs = *store->List("log/db-A/");
  ASSERT_EQ(objs.size(), 2u);
  std::string second_bytes = *store->Get(objs[1].key);
  auto second = LogSegmentFramesOf(second_bytes);
  ASSERT_TRUE(second.ok());
  std::string forged;
  std::string_view half = second->frames.substr(0, second->frames.size() / 2);
  ASSERT_TRUE(EncodeLogFramesTo(second->raw_bytes, {&half, 1}, [&](std::string_view p) {
                forged += p;
                return Status::Ok();
              }).ok());
  ASSERT_TRUE(store->Put(objs[1].key, forged).ok());
  LogCompactionOptions opts{.before_us = 1000, .small_stored_bytes = 1u << 20, .keep_frames_raw_bytes = 20000};
  auto st = repo_->CompactLog("db-A", opts);
  EXPECT_TRUE(st.status().Is(errors::kCorruption)) << st.status().ToString();
  auto segs = repo_->ListLogSegments("db-A", INT64_MIN, INT64_MAX);
  ASSERT_EQ(segs->size(), 2u) << "nothing merged";
  EXPECT_EQ(*repo_->ReadLogSegment((*segs)[0]), rows);
}

// Two segments under one seq (a put that failed after storing, then the
// retry with more records, as a Strata before this one could leave) both
// stay visible, and compaction loses neither; a failed put uses up its seq;
// a bounded pass says there is more.
TEST_P(RepoTest, CompactionKeepsTwoSegmentsOfOneSeqAndWorksInBoundedPasses) {
  ASSERT_TRUE(repo_->AppendLogSegment("db-A", 10, 15, "one;").ok());
  auto two = repo_->AppendLogSegment("db-A", 20, 25, "two;");
  ASSERT_TRUE(two.ok());
  // The retry's copy: seq 2 again, a later last time, more records.
  auto store = DriverStore();
  auto scratch = repo_->AppendLogSegment("db-Z", 20, 35, "two;three;");
  ASSERT_TRUE(scratch.ok());
  auto objs = *store->List("log/db-Z/");
  ASSERT_EQ(objs.size(), 1u);
  std::string copy_key = objs[0].key;
  copy_key.replace(copy_key.find("db-Z"), 4, "db-A");
  copy_key.replace(copy_key.find("/00000000000000000001-") + 1, 20, "00000000000000000002");
  if (Encrypted()) GTEST_SKIP() << "a sealed object is bound to its key: the copy cannot be forged here";
  ASSERT_TRUE(store->Put(copy_key, *store->Get(objs[0].key)).ok());
  Reopen();
  EXPECT_EQ(repo_->ListLogSegments("db-A", INT64_MIN, INT64_MAX)->size(), 3u);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(repo_->AppendLogSegment("db-A", 40 + 10 * i, 45 + 10 * i, "more" + std::to_string(i) + ";").ok());
  }
  LogCompactionOptions opts{.before_us = 1000, .small_stored_bytes = 1u << 20, .target_stored_bytes = 150,
                            .max_segments_written = 1};
  int passes = 0;
  for (;; ++passes) {
    auto st = repo_->CompactLog("db-A", opts);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    if (!st->more) break;
    ASSERT_LT(passes, 20);
  }
  EXPECT_GE(passes, 1) << "a bounded pass said there was more";
  std::string all = ReadWholeLog(*repo_, "db-A");
  for (const char* rec : {"one;", "two;", "three;", "more0;", "more3;"}) {
    EXPECT_NE(all.find(rec), std::string::npos) << rec << " in " << all;
  }
}

TEST_P(RepoTest, AFailedLogPutUsesUpItsSeq) {
  if (OnS3()) GTEST_SKIP() << "the memory store stands in for every driver here";
  auto mem = storage::NewMemoryStore();
  storage::FaultInjectingStore faulty(mem.get(), {});
  Reopen(&faulty);
  ASSERT_TRUE(repo_->AppendLogSegment("db-A", 10, 15, "one;").ok());
  faulty.Rearm({.fail_after_ops = 0, .crash = false});
  EXPECT_FALSE(repo_->AppendLogSegment("db-A", 20, 25, "two;").ok());
  faulty.Rearm({});
  auto retry = repo_->AppendLogSegment("db-A", 20, 35, "two;three;");
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(retry->seq, 3u);
}

TEST_P(RepoTest, ACrashAnywhereInCompactionLosesAndRepeatsNoRecord) {
  if (OnS3()) GTEST_SKIP() << "the crash points are the same on every driver; the memory store runs them fast";
  auto mem = storage::NewMemoryStore();
  std::string expected;
  for (int64_t n = 0;; ++n) {
    mem = storage::NewMemoryStore();
    Reopen(mem.get());
    expected.clear();
    for (int i = 0; i < 12; ++i) {
      std::string payload = "rec-" + std::to_string(i) + ";";
      ASSERT_TRUE(repo_->AppendLogSegment("db-A", 10 * i, 10 * i + 5, payload).ok());
      expected += payload;
    }
    storage::FaultInjectingStore faulty(mem.get(), {});
    Reopen(&faulty);
    faulty.Rearm({.fail_after_ops = n});
    LogCompactionOptions opts{.before_us = 1000, .small_stored_bytes = 1u << 20, .target_stored_bytes = 200};
    bool finished = repo_->CompactLog("db-A", opts).ok();
    Reopen(mem.get());
    EXPECT_EQ(ReadWholeLog(*repo_, "db-A"), expected) << "crash after " << n << " ops";
    auto next = repo_->AppendLogSegment("db-A", 500, 505, "next;");
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(next->seq, 13u);
    auto again = repo_->CompactLog("db-A", opts);
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(ReadWholeLog(*repo_, "db-A"), expected + "next;");
    auto stored = mem->List("log/db-A/");
    auto visible = repo_->ListLogSegments("db-A", INT64_MIN, INT64_MAX);
    EXPECT_EQ(stored->size(), visible->size()) << "leftovers of the crash are deleted by the next pass";
    auto report = repo_->Verify(false);
    ASSERT_TRUE(report.ok());
    EXPECT_TRUE(report->ok());
    if (finished) break;
    ASSERT_LT(n, 200) << "compaction never finished";
  }
}

INSTANTIATE_TEST_SUITE_P(Drivers, RepoTest,
                         ::testing::Values("posix", "s3", "posix-encrypted", "s3-encrypted"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace strata::repo

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

// A repository written before frames: format-1 index entries, each chunk
// its own blob. It still restores and verifies.
TEST(RepoFormat, AFormatOneIndexOfSingleChunkBlobsStillRestores) {
  fs::path dir = fs::temp_directory_path() / ("strata-repo-v1-" + RandomHex(6));
  RepoOptions opts{.chunk_size = 512};
  ASSERT_TRUE(Repository::Open(std::move(storage::OpenPosixStore(dir)).value(), opts).ok());
  std::string page0(512, 'a'), page1 = MixedData(1, 512, 3);
  auto store = std::move(storage::OpenPosixStore(dir)).value();
  ASSERT_TRUE(store->Put("config", R"({"format_version": 1, "chunk_size": 512, "hash": "sha256"})").ok());
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
  Hash sum = Sha256(index);
  index.append(reinterpret_cast<const char*>(sum.data()), 32);
  ASSERT_TRUE(store->Put("packs/0123456789abcdef0123456789abcdef", page0 + page1).ok());
  ASSERT_TRUE(store->Put("index/0123456789abcdef0123456789abcdef", index).ok());
  Manifest m{"old", 512, {}, {ManifestFile{"data.db", 1024, 0600, {Sha256(page1), Sha256(page0)}}}};
  ASSERT_TRUE(store->Put("snapshots/old", EncodeManifest(m)).ok());

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
  fs::path dir = fs::temp_directory_path() / ("strata-repo-v3-" + RandomHex(6));
  RepoOptions opts{.chunk_size = 512};
  ASSERT_TRUE(Repository::Open(std::move(storage::OpenPosixStore(dir)).value(), opts).ok());
  std::string page0(512, 'b'), page1 = MixedData(1, 512, 4);
  auto store = std::move(storage::OpenPosixStore(dir)).value();
  ASSERT_TRUE(store->Put("config", R"({"format_version": 3, "chunk_size": 512, "hash": "sha256"})").ok());
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
  Hash sum = Sha256(index);
  index.append(reinterpret_cast<const char*>(sum.data()), 32);
  ASSERT_TRUE(store->Put("packs/00000000000000000000000000000003", page0 + page1).ok());
  ASSERT_TRUE(store->Put("index/00000000000000000000000000000003", index).ok());
  Manifest m{"old", 512, {}, {ManifestFile{"data.db", 1024, 0600, {Sha256(page1), Sha256(page0)}}}};
  ASSERT_TRUE(store->Put("snapshots/old", EncodeManifest(m)).ok());

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
