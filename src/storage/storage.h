// storage/: byte stores under the repository. One interface for immutable
// objects named by keys ("packs/ab12...", "snapshots/..."): whole puts that
// are atomic and durable, whole or ranged gets, listing by prefix, deletes.
// Nothing here relies on rename, append or directories being visible to the
// caller, so an object store (S3) fits the same interface.
//
// Contract for every implementation:
// - Put(key, bytes) is atomic and durable: after it returns OK the object is
//   complete and survives a crash; a failed or interrupted Put leaves either
//   the old state or nothing under the key, never a partial object.
// - Get of a missing key returns kObjectNotFound; Delete of a missing key is OK.
// - List returns keys in ascending order with their sizes.
// Thread safety: all methods may be called concurrently from any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/sigv4.h"
#include "common/status.h"

namespace strata::storage {

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;
};

// One object written in pieces (a pack of tens of MiB, the manifest of a
// large database), so that neither the writer nor the store holds it whole.
// The object appears under its key only when Commit() returns OK, complete
// and durable exactly as after Put. A writer destroyed uncommitted, or after
// an Append or Commit failed, leaves nothing under the key (a posix temp file
// is removed, an S3 multipart upload aborted).
// Thread safety: a writer is used by one thread at a time.
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;
  virtual Status Append(std::string_view bytes) = 0;
  virtual Status Commit() = 0;
};

class ObjectStore {
 public:
  virtual ~ObjectStore() = default;
  virtual Status Put(const std::string& key, std::string_view bytes) = 0;
  // A writer for `key` (see ObjectWriter). The default holds the bytes and
  // Puts them on Commit: right for the memory store; drivers that can
  // stream (posix, S3) do.
  virtual Result<std::unique_ptr<ObjectWriter>> NewWriter(const std::string& key);
  virtual Result<std::string> Get(const std::string& key) = 0;
  virtual Result<std::string> GetRange(const std::string& key, uint64_t offset, uint64_t length) = 0;
  // GetRange into `out`, whose buffer is reused: a restore reads a GiB in
  // ranges of MiBs, and a fresh buffer for each costs page faults. The
  // default calls GetRange.
  virtual Status GetRangeInto(const std::string& key, uint64_t offset, uint64_t length, std::string& out) {
    ASSIGN_OR_RETURN(out, GetRange(key, offset, length));
    return Status::Ok();
  }
  virtual Result<std::vector<ObjectInfo>> List(const std::string& prefix) = 0;
  virtual Status Delete(const std::string& key) = 0;
  // Deletes many keys (missing ones are fine); drivers with a batch call
  // (S3 DeleteObjects) use it. Not atomic: on error some may be gone.
  virtual Status DeleteMany(const std::vector<std::string>& keys) {
    for (const auto& k : keys) RETURN_IF_ERROR(Delete(k));
    return Status::Ok();
  }
  // Size of the object, or nullopt if absent.
  virtual Result<std::optional<uint64_t>> Stat(const std::string& key) = 0;
  // A short description for logs and errors ("file:///data/repo").
  virtual std::string Describe() const = 0;
};

// The posix driver: objects are files under `root` (created if missing). Put
// writes a temp file, fsyncs it, renames it into place and fsyncs the
// directory; temp files are invisible to List and removed at open.
Result<std::unique_ptr<ObjectStore>> OpenPosixStore(const std::filesystem::path& root);

// The S3 driver: objects under BUCKET/PREFIX of an S3-compatible store.
struct S3Config {
  std::string endpoint;  // http(s)://host[:port]
  std::string bucket;
  std::string prefix;  // "" or ending in '/'
  std::string region = "us-east-1";
  bool path_style = true;  // BUCKET in the path (RGW, MinIO); false: BUCKET.host
  sigv4::Credentials credentials;
  // Attempts per request before the operation fails; with the backoff below
  // (100 ms doubling, capped at 5 s, full jitter) 10 attempts ride out about
  // 10-20 s of throttling or a restarting endpoint.
  int max_attempts = 10;
  // A transfer slower than 1 KiB/s for this long is cut and retried.
  int stall_timeout_seconds = 30;
  // Objects larger than this go up by multipart upload, in parts of this size
  // (S3's minimum part is 5 MiB).
  size_t multipart_threshold = 64 << 20;
  size_t multipart_part_size = 16 << 20;
};
// "s3://BUCKET[/PREFIX]" -> bucket and prefix; the rest stays default.
Result<S3Config> ParseS3Url(std::string_view url);
// Creates the bucket (already existing is fine). For tests and set-up.
Status CreateS3Bucket(const S3Config& config);
// Checks that the bucket exists and answers; a clear error if not.
Result<std::unique_ptr<ObjectStore>> OpenS3Store(const S3Config& config);

// DATA/repository records which store stratad uses (never secrets), so that
// tools such as `strata repo verify` open the same one; S3 credentials come
// from the usual AWS chain of the tool's own environment.
Status SaveRepoLocation(const std::filesystem::path& data_dir, const std::optional<S3Config>& s3);
Result<std::unique_ptr<ObjectStore>> OpenRepoOfDataDir(const std::filesystem::path& data_dir);

// An in-memory store, for tests.
std::unique_ptr<ObjectStore> NewMemoryStore();
// `inner`, through a store that does not own it: a test keeps the objects
// while it reopens repositories over them. `inner` must outlive it.
std::unique_ptr<ObjectStore> NewBorrowedStore(ObjectStore* inner);

// Test hooks: a store wrapper that fails or "crashes" on command.
struct FaultPlan {
  // Operations (Put/Get/GetRange/List/Delete/Stat, and a writer's open,
  // appends and commit) that succeed before the
  // wrapper starts failing; -1: never.
  int64_t fail_after_ops = -1;
  // After the first failure: true = every later op fails too (a crash: the
  // process is gone); false = only that one op fails (a transient error).
  bool crash = true;
  // The error the failing op returns (kIoError or kNoSpace).
  const ErrorCode* error = &errors::kIoError;
  // A failing Put writes this many bytes of the object under its key first
  // (a torn write, as a store without atomic puts would leave). 0: none.
  size_t torn_bytes = 0;
};

class FaultInjectingStore final : public ObjectStore {
 public:
  FaultInjectingStore(ObjectStore* inner, FaultPlan plan) : inner_(inner), plan_(plan) {}
  Status Put(const std::string& key, std::string_view bytes) override;
  // NewWriter, each Append and Commit count as operations; a failing Commit
  // tears as a failing Put does.
  Result<std::unique_ptr<ObjectWriter>> NewWriter(const std::string& key) override;
  Result<std::string> Get(const std::string& key) override;
  Result<std::string> GetRange(const std::string& key, uint64_t offset, uint64_t length) override;
  Status GetRangeInto(const std::string& key, uint64_t offset, uint64_t length, std::string& out) override;
  Result<std::vector<ObjectInfo>> List(const std::string& prefix) override;
  Status Delete(const std::string& key) override;
  Result<std::optional<uint64_t>> Stat(const std::string& key) override;
  std::string Describe() const override { return "fault(" + inner_->Describe() + ")"; }
  int64_t ops() const { return ops_; }
  void Rearm(FaultPlan plan);

 private:
  // OK if the op may proceed; the injected error otherwise.
  Status Tick();
  ObjectStore* inner_;
  std::mutex mu_;
  FaultPlan plan_;
  int64_t ops_ = 0;
  bool failed_ = false;
};

}  // namespace strata::storage
