#include "storage/storage.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>

#include "common/ids.h"

namespace strata::storage {
namespace {

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "posix") {
      dir_ = std::filesystem::temp_directory_path() / ("storage_test_" + RandomHex(6));
      auto s = OpenPosixStore(dir_);
      ASSERT_TRUE(s.ok());
      store_ = std::move(*s);
    } else if (GetParam() == "s3") {
      // The S3 tier runs against a real endpoint (scripts/test starts Ceph RGW
      // with ../shared/tools/ceph-s3 and exports its S3_ENDPOINT and keys).
      const char* endpoint = std::getenv("S3_ENDPOINT");
      if (!endpoint || !*endpoint) GTEST_SKIP() << "S3_ENDPOINT not set: no S3 endpoint to test against";
      S3Config cfg;
      cfg.endpoint = endpoint;
      cfg.bucket = "strata-unit";
      cfg.prefix = "t-" + RandomHex(6) + "/";
      cfg.path_style = true;
      cfg.credentials = {std::getenv("AWS_ACCESS_KEY_ID") ? std::getenv("AWS_ACCESS_KEY_ID") : "",
                         std::getenv("AWS_SECRET_ACCESS_KEY") ? std::getenv("AWS_SECRET_ACCESS_KEY") : "", ""};
      ASSERT_TRUE(CreateS3Bucket(cfg).ok());
      auto s = OpenS3Store(cfg);
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      store_ = std::move(*s);
    } else {
      store_ = NewMemoryStore();
    }
  }
  void TearDown() override {
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
  std::unique_ptr<ObjectStore> store_;
};

TEST_P(StoreTest, PutGetRangeListDelete) {
  ASSERT_TRUE(store_->Put("packs/b", "hello world").ok());
  ASSERT_TRUE(store_->Put("packs/a", "x").ok());
  ASSERT_TRUE(store_->Put("index/a", "").ok());
  EXPECT_EQ(*store_->Get("packs/b"), "hello world");
  EXPECT_EQ(*store_->GetRange("packs/b", 6, 5), "world");
  EXPECT_TRUE(store_->GetRange("packs/b", 6, 50).status().Is(errors::kCorruption));
  EXPECT_TRUE(store_->Get("packs/zzz").status().Is(errors::kObjectNotFound));
  auto list = store_->List("packs/");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].key, "packs/a");
  EXPECT_EQ((*list)[1].size, 11u);
  EXPECT_EQ(**store_->Stat("packs/b"), 11u);
  EXPECT_FALSE(store_->Stat("nope")->has_value());
  ASSERT_TRUE(store_->Put("packs/b", "replaced").ok());
  EXPECT_EQ(*store_->Get("packs/b"), "replaced");
  ASSERT_TRUE(store_->Delete("packs/b").ok());
  ASSERT_TRUE(store_->Delete("packs/b").ok());
  EXPECT_EQ(store_->List("packs/")->size(), 1u);
  ASSERT_TRUE(store_->Put("many/1", "1").ok());
  ASSERT_TRUE(store_->Put("many/2 & <3>", "2").ok());
  ASSERT_TRUE(store_->DeleteMany({"many/1", "many/2 & <3>", "many/never-was"}).ok());
  EXPECT_TRUE(store_->List("many/")->empty());
  if (GetParam() == "posix") {
    EXPECT_FALSE(store_->Put("../escape", "x").ok());
  }
}

// Bytes of an object `n` long that differ at every offset.
std::string Pattern(size_t n, uint32_t seed) {
  std::string out(n, '\0');
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<char>(((i + seed) * 2654435761u) >> 13);
  return out;
}

TEST_P(StoreTest, AWriterShowsNothingUntilCommitThenAllOfIt) {
  // Sizes around the posix driver's 1 MiB direct-write steps and 4 KiB
  // alignment: below a step, exactly one, and ragged tails.
  for (size_t size : {size_t{0}, size_t{100}, size_t{1} << 20, (size_t{3} << 20) + 4097, (size_t{5} << 20) - 1}) {
    std::string key = fmt::format("packs/w{}", size);
    std::string bytes = Pattern(size, static_cast<uint32_t>(size));
    auto writer = store_->NewWriter(key);
    ASSERT_TRUE(writer.ok()) << writer.status().ToString();
    // Appended in uneven pieces, as a pack writer does.
    for (size_t at = 0; at < size;) {
      size_t n = std::min<size_t>(size - at, 300000 + at % 7);
      ASSERT_TRUE((*writer)->Append(std::string_view(bytes).substr(at, n)).ok());
      at += n;
    }
    EXPECT_FALSE(store_->Stat(key)->has_value()) << "visible before commit: " << size;
    ASSERT_TRUE((*writer)->Commit().ok()) << size;
    EXPECT_EQ(**store_->Stat(key), size);
    EXPECT_TRUE(*store_->Get(key) == bytes) << size;
    if (size > 10) {
      EXPECT_EQ(*store_->GetRange(key, size - 10, 10), bytes.substr(size - 10));
    }
  }
}

TEST_P(StoreTest, AWriterDroppedUncommittedLeavesNothing) {
  {
    auto writer = store_->NewWriter("packs/dropped");
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Append(Pattern(3 << 20, 1)).ok());
  }
  EXPECT_FALSE(store_->Stat("packs/dropped")->has_value());
  EXPECT_TRUE(store_->List("packs/")->empty());
  if (GetParam() == "posix") {
    size_t files = 0;
    for (auto& e : std::filesystem::recursive_directory_iterator(dir_)) files += e.is_regular_file();
    EXPECT_EQ(files, 0u) << "the temp file is removed";
  }
}

INSTANTIATE_TEST_SUITE_P(Drivers, StoreTest, ::testing::Values("posix", "memory", "s3"));

TEST(S3Store, ListsPastAThousandKeysAndExplainsAMissingBucket) {
  const char* endpoint = std::getenv("S3_ENDPOINT");
  if (!endpoint || !*endpoint) GTEST_SKIP() << "S3_ENDPOINT not set";
  S3Config cfg;
  cfg.endpoint = endpoint;
  cfg.bucket = "strata-unit";
  cfg.prefix = "many-" + RandomHex(6) + "/";
  cfg.path_style = true;
  cfg.credentials = {std::getenv("AWS_ACCESS_KEY_ID"), std::getenv("AWS_SECRET_ACCESS_KEY"), ""};
  ASSERT_TRUE(CreateS3Bucket(cfg).ok());
  auto store = OpenS3Store(cfg);
  ASSERT_TRUE(store.ok());
  for (int i = 0; i < 1100; ++i) ASSERT_TRUE((*store)->Put(fmt::format("k/{:05}", i), "v").ok());
  auto list = (*store)->List("k/");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 1100u) << "ListObjectsV2 continuation tokens are followed";
  // A large object goes up in parts and reads back whole and by range.
  cfg.multipart_threshold = 6 << 20;
  cfg.multipart_part_size = 5 << 20;
  auto parts = OpenS3Store(cfg);
  ASSERT_TRUE(parts.ok());
  std::string big(13 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 2654435761u) >> 13);
  ASSERT_TRUE((*parts)->Put("big", big).ok());
  EXPECT_EQ(**(*parts)->Stat("big"), big.size());
  EXPECT_TRUE(*(*parts)->Get("big") == big);
  EXPECT_EQ(*(*parts)->GetRange("big", (5 << 20) - 3, 6), big.substr((5 << 20) - 3, 6));
  // The same streamed: parts go up as they fill, the object appears at commit.
  auto writer = (*parts)->NewWriter("streamed");
  ASSERT_TRUE(writer.ok());
  for (size_t at = 0; at < big.size(); at += 1 << 20) {
    ASSERT_TRUE((*writer)->Append(std::string_view(big).substr(at, 1 << 20)).ok());
  }
  EXPECT_FALSE((*parts)->Stat("streamed")->has_value());
  ASSERT_TRUE((*writer)->Commit().ok());
  EXPECT_TRUE(*(*parts)->Get("streamed") == big);
  cfg.bucket = "no-such-bucket-" + RandomHex(4);
  auto missing = OpenS3Store(cfg);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("does not exist"), std::string::npos) << missing.status().ToString();
}

TEST(PosixStore, LeavesNoTempFilesAndCleansOldOnes) {
  auto dir = std::filesystem::temp_directory_path() / ("storage_tmp_" + RandomHex(6));
  std::filesystem::create_directories(dir / "packs");
  { FILE* f = fopen((dir / "packs" / "x.abc.strata-tmp").c_str(), "w"); fputs("torn", f); fclose(f); }
  { FILE* f = fopen((dir / "packs" / "z.def.strata-tmp").c_str(), "w"); fputs("in progress", f); fclose(f); }
  std::filesystem::last_write_time(dir / "packs" / "x.abc.strata-tmp",
                                   std::filesystem::file_time_type::clock::now() - std::chrono::hours(1));
  auto s = OpenPosixStore(dir);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(std::filesystem::exists(dir / "packs" / "x.abc.strata-tmp")) << "left by a crash";
  EXPECT_TRUE(std::filesystem::exists(dir / "packs" / "z.def.strata-tmp"))
      << "just written: may be another process's write in progress";
  std::filesystem::remove(dir / "packs" / "z.def.strata-tmp");
  ASSERT_TRUE((*s)->Put("packs/y", "data").ok());
  EXPECT_EQ((*s)->List("")->size(), 1u);
  std::filesystem::remove_all(dir);
}

TEST(FaultInjectingStore, FailsAfterNAndStaysDownOnCrash) {
  auto mem = NewMemoryStore();
  FaultInjectingStore f(mem.get(), {.fail_after_ops = 2, .crash = true, .error = &errors::kNoSpace});
  EXPECT_TRUE(f.Put("a", "1").ok());
  EXPECT_TRUE(f.Put("b", "2").ok());
  EXPECT_TRUE(f.Put("c", "3").Is(errors::kNoSpace));
  EXPECT_FALSE(f.Get("a").ok());
  EXPECT_FALSE(mem->Stat("c")->has_value()) << "a failed put leaves nothing";
  f.Rearm({.fail_after_ops = 0, .crash = false, .torn_bytes = 2});
  EXPECT_FALSE(f.Put("d", "12345").ok());
  EXPECT_EQ(*mem->Get("d"), "12") << "torn write";
  EXPECT_TRUE(f.Put("e", "x").ok()) << "a transient fault passes";
  // A writer's open, appends and commit are operations too; a failed commit tears.
  f.Rearm({.fail_after_ops = 3, .crash = false, .torn_bytes = 3});
  auto w = f.NewWriter("g");
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE((*w)->Append("ab").ok());
  EXPECT_TRUE((*w)->Append("cd").ok());
  EXPECT_FALSE((*w)->Commit().ok());
  EXPECT_EQ(*mem->Get("g"), "abc") << "torn commit";
}

}  // namespace
}  // namespace strata::storage
