#include <functional>
#include <map>
#include <mutex>

#include "storage/storage.h"

namespace strata::storage {
namespace {

class MemoryStore final : public ObjectStore {
 public:
  Status Put(const std::string& key, std::string_view bytes) override {
    std::lock_guard lock(mu_);
    objects_[key] = std::string(bytes);
    return Status::Ok();
  }
  Result<std::string> Get(const std::string& key) override {
    std::lock_guard lock(mu_);
    auto it = objects_.find(key);
    if (it == objects_.end()) return Status(errors::kObjectNotFound, "no object " + key);
    return it->second;
  }
  Result<std::string> GetRange(const std::string& key, uint64_t offset, uint64_t length) override {
    std::lock_guard lock(mu_);
    auto it = objects_.find(key);
    if (it == objects_.end()) return Status(errors::kObjectNotFound, "no object " + key);
    if (offset + length > it->second.size()) {
      return Status(errors::kCorruption, "object " + key + " is shorter than the range asked");
    }
    return it->second.substr(offset, length);
  }
  Result<std::vector<ObjectInfo>> List(const std::string& prefix) override {
    std::lock_guard lock(mu_);
    std::vector<ObjectInfo> out;
    for (auto it = objects_.lower_bound(prefix); it != objects_.end() && it->first.rfind(prefix, 0) == 0; ++it) {
      out.push_back({it->first, it->second.size()});
    }
    return out;
  }
  Status Delete(const std::string& key) override {
    std::lock_guard lock(mu_);
    objects_.erase(key);
    return Status::Ok();
  }
  Result<std::optional<uint64_t>> Stat(const std::string& key) override {
    std::lock_guard lock(mu_);
    auto it = objects_.find(key);
    if (it == objects_.end()) return std::optional<uint64_t>();
    return std::optional<uint64_t>(it->second.size());
  }
  std::string Describe() const override { return "mem:"; }

 private:
  std::mutex mu_;
  std::map<std::string, std::string> objects_;
};

}  // namespace

std::unique_ptr<ObjectStore> NewMemoryStore() { return std::make_unique<MemoryStore>(); }

Status FaultInjectingStore::Tick() {
  std::lock_guard lock(mu_);
  if (failed_ && plan_.crash) return Status(*plan_.error, "injected fault (after crash)");
  if (plan_.fail_after_ops >= 0 && ops_ >= plan_.fail_after_ops && !failed_) {
    failed_ = true;
    ++ops_;
    return Status(*plan_.error, "injected fault");
  }
  ++ops_;
  return Status::Ok();
}

void FaultInjectingStore::Rearm(FaultPlan plan) {
  std::lock_guard lock(mu_);
  plan_ = plan;
  ops_ = 0;
  failed_ = false;
}

Status FaultInjectingStore::Put(const std::string& key, std::string_view bytes) {
  Status st = Tick();
  if (!st.ok()) {
    // The torn object is the injected fault itself: whether storing it
    // worked does not matter, the caller is told `st` either way.
    if (plan_.torn_bytes > 0 && failed_) (void)inner_->Put(key, bytes.substr(0, std::min(plan_.torn_bytes, bytes.size())));
    return st;
  }
  return inner_->Put(key, bytes);
}
namespace {

// The inner store's writer, each call an operation of the plan. It keeps the
// first torn_bytes appended, to leave them under the key if Commit is the
// call that fails.
class FaultInjectingWriter final : public ObjectWriter {
 public:
  FaultInjectingWriter(std::unique_ptr<ObjectWriter> inner, ObjectStore* store, std::string key,
                       std::function<Status()> tick, size_t torn_bytes)
      : inner_(std::move(inner)), store_(store), key_(std::move(key)), tick_(std::move(tick)), torn_(torn_bytes) {}
  Status Append(std::string_view bytes) override {
    RETURN_IF_ERROR(tick_());
    if (head_.size() < torn_) head_ += bytes.substr(0, torn_ - head_.size());
    return inner_->Append(bytes);
  }
  Status Commit() override {
    Status st = tick_();
    if (!st.ok()) {
      // As in Put: the torn object is the fault injected; the caller gets `st`.
      if (torn_ > 0) (void)store_->Put(key_, head_);
      return st;
    }
    return inner_->Commit();
  }

 private:
  std::unique_ptr<ObjectWriter> inner_;
  ObjectStore* store_;
  std::string key_;
  std::function<Status()> tick_;
  size_t torn_;
  std::string head_;
};

}  // namespace

Result<std::unique_ptr<ObjectWriter>> FaultInjectingStore::NewWriter(const std::string& key) {
  RETURN_IF_ERROR(Tick());
  ASSIGN_OR_RETURN(auto inner, inner_->NewWriter(key));
  size_t torn;
  {
    std::lock_guard lock(mu_);
    torn = plan_.torn_bytes;
  }
  return std::unique_ptr<ObjectWriter>(
      std::make_unique<FaultInjectingWriter>(std::move(inner), inner_, key, [this] { return Tick(); }, torn));
}

Result<std::string> FaultInjectingStore::Get(const std::string& key) {
  RETURN_IF_ERROR(Tick());
  return inner_->Get(key);
}
Result<std::string> FaultInjectingStore::GetRange(const std::string& key, uint64_t o, uint64_t n) {
  RETURN_IF_ERROR(Tick());
  return inner_->GetRange(key, o, n);
}
Status FaultInjectingStore::GetRangeInto(const std::string& key, uint64_t o, uint64_t n, std::string& out) {
  RETURN_IF_ERROR(Tick());
  return inner_->GetRangeInto(key, o, n, out);
}
Result<std::vector<ObjectInfo>> FaultInjectingStore::List(const std::string& prefix) {
  RETURN_IF_ERROR(Tick());
  return inner_->List(prefix);
}
Status FaultInjectingStore::Delete(const std::string& key) {
  RETURN_IF_ERROR(Tick());
  return inner_->Delete(key);
}
Result<std::optional<uint64_t>> FaultInjectingStore::Stat(const std::string& key) {
  RETURN_IF_ERROR(Tick());
  return inner_->Stat(key);
}

}  // namespace strata::storage
