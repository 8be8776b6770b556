// Maintenance: verify (quick and full), garbage collection (dead packs
// deleted, mostly dead ones rewritten), stats and per-snapshot sizes.
#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "common/disk_space.h"
#include "repo/pack_writer.h"
#include "repo/repo_internal.h"
#include "repo/workers.h"

namespace strata::repo {

constexpr uint64_t kNoFrame = UINT64_MAX;
constexpr double kRewriteBelowLiveFraction = 0.5;

// Walks a pack's index entries in order, decoding each frame once for all
// its chunks (a frame's entries are adjacent in its index).
class Repository::Impl::PackChunks {
 public:
  PackChunks(const Impl& repo, std::string_view pack) : repo_(repo), pack_(pack) {}
  // The chunk `e` names, decoded and checked against its id; nullopt when
  // its frame is outside the pack, does not decode, or the bytes differ.
  std::optional<std::string_view> Chunk(const IndexEntry& e) {
    if (e.offset > pack_.size() || e.stored_size > pack_.size() - e.offset) return std::nullopt;
    Location loc = Location::Of(0, e);
    if (frame_at_ != e.offset || !e.framed) {
      frame_ = repo_.DecodeFrame(e.hash, loc, pack_.substr(e.offset, e.stored_size),
                                 frame_.ok() ? std::move(*frame_) : std::string());
      frame_at_ = e.offset;
    }
    if (!frame_.ok()) return std::nullopt;
    auto chunk = ChunkIn(*frame_, loc);
    if (!chunk || !repo_.ChunkMatches(e.hash, *chunk)) return std::nullopt;
    return chunk;
  }

 private:
  const Impl& repo_;
  std::string_view pack_;
  uint64_t frame_at_ = kNoFrame;
  Result<std::string> frame_ = std::string();
};

Result<VerifyReport> Repository::Verify(bool quick) {
  std::shared_lock gc_guard(impl_->gc_mu);
  VerifyReport report;
  ASSIGN_OR_RETURN(auto ids, ListSnapshots());
  std::unordered_map<Hash, std::vector<std::string>, HashHasher> users;
  for (const auto& id : ids) {
    ++report.snapshots;
    auto m = impl_->ReadManifest(id);
    if (!m.ok()) {
      report.problems.push_back({"corrupt manifest: " + m.status().message(), ManifestKey(id), {id}});
      continue;
    }
    for (const auto& f : m->files)
      for (const auto& h : f.chunks) {
        auto& u = users[h];
        if (u.empty() || u.back() != id) u.push_back(id);
      }
  }
  // Every index must decode; a corrupt one hides the chunks it names.
  ASSIGN_OR_RETURN(auto indexes, impl_->store->List("index/"));
  std::map<std::string, std::vector<IndexEntry>> decoded;
  for (const auto& obj : indexes) {
    auto entries = impl_->ReadIndex(obj.key);
    if (!entries.ok()) {
      report.problems.push_back({"corrupt index: " + entries.status().message(), obj.key, {}});
      continue;
    }
    decoded[obj.key.substr(6)] = std::move(*entries);
  }
  std::unordered_set<Hash, HashHasher> present;
  for (const auto& [pack, entries] : decoded) {
    ASSIGN_OR_RETURN(auto size, impl_->store->Stat(PackKey(pack)));
    uint64_t need = 0;
    for (const auto& e : entries) need = std::max(need, e.offset + e.stored_size);
    if (!size || *size < need) {
      std::set<std::string> affected;
      for (const auto& e : entries)
        if (users.count(e.hash)) affected.insert(users[e.hash].begin(), users[e.hash].end());
      report.problems.push_back({size ? "truncated pack" : "missing pack", PackKey(pack),
                                 {affected.begin(), affected.end()}});
      continue;
    }
    if (quick) {
      for (const auto& e : entries) present.insert(e.hash);
      continue;
    }
    auto bytes = impl_->store->Get(PackKey(pack));
    if (!bytes.ok()) {
      report.problems.push_back({"unreadable pack: " + bytes.status().message(), PackKey(pack), {}});
      continue;
    }
    Impl::PackChunks chunks(*impl_, *bytes);
    for (const auto& e : entries) {
      ++report.chunks_checked;
      if (chunks.Chunk(e)) {
        present.insert(e.hash);
      } else if (users.count(e.hash)) {
        report.problems.push_back({"corrupt chunk " + ToHex(e.hash).substr(0, 16), PackKey(pack), users[e.hash]});
      }
    }
  }
  ASSIGN_OR_RETURN(auto logs, impl_->store->List("log/"));
  for (const auto& o : logs) {
    if (quick) break;
    auto bytes = impl_->store->Get(o.key);
    // Gone since the listing: merged by compaction, or past retention.
    if (!bytes.ok() && bytes.status().Is(errors::kObjectNotFound)) continue;
    auto plain = bytes.ok() ? impl_->OpenObject(o.key, std::move(*bytes)) : Result<std::string>(bytes.status());
    auto payload = plain.ok() ? DecodeLogSegment(*plain) : Result<std::string>(plain.status());
    if (!payload.ok()) report.problems.push_back({"corrupt log segment: " + payload.status().message(), o.key, {}});
  }
  for (const auto& [h, snaps] : users) {
    if (!present.count(h)) {
      // Reported once per chunk that no good copy backs.
      bool already = false;
      for (const auto& p : report.problems)
        already = already || p.what.find(ToHex(h).substr(0, 16)) != std::string::npos;
      if (!already) report.problems.push_back({"missing chunk " + ToHex(h).substr(0, 16), "", snaps});
    }
  }
  return report;
}

Result<GcStats> Repository::CollectGarbage() {
  std::unique_lock gc_guard(impl_->gc_mu);
  RETURN_IF_ERROR(impl_->RaiseFormat());
  GcStats stats;
  std::unordered_set<Hash, HashHasher> live;
  ASSIGN_OR_RETURN(auto ids, ListSnapshots());
  for (const auto& id : ids) {
    auto m = impl_->ReadManifest(id);
    // Deleted since the listing: its chunks are garbage anyway.
    if (!m.ok() && m.status().Is(errors::kObjectNotFound)) continue;
    // A manifest we cannot read might name anything: collect nothing rather than guess.
    if (!m.ok()) return m.status();
    for (const auto& f : m->files) live.insert(f.chunks.begin(), f.chunks.end());
  }
  ASSIGN_OR_RETURN(auto indexes, impl_->store->List("index/"));
  ASSIGN_OR_RETURN(auto packs, impl_->store->List("packs/"));
  std::set<std::string> indexed;
  Impl::PackWriter rewriter(impl_.get());
  Workers workers(std::max(1, impl_->options.threads));
  std::vector<Impl::EncodedFrame> frames;
  std::unordered_set<Hash, HashHasher> rewritten;
  std::vector<std::string> to_delete;
  for (const auto& obj : indexes) {
    std::string pack = obj.key.substr(6);
    indexed.insert(pack);
    auto entries = impl_->ReadIndex(obj.key);
    if (!entries.ok() && !entries.status().Is(errors::kCorruption)) return entries.status();
    if (!entries.ok()) continue;  // leave it for an operator to see in verify
    // Whether a pack is dead is counted in chunks: a live chunk's share of
    // its frame's bytes can round to nothing (a 3-byte file tail), and a pack
    // with one live chunk must never be taken for dead. Bytes only weigh a
    // rewrite.
    uint64_t live_bytes = 0, all_bytes = 0;
    size_t live_chunks = 0;
    uint64_t frame_at = kNoFrame;
    for (const auto& e : *entries) {
      if (frame_at != e.offset || !e.framed) all_bytes += e.stored_size;
      frame_at = e.offset;
      if (live.count(e.hash)) {
        ++live_chunks;
        live_bytes += std::max<uint64_t>(1, Location::Of(0, e).StoredShare());
      }
    }
    if (live_chunks == entries->size()) continue;
    if (live_chunks > 0 && live_bytes >= all_bytes * kRewriteBelowLiveFraction) continue;
    // A rewrite writes the live chunks before the pack goes: on a disk below
    // its low-water mark only wholly dead packs are deleted, which frees
    // space and takes none.
    if (live_chunks > 0 && disk::AutomaticWorkPaused()) continue;
    if (live_chunks > 0) {
      // Mostly dead: the live chunks, decoded and checked, go into new frames
      // and packs before this one is dropped. A pack with a bad frame stays,
      // for verify to report.
      ASSIGN_OR_RETURN(auto data, impl_->store->Get(PackKey(pack)));
      std::vector<std::pair<Hash, std::string>> keep;
      bool intact = true;
      Impl::PackChunks chunks_of_pack(*impl_, data);
      for (const auto& e : *entries) {
        if (!live.count(e.hash) || rewritten.count(e.hash)) continue;
        auto chunk = chunks_of_pack.Chunk(e);
        if (!chunk) {
          intact = false;
          break;
        }
        keep.emplace_back(e.hash, std::string(*chunk));
      }
      if (!intact) continue;
      std::vector<std::pair<Hash, std::string_view>> chunks;
      for (const auto& [h, bytes] : keep) {
        chunks.emplace_back(h, bytes);
        rewritten.insert(h);
      }
      const size_t nframes = impl_->EncodeFrames(chunks, &workers, frames);
      RETURN_IF_ERROR(rewriter.Add(frames, nframes));
      ++stats.packs_rewritten;
    } else {
      ++stats.packs_deleted;
    }
    stats.bytes_freed += all_bytes - std::min(all_bytes, live_bytes);
    to_delete.push_back(pack);
  }
  RETURN_IF_ERROR(rewriter.Finish());
  // Index first: a pack without an index is garbage the next run removes.
  std::vector<std::string> index_keys, pack_keys;
  for (const auto& pack : to_delete) {
    index_keys.push_back(IndexKey(pack));
    pack_keys.push_back(PackKey(pack));
  }
  RETURN_IF_ERROR(impl_->store->DeleteMany(index_keys));
  for (const auto& obj : packs) {
    std::string pack = obj.key.substr(6);
    if (!indexed.count(pack)) {
      pack_keys.push_back(obj.key);
      stats.bytes_freed += obj.size;
      ++stats.packs_deleted;
    }
  }
  RETURN_IF_ERROR(impl_->store->DeleteMany(pack_keys));
  RETURN_IF_ERROR(impl_->LoadIndexes());
  return stats;
}

Result<RepoStats> Repository::Stats() {
  RepoStats s;
  ASSIGN_OR_RETURN(auto ids, ListSnapshots());
  s.snapshots = ids.size();
  ASSIGN_OR_RETURN(auto packs, impl_->store->List("packs/"));
  s.packs = packs.size();
  for (const auto& p : packs) s.stored_bytes += p.size;
  ASSIGN_OR_RETURN(auto logs, impl_->store->List("log/"));
  s.log_segments = logs.size();
  for (const auto& l : logs) s.log_bytes += l.size;
  std::shared_lock lock(impl_->map_mu);
  s.chunks = impl_->chunks.size();
  return s;
}

Result<std::vector<SnapshotSize>> Repository::SnapshotSizes() {
  std::shared_lock gc_guard(impl_->gc_mu);
  ASSIGN_OR_RETURN(auto ids, ListSnapshots());
  std::vector<SnapshotSize> out;
  std::vector<std::unordered_set<Hash, HashHasher>> used;
  std::unordered_map<Hash, uint32_t, HashHasher> refs;  // snapshots per chunk
  for (const auto& id : ids) {
    auto m = impl_->ReadManifest(id);
    if (!m.ok() && m.status().Is(errors::kObjectNotFound)) continue;  // deleted meanwhile
    if (!m.ok()) return m.status();
    std::unordered_set<Hash, HashHasher> mine;
    for (const auto& f : m->files) mine.insert(f.chunks.begin(), f.chunks.end());
    for (const auto& h : mine) ++refs[h];
    out.push_back({id, m->LogicalBytes(), 0, 0});
    used.push_back(std::move(mine));
  }
  std::shared_lock lock(impl_->map_mu);
  for (size_t i = 0; i < out.size(); ++i) {
    for (const auto& h : used[i]) {
      auto loc = impl_->chunks.Find(h);
      uint64_t stored = loc ? loc->StoredShare() : 0;
      out[i].referenced_bytes += stored;
      if (refs[h] == 1) out[i].unique_bytes += stored;
    }
  }
  return out;
}

}  // namespace strata::repo
