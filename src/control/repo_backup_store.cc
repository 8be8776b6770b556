#include "control/repo_backup_store.h"

#include <algorithm>

namespace strata::control {
namespace {

class RepoBackupStore final : public BackupStore {
 public:
  RepoBackupStore(std::shared_ptr<repo::Repository> r, uint32_t least_chunk_size)
      : repo_(std::move(r)), least_chunk_size_(std::max(least_chunk_size, kMinChunkSize)) {}

  Result<StoredSnapshot> PutSnapshot(const std::string& id, const std::map<std::string, std::string>& metadata,
                                     const std::vector<engine::FileSource>& files, uint32_t page_size,
                                     const IncrementalBase& base, const Progress& progress,
                                     const LateFiles& late_files) override {
    auto convert = [](const std::vector<engine::FileSource>& in) {
      std::vector<repo::FileSource> out;
      for (const auto& f : in) out.push_back({f.path, f.size, f.mode, f.read_at});
      return out;
    };
    repo::LateFilesFn late;
    if (late_files) {
      late = [&]() -> Result<std::vector<repo::FileSource>> {
        ASSIGN_OR_RETURN(auto more, late_files());
        return convert(more);
      };
    }
    repo::SnapshotOptions options{.progress = progress,
                                  .late_files = late,
                                  .chunk_size = std::max<uint32_t>(page_size, least_chunk_size_),
                                  .parent_id = base.parent_id};
    for (const auto& [path, ranges] : base.changed) {
      auto& out = options.changed[path];
      for (const auto& r : ranges) out.push_back({r.offset, r.length});
    }
    ASSIGN_OR_RETURN(auto stats, repo_->CreateSnapshot(id, metadata, convert(files), options));
    return StoredSnapshot{static_cast<int64_t>(stats.logical_bytes), static_cast<int64_t>(stats.stored_bytes),
                          static_cast<int64_t>(stats.read_bytes), stats.parent_used};
  }

  Status RestoreSnapshot(const std::string& id, const std::filesystem::path& target, const Progress& progress,
                         bool direct) override {
    return repo_->RestoreSnapshot(id, target.string(), progress, repo::RestoreOptions{.direct = direct});
  }

  Status CopySnapshot(const std::string& from, const std::string& to,
                      const std::map<std::string, std::string>& metadata) override {
    return repo_->CopySnapshot(from, to, metadata);
  }

  Status DeleteSnapshot(const std::string& id) override { return repo_->DeleteSnapshot(id); }

  Status PutLogSegment(const std::string& stream, TimePoint first, TimePoint last,
                       std::span<const std::string_view> pieces) override {
    return repo_->AppendLogSegment(stream, first, last, pieces).status();
  }
  Result<std::vector<LogSegmentRef>> ListLogSegments(const std::string& stream, TimePoint from,
                                                     TimePoint to) override {
    ASSIGN_OR_RETURN(auto segs, repo_->ListLogSegments(stream, from, to));
    std::vector<LogSegmentRef> out;
    for (const auto& s : segs) {
      out.push_back({s.seq, s.first_time, s.last_time, static_cast<int64_t>(s.stored_bytes), s.last_seq});
    }
    return out;
  }
  Result<std::string> ReadLogSegment(const std::string& stream, const LogSegmentRef& ref) override {
    repo::LogSegment s{stream, ref.seq, ref.first, ref.last, static_cast<uint64_t>(ref.stored_bytes), ref.last_seq};
    return repo_->ReadLogSegment(s);
  }
  Result<uint64_t> DeleteLogSegmentsBefore(const std::string& stream, TimePoint time) override {
    return repo_->DeleteLogSegmentsBefore(stream, time);
  }
  Result<LogCompaction> CompactLog(const std::string& stream, TimePoint before) override {
    ASSIGN_OR_RETURN(auto st,
                     repo_->CompactLog(stream, repo::LogCompactionOptions{.before = before, .merge_large = true}));
    return LogCompaction{st.segments_merged, st.segments_written, static_cast<int64_t>(st.bytes_before),
                         static_cast<int64_t>(st.bytes_after), st.more};
  }
  Result<std::vector<std::string>> ListSnapshots() override { return repo_->ListSnapshots(); }

  Status CollectGarbage() override {
    ASSIGN_OR_RETURN(auto stats, repo_->CollectGarbage());
    (void)stats;
    return Status::Ok();
  }

 private:
  std::shared_ptr<repo::Repository> repo_;
  const uint32_t least_chunk_size_;
};

}  // namespace

std::unique_ptr<BackupStore> NewRepoBackupStore(std::shared_ptr<repo::Repository> repository,
                                                uint32_t least_chunk_size) {
  return std::make_unique<RepoBackupStore>(std::move(repository), least_chunk_size);
}

}  // namespace strata::control
