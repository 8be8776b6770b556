// What repo/'s unit tests share: files served from memory, test data, and
// the RepoTest fixture that runs a test on every storage driver, plain and
// encrypted. Named, not anonymous: the TEST_Ps of RepoTest live in several
// files of one test binary and must share one fixture class.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>

#include "common/ids.h"
#include "repo/repo.h"
#include "storage/storage.h"

namespace strata::repo {

namespace fs = std::filesystem;

// The time `us` microseconds after the epoch: log segments' times in tests.
inline TimePoint AtMicros(int64_t us) { return TimePoint(std::chrono::microseconds(us)); }

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
inline std::string MixedData(size_t pages, uint32_t page, uint32_t seed) {
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

inline std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Random bytes, the same for the same seed.
inline std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

// Small chunks, packs and batches: a few KiB of data make many of each.
inline const RepoOptions kSmallRepoOptions{.chunk_size = 512, .pack_target_bytes = 64 << 10, .batch_bytes = 16 << 10};

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
  RepoOptions opts_ = kSmallRepoOptions;
  std::unique_ptr<Repository> repo_;
};

}  // namespace strata::repo
