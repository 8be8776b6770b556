#include "storage/storage.h"

namespace strata::storage {
namespace {

// Holds what is appended and Puts it whole on Commit.
class BufferedWriter final : public ObjectWriter {
 public:
  BufferedWriter(ObjectStore* store, std::string key) : store_(store), key_(std::move(key)) {}
  Status Append(std::string_view bytes) override {
    bytes_ += bytes;
    return Status::Ok();
  }
  Status Commit() override { return store_->Put(key_, bytes_); }

 private:
  ObjectStore* store_;
  std::string key_;
  std::string bytes_;
};

class BorrowedStore final : public ObjectStore {
 public:
  explicit BorrowedStore(ObjectStore* inner) : inner_(inner) {}
  Status Put(const std::string& k, std::string_view b) override { return inner_->Put(k, b); }
  Result<std::unique_ptr<ObjectWriter>> NewWriter(const std::string& k) override { return inner_->NewWriter(k); }
  Result<std::string> Get(const std::string& k) override { return inner_->Get(k); }
  Result<std::string> GetRange(const std::string& k, uint64_t o, uint64_t n) override {
    return inner_->GetRange(k, o, n);
  }
  Status GetRangeInto(const std::string& k, uint64_t o, uint64_t n, std::string& out) override {
    return inner_->GetRangeInto(k, o, n, out);
  }
  Result<std::vector<ObjectInfo>> List(const std::string& p) override { return inner_->List(p); }
  Status Delete(const std::string& k) override { return inner_->Delete(k); }
  Status DeleteMany(const std::vector<std::string>& keys) override { return inner_->DeleteMany(keys); }
  Result<std::optional<uint64_t>> Stat(const std::string& k) override { return inner_->Stat(k); }
  std::string Describe() const override { return inner_->Describe(); }

 private:
  ObjectStore* inner_;
};

}  // namespace

std::unique_ptr<ObjectStore> NewBorrowedStore(ObjectStore* inner) { return std::make_unique<BorrowedStore>(inner); }

Result<std::unique_ptr<ObjectWriter>> ObjectStore::NewWriter(const std::string& key) {
  return std::unique_ptr<ObjectWriter>(std::make_unique<BufferedWriter>(this, key));
}

}  // namespace strata::storage
