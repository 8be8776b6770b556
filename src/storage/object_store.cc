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

}  // namespace

Result<std::unique_ptr<ObjectWriter>> ObjectStore::NewWriter(const std::string& key) {
  return std::unique_ptr<ObjectWriter>(std::make_unique<BufferedWriter>(this, key));
}

}  // namespace strata::storage
