// Taking a snapshot: files cut into chunks, hashed, deduplicated against
// the repository (and, incremental, taken from the parent's manifest), new
// chunks handed to the pack writer, and the manifest written last. Also the
// manifest-level operations: get, list, copy, delete.
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_set>

#include <fmt/format.h>

#include "repo/pack_writer.h"
#include "repo/repo_internal.h"
#include "repo/workers.h"

namespace strata::repo {

// What one lane of a snapshot keeps from unit to unit: buffers reused, so
// a lane touches the same memory over and over.
struct Repository::Impl::Lane {
  std::string buf;
  std::vector<std::pair<uint64_t, std::string_view>> raw;  // chunk index in the file, bytes
  std::vector<Hash> ids;
  std::vector<uint8_t> traits;
  std::vector<std::pair<Hash, std::string_view>> fresh;
  std::vector<uint8_t> fresh_incompressible;
  std::unordered_set<Hash, HashHasher> fresh_ids;
  std::vector<EncodedFrame> frames;
  uint64_t new_chunks = 0;
  uint64_t read_bytes = 0;
};

namespace {

// Reads [offset, offset + n) into out; fewer bytes only at the end of the file.
Result<size_t> ReadFully(const FileSource& f, uint64_t offset, char* out, size_t n) {
  size_t done = 0;
  while (done < n) {
    ASSIGN_OR_RETURN(size_t got,
                     f.read_at(offset + done, std::span<std::byte>(reinterpret_cast<std::byte*>(out + done), n - done)));
    if (got == 0) break;
    done += got;
  }
  return done;
}

// A snapshot's unit of work: up to a batch of one file's chunks to read.
struct Unit {
  size_t file = 0;  // in the manifest
  std::vector<Piece> pieces;
};

// What CreateSnapshot's steps share: the manifest being filled, the
// parent it takes chunk ids from, and the lanes that read and store the rest.
struct SnapshotBuild {
  SnapshotBuild(Repository::Impl& repo, const SnapshotOptions& options, uint32_t cs)
      : repo(repo),
        options(options),
        progress(options.progress),
        cs(cs),
        batch(std::max<uint64_t>(cs, repo.options.batch_bytes / cs * cs)),
        writer(&repo),
        workers(std::max(1, repo.options.threads)),
        lanes(std::max(1, repo.options.threads)) {}

  // The parent, if it can serve: any problem with it only means reading more.
  void ReadParent();
  // Plans a file: its manifest entry, the chunks taken from the parent
  // without reading (outside every changed range, and whole and inside the
  // parent's file: a tail chunk is reused only when the size did not
  // change), and units for the rest.
  void PlanFile(const FileSource& f, std::vector<Unit>& units);
  // Every lane takes the next unit until none is left: no lane waits for
  // another between units, and the engine's file reads overlap the other
  // lane's hashing and compression. Only the calling thread reports progress.
  Status Run(const std::vector<FileSource>& sources, const std::vector<Unit>& units);

  Repository::Impl& repo;
  const SnapshotOptions& options;
  const ProgressFn& progress;
  const uint32_t cs;
  const uint64_t batch;
  uint64_t total = 0;
  std::optional<Manifest> parent;
  std::map<std::string, const ManifestFile*> parent_files;
  Manifest m;
  SnapshotStats stats;
  Repository::Impl::PackWriter writer;
  Workers workers;
  std::vector<Repository::Impl::Lane> lanes;
  std::atomic<uint64_t> done_bytes{0};
};

void SnapshotBuild::ReadParent() {
  if (!options.parent_id.empty() && !options.changed.empty()) {
    auto pm = repo.ReadManifest(options.parent_id);
    if (pm.ok() && pm->chunk_size == cs) {
      parent = std::move(*pm);
      for (const auto& pf : parent->files) parent_files[pf.path] = &pf;
    }
  }
}

void SnapshotBuild::PlanFile(const FileSource& f, std::vector<Unit>& units) {
  const size_t fi = m.files.size();
  m.files.push_back(ManifestFile{f.path, f.size, f.mode, {}});
  ManifestFile& mf = m.files.back();
  const uint64_t nchunks = (f.size + cs - 1) / cs;
  mf.chunks.resize(nchunks);
  stats.chunks += nchunks;
  std::vector<bool> reuse;
  const ManifestFile* pf = nullptr;
  if (parent) {
    auto ranges = options.changed.find(f.path);
    auto found = parent_files.find(f.path);
    if (ranges != options.changed.end() && found != parent_files.end()) {
      pf = found->second;
      const uint64_t same = f.size == pf->size ? nchunks : std::min(f.size, pf->size) / cs;
      reuse.assign(nchunks, false);
      for (uint64_t i = 0; i < std::min<uint64_t>(same, pf->chunks.size()); ++i) reuse[i] = true;
      for (const auto& r : ranges->second) {
        if (r.length == 0 || r.offset >= f.size) continue;
        uint64_t end = r.length > f.size - r.offset ? f.size : r.offset + r.length;
        for (uint64_t i = r.offset / cs; i < (end + cs - 1) / cs; ++i) reuse[i] = false;
      }
      // Looked up under one shared lock per stretch, not one per chunk:
      // an incremental of a large file reuses millions.
      for (uint64_t i = 0; i < nchunks;) {
        std::shared_lock lock(repo.map_mu);
        for (const uint64_t end = std::min<uint64_t>(nchunks, i + 4096); i < end; ++i) {
          if (reuse[i] && !repo.chunks.Contains(pf->chunks[i])) reuse[i] = false;
        }
      }
      stats.parent_used = true;
    }
  }
  uint64_t fill = batch;  // bytes in units.back(); starts "full" to open the first
  uint64_t reused_bytes = 0;
  for (uint64_t i = 0; i < nchunks; ++i) {
    if (pf && reuse[i]) {
      mf.chunks[i] = pf->chunks[i];
      ++stats.parent_chunks;
      reused_bytes += std::min<uint64_t>(cs, f.size - i * cs);
      continue;
    }
    if (fill + cs > batch) {
      units.push_back(Unit{fi, {}});
      fill = 0;
    }
    // Extend the unit's last piece while chunks are to be read.
    auto& pieces = units.back().pieces;
    if (pieces.empty() || pieces.back().first + pieces.back().count != i) pieces.push_back({i, 0});
    ++pieces.back().count;
    fill += cs;
  }
  done_bytes += reused_bytes;
}

Status SnapshotBuild::Run(const std::vector<FileSource>& sources, const std::vector<Unit>& units) {
  std::atomic<size_t> next{0};
  std::mutex error_mu;
  Status first_error;
  std::atomic<bool> failed{false};
  workers.For(
      lanes.size(),
      [&](size_t lo, size_t hi) {
        for (size_t l = lo; l < hi; ++l) {
          for (size_t u; !failed && (u = next++) < units.size();) {
            const Unit& unit = units[u];
            const FileSource& f = sources[unit.file - (m.files.size() - sources.size())];
            Status st = repo.StoreUnit(f, cs, unit.pieces, m.files[unit.file].chunks, writer, lanes[l]);
            if (!st.ok()) {
              std::lock_guard lock(error_mu);
              if (first_error.ok()) first_error = st;
              failed = true;
              break;
            }
            uint64_t bytes = 0;
            for (const auto& p : unit.pieces) bytes += std::min<uint64_t>(p.count * cs, f.size - p.first * cs);
            uint64_t done = done_bytes += bytes;
            if (l == 0 && progress && total) progress(static_cast<int>(std::min<uint64_t>(99, done * 99 / total)));
          }
        }
      },
      1);
  return first_error;
}

}  // namespace

// Reads, hashes, deduplicates and stores one unit: its chunk ids go into
// `chunks` (the file's manifest list), its new chunks to `writer`.
Status Repository::Impl::StoreUnit(const FileSource& f, uint32_t cs, const std::vector<Piece>& pieces,
                                   std::vector<Hash>& chunks, PackWriter& writer, Lane& lane) {
  uint64_t bytes = 0;
  for (const auto& p : pieces) bytes += std::min<uint64_t>(p.count * cs, f.size - p.first * cs);
  lane.buf.resize(bytes);
  lane.raw.clear();
  uint64_t at = 0;
  for (const auto& p : pieces) {
    const uint64_t off = p.first * cs;
    const uint64_t want = std::min<uint64_t>(p.count * cs, f.size - off);
    ASSIGN_OR_RETURN(size_t done, ReadFully(f, off, lane.buf.data() + at, want));
    if (done != want) {
      return Status(errors::kIoError, fmt::format("{} shrank while being read: {} bytes at {}", f.path, done, off));
    }
    for (uint64_t i = p.first, in = 0; i < p.first + p.count; ++i, in += cs) {
      lane.raw.emplace_back(i, std::string_view(lane.buf.data() + at + in, std::min<uint64_t>(cs, want - in)));
    }
    at += want;
  }
  lane.read_bytes += bytes;
  // Each chunk's id, and for one the repository does not have, whether it
  // looks compressible. The index lock is taken per chunk: this thread runs
  // at idle priority and must not hold it long enough to stall a restore.
  enum : uint8_t { kKnown = 1, kIncompressible = 2 };
  const size_t n = lane.raw.size();
  lane.ids.resize(n);
  lane.traits.assign(n, 0);
  for (size_t k = 0; k < n; ++k) {
    ASSIGN_OR_RETURN(lane.ids[k], ChunkId(lane.raw[k].second));
    chunks[lane.raw[k].first] = lane.ids[k];
    if (Known(lane.ids[k])) lane.traits[k] = kKnown;
    else if (LooksIncompressible(lane.raw[k].second)) lane.traits[k] = kIncompressible;
  }
  // The unit's new chunks, each once, in file order: they go into frames together.
  lane.fresh.clear();
  lane.fresh_incompressible.clear();
  lane.fresh_ids.clear();
  for (size_t k = 0; k < n; ++k) {
    if ((lane.traits[k] & kKnown) || !lane.fresh_ids.insert(lane.ids[k]).second || !writer.Claim(lane.ids[k])) {
      continue;
    }
    lane.fresh.emplace_back(lane.ids[k], lane.raw[k].second);
    lane.fresh_incompressible.push_back(lane.traits[k] == kIncompressible);
  }
  lane.new_chunks += lane.fresh.size();
  const size_t nframes = EncodeFrames(lane.fresh, nullptr, lane.frames, lane.fresh_incompressible);
  return writer.Add(lane.frames, nframes);
}

Result<SnapshotStats> Repository::CreateSnapshot(const std::string& id,
                                                 const std::map<std::string, std::string>& metadata,
                                                 const std::vector<FileSource>& files,
                                                 const SnapshotOptions& options) {
  if (!ValidSnapshotId(id)) return Status(errors::kInvalidParameterValue, "bad snapshot id " + id);
  // Held until the manifest is written: chunks this snapshot found in the
  // repository (deduplicated, or reused from the parent) cannot be collected
  // before the manifest names them.
  std::shared_lock gc_guard(impl_->gc_mu);
  ASSIGN_OR_RETURN(auto exists, impl_->store->Stat(ManifestKey(id)));
  if (exists) return Status(errors::kInvalidParameterValue, fmt::format("snapshot {} already exists", id));
  RETURN_IF_ERROR(impl_->RaiseFormat());

  const uint32_t cs = options.chunk_size ? options.chunk_size : impl_->chunk_size;
  if (cs < 512 || cs > (1u << 20) || (cs & (cs - 1))) {
    return Status(errors::kInvalidParameterValue,
                  fmt::format("chunk size {} is not a power of two from 512 B to 1 MiB", cs));
  }
  SnapshotBuild build(*impl_, options, cs);
  for (const auto& f : files) build.total += f.size;
  build.ReadParent();
  Manifest& m = build.m;
  m.id = id;
  m.chunk_size = cs;
  m.metadata = metadata;
  std::vector<Unit> units;
  for (const auto& f : files) build.PlanFile(f, units);
  RETURN_IF_ERROR(build.Run(files, units));
  if (options.late_files) {
    ASSIGN_OR_RETURN(auto more, options.late_files());
    units.clear();
    for (const auto& f : more) {
      build.total += f.size;
      build.PlanFile(f, units);
    }
    RETURN_IF_ERROR(build.Run(more, units));
  }
  RETURN_IF_ERROR(build.writer.Finish());
  // The manifest goes last: only now is every chunk it names durable.
  RETURN_IF_ERROR(impl_->WriteManifest(m));
  SnapshotStats& stats = build.stats;
  for (const auto& lane : build.lanes) {
    stats.new_chunks += lane.new_chunks;
    stats.read_bytes += lane.read_bytes;
  }
  stats.logical_bytes = m.LogicalBytes();
  stats.stored_bytes = build.writer.added_bytes();
  if (options.progress) options.progress(100);
  return stats;
}

Result<SnapshotInfo> Repository::GetSnapshot(const std::string& id) {
  ASSIGN_OR_RETURN(auto m, impl_->ReadManifest(id));
  return SnapshotInfo{m.id, m.metadata, m.LogicalBytes(), m.ChunkCount()};
}

Result<std::vector<std::string>> Repository::ListSnapshots() {
  ASSIGN_OR_RETURN(auto list, impl_->store->List("snapshots/"));
  std::vector<std::string> out;
  for (const auto& o : list) out.push_back(o.key.substr(10));
  return out;
}

Status Repository::CopySnapshot(const std::string& from, const std::string& to,
                                const std::map<std::string, std::string>& metadata) {
  if (!ValidSnapshotId(to)) return Status(errors::kInvalidParameterValue, "bad snapshot id " + to);
  std::shared_lock gc_guard(impl_->gc_mu);
  ASSIGN_OR_RETURN(auto m, impl_->ReadManifest(from));
  ASSIGN_OR_RETURN(auto exists, impl_->store->Stat(ManifestKey(to)));
  if (exists) return Status(errors::kInvalidParameterValue, fmt::format("snapshot {} already exists", to));
  m.id = to;
  m.metadata = metadata;
  return impl_->WriteManifest(m);
}

Status Repository::DeleteSnapshot(const std::string& id) {
  if (!ValidSnapshotId(id)) return Status(errors::kInvalidParameterValue, "bad snapshot id " + id);
  return impl_->store->Delete(ManifestKey(id));
}

}  // namespace strata::repo
