#include "control/repo_backup_store.h"

namespace strata::control {
namespace {

class RepoBackupStore final : public BackupStore {
 public:
  explicit RepoBackupStore(std::shared_ptr<repo::Repository> r) : repo_(std::move(r)) {}

  Result<StoredSnapshot> PutSnapshot(const std::string& id, const std::map<std::string, std::string>& metadata,
                                     const std::vector<engine::FileSource>& files, const std::string&,
                                     const Progress& progress) override {
    std::vector<repo::FileSource> sources;
    for (const auto& f : files) sources.push_back({f.path, f.size, f.mode, f.read_at});
    ASSIGN_OR_RETURN(auto stats, repo_->CreateSnapshot(id, metadata, sources, progress));
    return StoredSnapshot{static_cast<int64_t>(stats.logical_bytes), static_cast<int64_t>(stats.stored_bytes)};
  }

  Status RestoreSnapshot(const std::string& id, const std::filesystem::path& target,
                         const Progress& progress) override {
    return repo_->RestoreSnapshot(id, target.string(), progress);
  }

  Status CopySnapshot(const std::string& from, const std::string& to,
                      const std::map<std::string, std::string>& metadata) override {
    return repo_->CopySnapshot(from, to, metadata);
  }

  Status DeleteSnapshot(const std::string& id) override { return repo_->DeleteSnapshot(id); }

  Result<std::vector<std::string>> ListSnapshots() override { return repo_->ListSnapshots(); }

  Status CollectGarbage() override {
    ASSIGN_OR_RETURN(auto stats, repo_->CollectGarbage());
    (void)stats;
    return Status::Ok();
  }

 private:
  std::shared_ptr<repo::Repository> repo_;
};

}  // namespace

std::unique_ptr<BackupStore> NewRepoBackupStore(std::shared_ptr<repo::Repository> repository) {
  return std::make_unique<RepoBackupStore>(std::move(repository));
}

}  // namespace strata::control
