#include "repo/repo.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/aligned_buffer.h"
#include "common/disk_space.h"
#include "common/ids.h"
#include "common/task_pool.h"
#include "repo/chunk_index.h"
#include "repo/crypto.h"
#include "repo/format.h"
#include "repo/workers.h"

namespace strata::repo {
namespace {

// Format 1: SHA-256 chunk ids, nothing encrypted. Format 2: the same objects,
// HMAC-SHA256 chunk ids, every blob and object sealed (AES-256-GCM). An
// encrypted repository says 2 so that a Strata that predates encryption
// refuses it clearly instead of failing on every object. Formats 3 and 4 are
// 1 and 2 with chunks stored in frames (SIDX0002 indexes), which a Strata
// from before frames must refuse as well; formats 5 and 6 write compact
// indexes (SIDX0003), which a Strata from before them must refuse too.
// Formats 7 and 8 may hold merged change-log segments, whose keys a Strata
// from before them would skip, missing the records inside. An older
// repository is read as it is, and its config is raised to 7 or 8 before the
// first new index or merged segment is written into it. Odd: plain; even:
// encrypted.
constexpr int kFormatPlainV1 = 1;
constexpr int kFormatPlain = 7;
constexpr int kFormatEncrypted = 8;
// The wrapped-keys object's own version, so its layout can change (key
// rotation, more wrapped keys) without a new repository format.
constexpr int kKeysFormat = 1;
// An encrypted index, manifest or change-log segment: this magic, then the
// sealed (nonce, ciphertext, tag) plain encoding of the object.
constexpr std::string_view kSealedObjectMagic = "SENC0001";
constexpr uint64_t kMaxRestoreRun = 4ull << 20;  // coalesce adjacent frames into reads up to this
constexpr size_t kRestoreLookahead = 1024;       // chunks looked at to extend one read
constexpr uint64_t kNoFrame = UINT64_MAX;
constexpr double kRewriteBelowLiveFraction = 0.5;

std::string PackKey(const std::string& id) { return "packs/" + id; }
std::string IndexKey(const std::string& id) { return "index/" + id; }
std::string ManifestKey(const std::string& id) { return "snapshots/" + id; }
std::string KeysKey(const std::string& key_id) { return "keys/" + key_id; }

// AADs: what a sealed blob is for. A chunk is bound to its id, an object to
// its key, the wrapped keys to their key id: moving any of them elsewhere
// makes them fail to authenticate.
std::string ChunkAad(const Hash& id) {
  return "strata chunk v1 " + std::string(reinterpret_cast<const char*>(id.data()), id.size());
}
// Frames are sealed alike wherever they sit: every chunk taken from one is
// checked against its keyed id, which a frame moved or swapped fails.
constexpr std::string_view kFrameAad = "strata frame v1";
std::string ObjectAad(const std::string& key) { return "strata object v1 " + key; }
std::string KeysContext(const std::string& key_id) { return "strata repository keys v1 " + key_id; }

bool ValidSnapshotId(const std::string& id) {
  if (id.empty() || id.size() > 200) return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':')) return false;
  }
  return id != "." && id != "..";
}

// A stretch of whole chunks [first, first + count) of a file, read in one call.
struct Piece {
  uint64_t first = 0;
  uint64_t count = 0;
};

// Whether zstd will find little to take out of a chunk: in a sample of it
// (16 bytes of every 128, 512 in all) two bytes picked at random are equal
// about as rarely as in random bytes, an order-2 entropy over 6.5 bits per
// byte. Random pages (encrypted or compressed columns, blobs, UUID indexes)
// measure about 7 on such a sample, text and numbers 3 to 6. Such chunks go
// into frames of their own: zstd passes over a frame of random bytes at
// several GB/s, but mixed into text it searches them for matches and
// Huffman-codes them, which on half-random pages halved its speed and cost
// a little ratio too. Only the grouping depends on it, never what is stored.
// Collisions are counted as the histogram fills (two histograms, for two
// chains of increments), so there is no pass over the counts after.
bool LooksIncompressible(std::string_view chunk) {
  if (chunk.size() < 256) return false;
  const size_t stride = std::max<size_t>(128, chunk.size() / 32);
  uint16_t counts[2][256] = {};
  uint32_t squares = 0, n = 0;
  const auto* bytes = reinterpret_cast<const unsigned char*>(chunk.data());
  for (size_t at = 0; at + 16 <= chunk.size() && n < 512; at += stride, n += 16) {
    for (size_t i = 0; i < 16; i += 2) {
      squares += 2u * counts[0][bytes[at + i]]++ + 1;
      squares += 2u * counts[1][bytes[at + i + 1]]++ + 1;
    }
  }
  // Per half of n/2 samples, sum(c^2) < (n/2)^2 / 2^6.5 (about 90.5).
  const uint64_t half = n / 2;
  return uint64_t{squares} * 90 < half * half * 2;
}

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

// zstd contexts are costly to create (hundreds of KiB each): one per
// thread, reused for every frame (compression: ZstdCompressKept).
ZSTD_DCtx* ThreadDCtx() {
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  return ctx.get();
}

// Decodes into `out`, whose buffer is reused: a restore decodes a GiB in
// frames of up to 1 MiB, and a fresh buffer for each was page faults and zeroing.
Status Decompress(const Location& loc, std::string_view stored, std::string& out) {
  if (loc.codec == Codec::kRaw) {
    if (stored.size() != loc.frame_raw_size) return Status(errors::kCorruption, "frame has the wrong size");
    out.assign(stored);
    return Status::Ok();
  }
  out.resize(loc.frame_raw_size);
  size_t n = ZSTD_decompressDCtx(ThreadDCtx(), out.data(), out.size(), stored.data(), stored.size());
  if (ZSTD_isError(n) || n != loc.frame_raw_size) {
    return Status(errors::kCorruption, "chunk does not decompress");
  }
  return Status::Ok();
}

// Decoded frames a restore thread has read, oldest dropped first once they
// pass a byte budget. A failed decode is kept too, so every chunk of a bad
// frame reports it. The buffers of dropped frames are handed out again.
class FrameCache {
 public:
  const Result<std::string>* Get(const Location& loc) const {
    auto it = frames_.find(loc.FrameKey());
    return it == frames_.end() ? nullptr : &it->second;
  }
  // A buffer to decode the next frame into.
  std::string Buffer() {
    if (spare_.empty()) return std::string();
    std::string b = std::move(spare_.back());
    spare_.pop_back();
    return b;
  }
  void Put(const Location& loc, Result<std::string> frame) {
    uint64_t key = loc.FrameKey();
    if (frames_.count(key)) {
      if (frame.ok()) spare_.push_back(std::move(*frame));
      return;
    }
    bytes_ += frame.ok() ? frame->size() : 0;
    frames_.emplace(key, std::move(frame));
    order_.push_back(key);
    while (bytes_ > kBudget && order_.size() > 1) {
      auto it = frames_.find(order_.front());
      if (it->second.ok()) {
        bytes_ -= it->second->size();
        spare_.push_back(std::move(*it->second));
      }
      frames_.erase(it);
      order_.pop_front();
    }
  }

 private:
  static constexpr uint64_t kBudget = 16ull << 20;
  std::unordered_map<uint64_t, Result<std::string>> frames_;
  std::deque<uint64_t> order_;
  std::vector<std::string> spare_;
  uint64_t bytes_ = 0;
};

}  // namespace

class Repository::Impl {
 public:
  std::unique_ptr<storage::ObjectStore> store;
  RepoOptions options;
  uint32_t chunk_size = 4096;

  // Backups and restores hold it shared; garbage collection exclusive.
  std::shared_mutex gc_mu;

  // An older repository's config, raised to 7/8; stored by RaiseFormat.
  std::mutex config_mu;
  std::string raised_config;
  // Before anything writes an index or a merged log segment: a repository
  // that holds them must say so, so that a Strata from before refuses it.
  Status RaiseFormat() {
    std::lock_guard lock(config_mu);
    if (raised_config.empty()) return Status::Ok();
    RETURN_IF_ERROR(store->Put("config", raised_config));
    raised_config.clear();
    return Status::Ok();
  }

  std::mutex log_mu;
  std::map<std::string, uint64_t> next_seq;  // per stream; 0: not read yet
  // Compaction and retention one at a time: a merged segment written after
  // retention listed the stream would outlive the deletion.
  std::mutex log_rewrite_mu;
  // Retention waiting for log_rewrite_mu: a compaction running at idle
  // priority then finishes at normal priority (no priority inversion).
  std::atomic<int> log_rewrite_waiting{0};

  // Lookups take it shared (a snapshot's workers look up ids side by side);
  // adding a pack takes it exclusive.
  std::shared_mutex map_mu;
  std::vector<std::string> pack_ids;
  ChunkIndex chunks;

  // Set once at open for an encrypted repository; null: unencrypted.
  struct Encryption {
    std::string key_id;
    crypto::SecretKey data_key;
    std::unique_ptr<crypto::HmacSha256> chunk_mac;
  };
  std::unique_ptr<Encryption> enc;

  // A chunk's id: the HMAC of its plain bytes when encrypted (a bare hash
  // would let anyone holding a guess at a page's contents test for it).
  Result<Hash> ChunkId(std::string_view raw) const {
    if (enc) return enc->chunk_mac->Mac(raw);
    return Sha256(raw);
  }
  bool ChunkMatches(const Hash& id, std::string_view raw) const {
    auto h = ChunkId(raw);
    return h.ok() && *h == id;
  }

  // A frame's plain bytes from its stored form: authenticated (encrypted)
  // and decompressed. `id` is any chunk of it (a format-1 chunk is sealed
  // under its own id). Any failure is kCorruption. The caller checks each
  // chunk it takes against its id.
  Result<std::string> DecodeFrame(const Hash& id, const Location& loc, std::string_view stored,
                                  std::string buffer = {}) const {
    if (enc) {
      auto opened = crypto::Open(enc->data_key, stored, loc.framed ? std::string(kFrameAad) : ChunkAad(id));
      if (!opened.ok()) return Status(errors::kCorruption, "chunk does not authenticate");
      RETURN_IF_ERROR(Decompress(loc, *opened, buffer));
      return buffer;
    }
    RETURN_IF_ERROR(Decompress(loc, stored, buffer));
    return buffer;
  }
  // The chunk at `loc` in its decoded frame, if it is what `id` names.
  static std::optional<std::string_view> ChunkIn(const std::string& frame, const Location& loc) {
    if (loc.in_frame > frame.size() || loc.raw_size > frame.size() - loc.in_frame) return std::nullopt;
    return std::string_view(frame).substr(loc.in_frame, loc.raw_size);
  }

  // Walks a pack's index entries in order, decoding each frame once for all
  // its chunks (a frame's entries are adjacent in its index).
  class PackChunks {
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

  // A frame ready for a pack: the chunks it holds, in order, and its stored
  // form. Kept from batch to batch, so its buffers are reused.
  struct EncodedFrame {
    Status status;  // not OK: sealing failed, and the operation with it
    std::vector<std::pair<Hash, uint32_t>> chunks;  // id, raw size
    std::string stored;
    Codec codec = Codec::kRaw;
    uint32_t raw_size = 0;
  };
  // Compress first, then seal: ciphertext does not compress.
  void EncodeFrame(std::string_view raw, EncodedFrame& out) const {
    out.status = Status::Ok();
    out.raw_size = static_cast<uint32_t>(raw.size());
    // Compressed into a buffer the thread keeps: a fresh one per frame cost
    // page faults and zeroing worth a tenth of a snapshot's time.
    thread_local std::string z;
    if (z.size() < ZSTD_compressBound(raw.size())) z.resize(ZSTD_compressBound(raw.size()));
    size_t n = ZstdCompressKept(z.data(), z.size(), raw, options.zstd_level);
    std::string_view plain = raw;
    out.codec = Codec::kRaw;
    if (!ZSTD_isError(n) && n < raw.size()) {
      plain = std::string_view(z.data(), n);
      out.codec = Codec::kZstd;
    }
    if (!enc) {
      out.stored.assign(plain);
      return;
    }
    out.stored.clear();
    out.status = crypto::SealTo(enc->data_key, plain, kFrameAad, out.stored);
  }

  // The stored form of an index, manifest or change-log segment under `key`.
  Result<std::string> SealObject(const std::string& key, std::string plain) const {
    if (!enc) return plain;
    std::string out(kSealedObjectMagic);
    RETURN_IF_ERROR(crypto::SealTo(enc->data_key, plain, ObjectAad(key), out));
    return out;
  }
  // Takes the stored bytes by value: unencrypted, they are the plain form,
  // and an 8 MiB manifest is not copied into fresh pages again.
  Result<std::string> OpenObject(const std::string& key, std::string stored) const {
    if (!enc) return stored;
    std::string_view sealed = stored;
    if (sealed.substr(0, kSealedObjectMagic.size()) != kSealedObjectMagic) {
      return Status(errors::kCorruption, fmt::format("{} is not an encrypted Strata object", key));
    }
    auto plain = crypto::Open(enc->data_key, sealed.substr(kSealedObjectMagic.size()), ObjectAad(key));
    if (!plain.ok()) return Status(errors::kCorruption, fmt::format("{} does not authenticate", key));
    return plain;
  }
  Result<std::vector<IndexEntry>> ReadIndex(const std::string& key) {
    ASSIGN_OR_RETURN(auto bytes, store->Get(key));
    ASSIGN_OR_RETURN(auto plain, OpenObject(key, std::move(bytes)));
    return DecodeIndex(plain);
  }

  Status CreateKeys(Keyring& keyring, nlohmann::json& config);
  Status UnlockKeys(const std::vector<std::string>& key_ids, Keyring* keyring);

  Status LoadIndexes() {
    ASSIGN_OR_RETURN(auto list, store->List("index/"));
    std::lock_guard lock(map_mu);
    pack_ids.clear();
    chunks.Clear();
    for (const auto& obj : list) {
      auto entries = ReadIndex(obj.key);
      if (!entries.ok() && !entries.status().Is(errors::kCorruption)) return entries.status();
      if (!entries.ok()) continue;  // a corrupt index is reported by Verify; its chunks are unknown
      AddPackLocked(obj.key.substr(6), *entries);
    }
    return Status::Ok();
  }

  void AddPackLocked(const std::string& pack_id, const std::vector<IndexEntry>& entries) {
    uint32_t p = static_cast<uint32_t>(pack_ids.size());
    pack_ids.push_back(pack_id);
    chunks.AddPack(p, entries);
  }

  bool Known(const Hash& h) {
    std::shared_lock lock(map_mu);
    return chunks.Contains(h);
  }

  std::optional<Location> Find(const Hash& h) {
    std::shared_lock lock(map_mu);
    return chunks.Find(h);
  }
  std::string PackId(uint32_t pack) {
    std::shared_lock lock(map_mu);
    return pack_ids[pack];
  }

  // Reads the frame of chunk i (at `loc`) into the cache, and with it, in
  // the same ranged read, the frames right after it in its pack that the
  // next chunks of [i, end) need.
  void ReadFrames(const std::vector<Hash>& ids, size_t i, size_t end, const Location& loc, FrameCache& cache) {
    uint64_t start = loc.offset, stop = loc.offset + loc.stored_size, decoded = loc.frame_raw_size;
    std::vector<std::pair<Hash, Location>> frames{{ids[i], loc}};
    for (size_t j = i + 1, looked = 0;
         j < end && looked < kRestoreLookahead && stop - start < kMaxRestoreRun && decoded < kMaxRestoreRun;
         ++j, ++looked) {
      auto next = Find(ids[j]);
      if (!next) break;
      if (next->pack != loc.pack || cache.Get(*next) || (next->offset >= start && next->offset < stop)) continue;
      if (next->offset != stop) break;
      frames.emplace_back(ids[j], *next);
      stop += next->stored_size;
      decoded += next->frame_raw_size;
    }
    thread_local std::string bytes;  // reused: a restore reads a GiB in ranges of MiBs
    Status read = store->GetRangeInto(PackKey(PackId(loc.pack)), start, stop - start, bytes);
    for (const auto& [id, at] : frames) {
      if (!read.ok()) {
        cache.Put(at, read);
        continue;
      }
      cache.Put(at, DecodeFrame(id, at, std::string_view(bytes).substr(at.offset - start, at.stored_size),
                                cache.Buffer()));
    }
  }

  Result<Manifest> ReadManifest(const std::string& id) {
    auto bytes = store->Get(ManifestKey(id));
    if (!bytes.ok()) {
      if (bytes.status().Is(errors::kObjectNotFound)) {
        return Status(errors::kObjectNotFound, fmt::format("no snapshot {} in the repository", id));
      }
      return bytes.status();
    }
    ASSIGN_OR_RETURN(auto plain, OpenObject(ManifestKey(id), std::move(*bytes)));
    return DecodeManifest(plain);
  }
  // An object handed to `produce`'s sink in pieces, streamed to the store
  // and, encrypted, sealed as it goes: a large database's manifest (32 bytes
  // per chunk) or a 16 MiB change-log segment is never held a second time.
  // `stored`: the object's size in the store.
  using Sink = std::function<Status(std::string_view)>;
  Status PutStreamed(const std::string& key, const std::function<Status(const Sink&)>& produce,
                     uint64_t* stored = nullptr) {
    ASSIGN_OR_RETURN(auto writer, store->NewWriter(key));
    uint64_t size = 0;
    auto append = [&](std::string_view piece) {
      size += piece.size();
      return writer->Append(piece);
    };
    if (!enc) {
      RETURN_IF_ERROR(produce(append));
    } else {
      std::string sealed(kSealedObjectMagic);
      ASSIGN_OR_RETURN(auto sealer, crypto::StreamSealer::Begin(enc->data_key, ObjectAad(key), sealed));
      RETURN_IF_ERROR(produce([&](std::string_view piece) -> Status {
        RETURN_IF_ERROR(sealer->Update(piece, sealed));
        Status st = append(sealed);
        sealed.clear();
        return st;
      }));
      RETURN_IF_ERROR(sealer->Finish(sealed));
      RETURN_IF_ERROR(append(sealed));
    }
    RETURN_IF_ERROR(writer->Commit());
    if (stored) *stored = size;
    return Status::Ok();
  }

  Status WriteManifest(const Manifest& m) {
    return PutStreamed(ManifestKey(m.id), [&](const Sink& sink) { return EncodeManifestTo(m, sink); });
  }

  // Streams new chunks into packs. Frames are appended to a block of
  // kBlockBytes; a full block goes to the writer's store thread, which
  // appends it to the pack's object writer, and at the pack's end commits
  // the pack, then writes its index and indexes its chunks (the index only
  // after the pack is durable). Disk writes so overlap hashing and
  // compression, and the snapshot waits for the store only when
  // kQueuedBlocks blocks are waiting already: memory stays at a few blocks,
  // recycled, whatever the size of the snapshot or of a pack.
  // Finish() waits until every pack is indexed and reports the first error.
  class PackWriter {
   public:
    explicit PackWriter(Impl* repo)
        : repo_(repo), block_bytes_(std::min<uint64_t>(kBlockBytes, repo->options.pack_target_bytes)) {
      store_thread_ = std::thread([this] { StoreLoop(); });
    }
    ~PackWriter() {
      {
        std::lock_guard lock(mu_);
        // Abandoned before Finish (the operation failed): what is queued is
        // dropped, and a pack begun is never committed.
        if (status_.ok() && (!queue_.empty() || busy_)) status_ = Status(errors::kIoError, "pack writer abandoned");
        stopping_ = true;
      }
      wake_.notify_all();
      store_thread_.join();
    }

    // Claims chunk `h` for this writer, to be Added: false when the
    // repository has it, or it is claimed already (by another lane of the
    // snapshot): then the caller only names it. A claimed chunk counts as
    // stored until its pack is indexed, and as known after.
    bool Claim(const Hash& h) {
      std::lock_guard lock(mu_);
      // Under mu_, and the store thread indexes a pack before it drops the
      // pack's claims: a chunk is never both unclaimed and unknown between.
      if (pending_.count(h) || repo_->Known(h)) return false;
      pending_.insert(h);
      return true;
    }

    // Appends frames[0, n) to the pack, together: frames of one unit stay
    // adjacent even while other lanes add theirs, so a restore reads a
    // stretch of a file in one ranged read. Thread-safe.
    Status Add(const std::vector<EncodedFrame>& frames, size_t n) {
      for (size_t k = 0; k < n; ++k) RETURN_IF_ERROR(frames[k].status);
      std::lock_guard add_lock(add_mu_);
      {
        std::lock_guard lock(mu_);
        RETURN_IF_ERROR(status_);
      }
      for (size_t k = 0; k < n; ++k) RETURN_IF_ERROR(AddLocked(frames[k]));
      return Status::Ok();
    }
    // Ends the pack being written and waits until every pack is indexed.
    Status Finish() {
      {
        std::lock_guard add_lock(add_mu_);
        if (pack_bytes_ > 0) RETURN_IF_ERROR(Send(true));
      }
      std::unique_lock lock(mu_);
      idle_.wait(lock, [this] { return queue_.empty() && !busy_; });
      return status_;
    }
    uint64_t added_bytes() {
      std::lock_guard add_lock(add_mu_);
      return added_bytes_;
    }

   private:
    static constexpr uint64_t kBlockBytes = 4ull << 20;
    static constexpr size_t kQueuedBlocks = 3;

    // Called under add_mu_.
    Status AddLocked(const EncodedFrame& frame) {
      uint32_t in_frame = 0;
      for (const auto& [h, raw_size] : frame.chunks) {
        entries_.push_back(IndexEntry{h, pack_bytes_, static_cast<uint32_t>(frame.stored.size()), raw_size,
                                      frame.codec, frame.raw_size, in_frame, true});
        in_frame += raw_size;
      }
      if (block_.bytes.capacity() < block_bytes_) block_.bytes.reserve(block_bytes_ + repo_->options.frame_bytes + 64);
      block_.bytes += frame.stored;
      pack_bytes_ += frame.stored.size();
      added_bytes_ += frame.stored.size();
      if (pack_bytes_ >= repo_->options.pack_target_bytes) return Send(true);
      if (block_.bytes.size() >= block_bytes_) return Send(false);
      return Status::Ok();
    }

    struct Block {
      std::string bytes;
      bool ends_pack = false;
      std::vector<IndexEntry> entries;  // the pack's, on the block that ends it
    };

    // Hands the current block to the store thread, waiting while the queue
    // is full. Called under add_mu_.
    Status Send(bool ends_pack) {
      block_.ends_pack = ends_pack;
      if (ends_pack) {
        block_.entries = std::move(entries_);
        entries_.clear();
        pack_bytes_ = 0;
      }
      std::unique_lock lock(mu_);
      idle_.wait(lock, [this] { return queue_.size() < kQueuedBlocks; });
      RETURN_IF_ERROR(status_);
      queue_.push_back(std::move(block_));
      block_ = Block{};
      if (!spare_.empty()) {
        block_.bytes = std::move(spare_.back());
        spare_.pop_back();
      }
      lock.unlock();
      wake_.notify_one();
      return Status::Ok();
    }

    void StoreLoop() {
      std::unique_ptr<storage::ObjectWriter> pack;
      std::string pack_id;
      for (;;) {
        Block block;
        {
          std::unique_lock lock(mu_);
          wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
          if (queue_.empty()) return;  // stopping, and nothing left
          block = std::move(queue_.front());
          queue_.pop_front();
          busy_ = true;
        }
        Status st = Store(block, pack, pack_id);
        block.bytes.clear();
        std::lock_guard lock(mu_);
        if (!st.ok() && status_.ok()) status_ = st;
        // A failed pack is not indexed: its chunks stay pending, so nothing
        // this snapshot writes later names them; the snapshot fails anyway.
        spare_.push_back(std::move(block.bytes));
        busy_ = false;
        idle_.notify_all();
      }
    }

    Status Store(const Block& block, std::unique_ptr<storage::ObjectWriter>& pack, std::string& pack_id) {
      {
        std::lock_guard lock(mu_);
        if (!status_.ok()) {
          pack.reset();  // an uncommitted writer leaves nothing
          return Status::Ok();
        }
      }
      if (!pack) {
        pack_id = RandomHex(16);
        ASSIGN_OR_RETURN(pack, repo_->store->NewWriter(PackKey(pack_id)));
      }
      Status st = pack->Append(block.bytes);
      if (st.ok() && block.ends_pack) st = pack->Commit();
      if (!st.ok() || !block.ends_pack) {
        if (!st.ok()) pack.reset();
        return st;
      }
      pack.reset();
      ASSIGN_OR_RETURN(auto index, repo_->SealObject(IndexKey(pack_id), EncodeIndex(block.entries)));
      RETURN_IF_ERROR(repo_->store->Put(IndexKey(pack_id), index));
      {
        // Restores look chunks up under this lock at normal priority.
        ScopedNormalPriority lifted;
        std::lock_guard lock(repo_->map_mu);
        repo_->AddPackLocked(pack_id, block.entries);
      }
      std::lock_guard lock(mu_);
      for (const auto& e : block.entries) pending_.erase(e.hash);
      return Status::Ok();
    }

    Impl* repo_;
    const uint64_t block_bytes_;
    // The adding side, under add_mu_: the block filling and its pack.
    std::mutex add_mu_;
    Block block_;
    std::vector<IndexEntry> entries_;
    uint64_t pack_bytes_ = 0;
    uint64_t added_bytes_ = 0;
    // Shared with the store thread, under mu_.
    mutable std::mutex mu_;
    std::condition_variable wake_, idle_;
    std::deque<Block> queue_;
    std::vector<std::string> spare_;
    std::unordered_set<Hash, HashHasher> pending_;
    Status status_;
    bool busy_ = false;
    bool stopping_ = false;
    std::thread store_thread_;
  };

  // Groups chunks into frames of up to options.frame_bytes, in the order
  // given, those that look incompressible apart from the rest, and encodes
  // them on the workers into frames[0, count); returns count. A frame's
  // chunks are in order, and frames are in the order of their first chunk,
  // so a restore still reads a stretch of a file from adjacent frames.
  // `frames` keeps its buffers from call to call.
  // `incompressible[k]`: LooksIncompressible(chunks[k]), if the caller has
  // it already; empty: worked out here. `workers` null: all on this thread.
  size_t EncodeFrames(const std::vector<std::pair<Hash, std::string_view>>& chunks, Workers* workers,
                      std::vector<EncodedFrame>& frames, std::vector<uint8_t> incompressible = {}) const {
    auto run = [workers](size_t n, const std::function<void(size_t, size_t)>& fn, size_t serial_below) {
      if (workers) workers->For(n, fn, serial_below);
      else fn(0, n);
    };
    if (incompressible.size() != chunks.size()) {
      incompressible.assign(chunks.size(), 0);
      run(
          chunks.size(),
          [&](size_t lo, size_t hi) {
            for (size_t k = lo; k < hi; ++k) incompressible[k] = LooksIncompressible(chunks[k].second);
          },
          64);
    }
    struct Span {
      std::vector<size_t> members;
      uint64_t fill = 0;
    };
    std::vector<Span> spans;
    std::array<size_t, 2> open = {SIZE_MAX, SIZE_MAX};  // the span each kind is filling
    for (size_t k = 0; k < chunks.size(); ++k) {
      size_t& at = open[incompressible[k]];
      if (at == SIZE_MAX || spans[at].fill + chunks[k].second.size() > options.frame_bytes) {
        at = spans.size();
        spans.emplace_back();
      }
      spans[at].members.push_back(k);
      spans[at].fill += chunks[k].second.size();
    }
    if (frames.size() < spans.size()) frames.resize(spans.size());
    run(
        spans.size(),
        [&](size_t lo, size_t hi) {
          thread_local std::string raw;
          for (size_t f = lo; f < hi; ++f) {
            raw.clear();
            frames[f].chunks.clear();
            for (size_t k : spans[f].members) {
              raw += chunks[k].second;
              frames[f].chunks.emplace_back(chunks[k].first, static_cast<uint32_t>(chunks[k].second.size()));
            }
            EncodeFrame(raw, frames[f]);
          }
        },
        2);
    return spans.size();
  }

  struct Lane;
  Status StoreUnit(const FileSource& f, uint32_t cs, const std::vector<Piece>& pieces,
                   std::vector<Hash>& chunks, PackWriter& writer, Lane& lane);
};

Repository::Repository(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Repository::~Repository() = default;

Result<std::unique_ptr<Repository>> Repository::Open(std::unique_ptr<storage::ObjectStore> store,
                                                     RepoOptions options) {
  if (options.chunk_size < 512 || options.chunk_size > (1u << 20) ||
      (options.chunk_size & (options.chunk_size - 1))) {
    return Status(errors::kInvalidParameterValue, "chunk size must be a power of two from 512 B to 1 MiB");
  }
  auto impl = std::make_unique<Impl>();
  impl->store = std::move(store);
  impl->options = options;
  auto config = impl->store->Get("config");
  if (config.ok()) {
    auto j = nlohmann::json::parse(*config, nullptr, false);
    int version = j.is_object() ? j.value("format_version", 0) : 0;
    if (version < kFormatPlainV1 || version > kFormatEncrypted) {
      return Status(errors::kCorruption, fmt::format("{} holds no Strata repository of format {} to {}",
                                                     impl->store->Describe(), kFormatPlainV1, kFormatEncrypted));
    }
    impl->chunk_size = j.value("chunk_size", 4096u);
    const bool encrypted = version % 2 == 0;
    if (encrypted) {
      std::vector<std::string> key_ids;
      try {
        key_ids = j.at("encryption").at("key_ids").get<std::vector<std::string>>();
      } catch (const nlohmann::json::exception&) {
      }
      if (key_ids.empty()) {
        return Status(errors::kCorruption,
                      fmt::format("{}: config of an encrypted repository names no key id", impl->store->Describe()));
      }
      RETURN_IF_ERROR(impl->UnlockKeys(key_ids, options.keyring.get()));
    } else {
      if (options.keyring) {
        return Status(errors::kInvalidParameterCombination,
                      fmt::format("repository {} is not encrypted, but a key was given (key id {}); encryption is "
                                  "chosen when a repository is created: give no key, or use a new repository",
                                  impl->store->Describe(), options.keyring->DefaultKeyId()));
      }
      // Wrapped keys beside an unencrypted config: the config was replaced,
      // and trusting it would write plaintext into an encrypted repository.
      ASSIGN_OR_RETURN(auto keys, impl->store->List("keys/"));
      if (!keys.empty()) {
        return Status(errors::kCorruption, fmt::format("{}: config says unencrypted but {} holds wrapped keys",
                                                       impl->store->Describe(), keys[0].key));
      }
    }
    if (version < kFormatPlain) {
      // Raised before the first index is written, not here: a repository
      // opened to restore or verify may be read-only.
      j["format_version"] = encrypted ? kFormatEncrypted : kFormatPlain;
      impl->raised_config = j.dump(2);
    }
  } else if (config.status().Is(errors::kObjectNotFound)) {
    impl->chunk_size = options.chunk_size;
    nlohmann::json j = {{"format_version", kFormatPlain}, {"chunk_size", impl->chunk_size},
                        {"hash", "sha256"}, {"compression", "zstd"}};
    // The keys go first: a crash before the config leaves no repository, and
    // the next open makes new keys over the orphaned ones.
    if (options.keyring) RETURN_IF_ERROR(impl->CreateKeys(*options.keyring, j));
    RETURN_IF_ERROR(impl->store->Put("config", j.dump(2)));
  } else {
    return config.status();
  }
  RETURN_IF_ERROR(impl->LoadIndexes());
  return std::unique_ptr<Repository>(new Repository(std::move(impl)));
}

uint32_t Repository::chunk_size() const { return impl_->chunk_size; }

const std::string& Repository::key_id() const {
  static const std::string kNone;
  return impl_->enc ? impl_->enc->key_id : kNone;
}

// keys/<key-id>: {"format": 1, "key_id", "cipher", "wrapped": hex}, where
// wrapped is the keyring's wrapping of data key (32 bytes) | chunk-id key (32).
Status Repository::Impl::CreateKeys(Keyring& keyring, nlohmann::json& config) {
  std::string key_id = keyring.DefaultKeyId();
  ASSIGN_OR_RETURN(auto data_key, crypto::SecretKey::Random());
  ASSIGN_OR_RETURN(auto chunk_key, crypto::SecretKey::Random());
  std::string plain = std::string(data_key.view()) + std::string(chunk_key.view());
  auto wrapped = keyring.Wrap(key_id, plain, KeysContext(key_id));
  crypto::Wipe(plain);
  if (!wrapped.ok()) return wrapped.status().WithContext(fmt::format("wrap the keys of {}", store->Describe()));
  nlohmann::json keys = {{"format", kKeysFormat},
                         {"key_id", key_id},
                         {"cipher", "aes-256-gcm"},
                         {"wrapped", crypto::HexEncode(*wrapped)}};
  RETURN_IF_ERROR(store->Put(KeysKey(key_id), keys.dump(2)));
  ASSIGN_OR_RETURN(auto mac, crypto::HmacSha256::Create(chunk_key));
  enc = std::make_unique<Encryption>(Encryption{key_id, data_key, std::move(mac)});
  config["format_version"] = kFormatEncrypted;
  config["hash"] = "hmac-sha256";
  config["encryption"] = {{"cipher", "aes-256-gcm"}, {"key_ids", {key_id}}};
  return Status::Ok();
}

Status Repository::Impl::UnlockKeys(const std::vector<std::string>& key_ids, Keyring* keyring) {
  std::string ids;
  for (const auto& id : key_ids) ids += (ids.empty() ? "" : ", ") + id;
  std::string what = fmt::format("repository {} is encrypted with key id {}", store->Describe(), ids);
  if (!keyring) {
    return Status(errors::kKMSKeyNotAccessible,
                  what + "; no key was given (stratad and strata repo: --repo-key-file FILE)");
  }
  // Any one key id the keyring can unwrap opens the repository; otherwise
  // the first one's reason is the error.
  Status first;
  for (const auto& key_id : key_ids) {
    auto bytes = store->Get(KeysKey(key_id));
    if (!bytes.ok()) {
      if (first.ok()) first = bytes.status().WithContext(what);
      continue;
    }
    auto j = nlohmann::json::parse(*bytes, nullptr, false);
    std::optional<std::string> wrapped;
    if (j.is_object() && j.value("format", 0) == kKeysFormat && j.value("cipher", "") == "aes-256-gcm") {
      wrapped = crypto::HexDecode(j.value("wrapped", ""));
    }
    if (!wrapped) {
      if (first.ok()) first = Status(errors::kCorruption, fmt::format("{}: {} is not a key object this "
                                                                      "version reads", what, KeysKey(key_id)));
      continue;
    }
    auto plain = keyring->Unwrap(key_id, *wrapped, KeysContext(key_id));
    if (!plain.ok()) {
      if (first.ok()) first = Status(plain.status().code(), what + "; " + plain.status().message());
      continue;
    }
    if (plain->size() != 2 * crypto::kKeyBytes) {
      crypto::Wipe(*plain);
      if (first.ok()) first = Status(errors::kCorruption, what + "; its wrapped keys have the wrong size");
      continue;
    }
    crypto::SecretKey data_key(std::string_view(*plain).substr(0, crypto::kKeyBytes));
    crypto::SecretKey chunk_key(std::string_view(*plain).substr(crypto::kKeyBytes));
    crypto::Wipe(*plain);
    ASSIGN_OR_RETURN(auto mac, crypto::HmacSha256::Create(chunk_key));
    enc = std::make_unique<Encryption>(Encryption{key_id, data_key, std::move(mac)});
    return Status::Ok();
  }
  return first;
}

namespace {

// A snapshot's unit of work: up to a batch of one file's chunks to read.
struct Unit {
  size_t file = 0;  // in the manifest
  std::vector<Piece> pieces;
};

}  // namespace

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
  const uint64_t batch = std::max<uint64_t>(cs, impl_->options.batch_bytes / cs * cs);
  uint64_t total = 0;
  for (const auto& f : files) total += f.size;
  const auto& progress = options.progress;

  // The parent, if it can serve: any problem with it only means reading more.
  std::optional<Manifest> parent;
  std::map<std::string, const ManifestFile*> parent_files;
  if (!options.parent_id.empty() && !options.changed.empty()) {
    auto pm = impl_->ReadManifest(options.parent_id);
    if (pm.ok() && pm->chunk_size == cs) {
      parent = std::move(*pm);
      for (const auto& pf : parent->files) parent_files[pf.path] = &pf;
    }
  }

  Manifest m;
  m.id = id;
  m.chunk_size = cs;
  m.metadata = metadata;
  SnapshotStats stats;
  Impl::PackWriter writer(impl_.get());
  const int threads = std::max(1, impl_->options.threads);
  Workers workers(threads);
  std::vector<Impl::Lane> lanes(threads);
  std::atomic<uint64_t> done_bytes{0};

  // Plans a file: its manifest entry, the chunks taken from the parent
  // without reading (outside every changed range, and whole and inside the
  // parent's file: a tail chunk is reused only when the size did not
  // change), and units for the rest.
  auto plan_file = [&](const FileSource& f, std::vector<Unit>& units) {
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
          std::shared_lock lock(impl_->map_mu);
          for (const uint64_t end = std::min<uint64_t>(nchunks, i + 4096); i < end; ++i) {
            if (reuse[i] && !impl_->chunks.Contains(pf->chunks[i])) reuse[i] = false;
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
  };

  // Every lane takes the next unit until none is left: no lane waits for
  // another between units, and the engine's file reads overlap the other
  // lane's hashing and compression. Only the calling thread reports progress.
  auto run = [&](const std::vector<FileSource>& sources, const std::vector<Unit>& units) -> Status {
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
              Status st = impl_->StoreUnit(f, cs, unit.pieces, m.files[unit.file].chunks, writer, lanes[l]);
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
  };
  std::vector<Unit> units;
  for (const auto& f : files) plan_file(f, units);
  RETURN_IF_ERROR(run(files, units));
  if (options.late_files) {
    ASSIGN_OR_RETURN(auto more, options.late_files());
    units.clear();
    for (const auto& f : more) {
      total += f.size;
      plan_file(f, units);
    }
    RETURN_IF_ERROR(run(more, units));
  }
  RETURN_IF_ERROR(writer.Finish());
  // The manifest goes last: only now is every chunk it names durable.
  RETURN_IF_ERROR(impl_->WriteManifest(m));
  for (const auto& lane : lanes) {
    stats.new_chunks += lane.new_chunks;
    stats.read_bytes += lane.read_bytes;
  }
  stats.logical_bytes = m.LogicalBytes();
  stats.stored_bytes = writer.added_bytes();
  if (progress) progress(100);
  return stats;
}

Status Repository::RestoreSnapshot(const std::string& id, const std::string& target_dir,
                                   const ProgressFn& progress, const RestoreOptions& options) {
  std::shared_lock gc_guard(impl_->gc_mu);
  ASSIGN_OR_RETURN(auto m, impl_->ReadManifest(id));
  const uint64_t total = m.LogicalBytes();
  std::atomic<uint64_t> done_bytes{0};
  // By default twice the snapshot's threads: a restore's threads wait on
  // the store's reads and the target's writes about as long as they
  // decode, and an S3 read waits longer.
  const int restore_threads = impl_->options.restore_threads > 0 ? impl_->options.restore_threads
                                                                 : std::max(1, impl_->options.threads) * 2;
  Workers workers(restore_threads);
  for (const auto& f : m.files) {
    std::filesystem::path path = std::filesystem::path(target_dir) / f.path;
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) return Status(errors::kIoError, fmt::format("create {}: {}", path.parent_path().string(), ec.message()));
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, f.mode & 07777);
    if (fd < 0) return Status(errors::kIoError, fmt::format("open {}: {}", path.string(), strerror(errno)));
    struct stat st;
    bool existing = ::fstat(fd, &st) == 0 && st.st_size > 0;
    if (::ftruncate(fd, static_cast<off_t>(f.size)) != 0) {
      ::close(fd);
      return Status(errors::kIoError, fmt::format("truncate {}: {}", path.string(), strerror(errno)));
    }
    // Direct writes go around the page cache: on a VM whose free memory the
    // host reclaims, filling fresh page-cache pages cost twice what the
    // disk takes to write them. A file system that refuses O_DIRECT gets
    // buffered writes.
    int direct_fd = -1;
    if (options.direct && m.chunk_size % kDirectIoAlign == 0) direct_fd = ::open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
    std::atomic<bool> direct_ok{true};
    const uint32_t cs = m.chunk_size;
    // Each thread takes a contiguous stripe of chunks and reads adjacent chunks
    // of one pack in a single ranged read.
    std::mutex err_mu;
    Status first_error;
    auto fail = [&](Status s) {
      std::lock_guard lock(err_mu);
      if (first_error.ok()) first_error = std::move(s);
    };
    workers.For(f.chunks.size(), [&](size_t b, size_t e) {
      FrameCache cache;
      std::string existing_buf;
      // Chunks decoded and checked, waiting to be written at out_at
      // (aligned, for the direct writes of RestoreOptions::direct).
      thread_local AlignedBuffer out(kMaxRestoreRun + (1u << 20));
      out.clear();
      uint64_t out_at = 0;
      auto flush = [&]() -> bool {
        if (out.empty()) return true;
        // Direct: whole aligned blocks; a file's last partial block buffered.
        size_t direct = direct_fd >= 0 && direct_ok ? out.size() / kDirectIoAlign * kDirectIoAlign : 0;
        ssize_t wrote = direct ? ::pwrite(direct_fd, out.data(), direct, static_cast<off_t>(out_at)) : 0;
        if (wrote != static_cast<ssize_t>(direct)) {
          // Some file systems take O_DIRECT at open and refuse the write:
          // the rest of the file goes through the page cache.
          if (wrote < 0 && errno != EINVAL) {
            fail(disk::ErrnoStatus("write " + path.string(), errno));
            return false;
          }
          // A short write (a full disk) is finished through the page cache
          // too, which then says why it cannot be (ENOSPC): a short write's
          // errno is stale ("Success").
          if (wrote < 0) direct_ok = false;
          direct = wrote > 0 ? static_cast<size_t>(wrote) : 0;
        }
        if (direct < out.size()) {
          const size_t n = out.size() - direct;
          if (Status w = disk::PwriteAll(fd, out.data() + direct, n, out_at + direct, "write " + path.string());
              !w.ok()) {
            fail(std::move(w));
            return false;
          }
          // Writeback starts now, while the next frames decode, instead of
          // all of it waiting for the sync at the end.
          (void)::sync_file_range(fd, static_cast<off_t>(out_at + direct), static_cast<off_t>(n), SYNC_FILE_RANGE_WRITE);
        }
        done_bytes += out.size();
        out.clear();
        if (progress && total) progress(static_cast<int>(done_bytes * 99 / total));
        return true;
      };
      for (size_t i = b; i < e; ++i) {
        if (i % 256 == 0) {
          std::lock_guard lock(err_mu);
          if (!first_error.ok()) return;
        }
        uint64_t off = uint64_t{i} * cs;
        size_t want = static_cast<size_t>(std::min<uint64_t>(cs, f.size - off));
        if (existing) {
          existing_buf.resize(want);
          if (::pread(fd, existing_buf.data(), want, static_cast<off_t>(off)) == static_cast<ssize_t>(want) &&
              impl_->ChunkMatches(f.chunks[i], existing_buf)) {
            if (!flush()) return;
            done_bytes += want;
            continue;
          }
        }
        auto loc = impl_->Find(f.chunks[i]);
        if (!loc) {
          fail(Status(errors::kCorruption, fmt::format("snapshot {}: chunk {} of {} at offset {} is missing",
                                                       id, ToHex(f.chunks[i]).substr(0, 16), f.path, off)));
          return;
        }
        const Result<std::string>* frame = cache.Get(*loc);
        if (!frame) {
          impl_->ReadFrames(f.chunks, i, e, *loc, cache);
          frame = cache.Get(*loc);
        }
        if (frame && !frame->ok() && !frame->status().Is(errors::kCorruption)) {
          fail(frame->status().WithContext(fmt::format("snapshot {}: {} at offset {}", id, f.path, off)));
          return;
        }
        std::optional<std::string_view> chunk;
        if (frame && frame->ok()) chunk = Impl::ChunkIn(**frame, *loc);
        if (!chunk || chunk->size() != want || !impl_->ChunkMatches(f.chunks[i], *chunk)) {
          std::string why = !frame ? "not read" : !frame->ok() ? frame->status().message() : "hash mismatch";
          fail(Status(errors::kCorruption,
                      fmt::format("snapshot {}: chunk of {} at offset {} is corrupt ({})", id, f.path, off, why)));
          return;
        }
        if (out.empty()) out_at = off;
        out.append(*chunk);
        if (out.size() >= kMaxRestoreRun && !flush()) return;
      }
      flush();
    });
    if (direct_fd >= 0) ::close(direct_fd);
    ::close(fd);
    RETURN_IF_ERROR(first_error);
  }
  // One sync of the target's file system at the end: a cluster of a thousand
  // small files restores without a thousand fsyncs in a row.
  int dir = ::open(target_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return Status(errors::kIoError, fmt::format("open {}: {}", target_dir, strerror(errno)));
  int sync = ::syncfs(dir);
  ::close(dir);
  if (sync != 0) return Status(errors::kIoError, fmt::format("sync {}: {}", target_dir, strerror(errno)));
  if (progress) progress(100);
  return Status::Ok();
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

namespace {

std::string LogPrefix(const std::string& stream) { return "log/" + stream + "/"; }

std::optional<LogSegment> ParseLogKey(const std::string& stream, const storage::ObjectInfo& obj) {
  // log/<stream>/<seq:020>-<first:020>-<last:020>[-<last seq:020>], times
  // offset by 2^62 to stay non-negative; the last seq only on a merged segment.
  std::string name = obj.key.substr(LogPrefix(stream).size());
  if ((name.size() != 62 && name.size() != 83) || name[20] != '-' || name[41] != '-') return std::nullopt;
  if (name.size() == 83 && name[62] != '-') return std::nullopt;
  try {
    LogSegment s;
    s.stream = stream;
    s.seq = std::stoull(name.substr(0, 20));
    s.first_time_us = static_cast<int64_t>(std::stoull(name.substr(21, 20)) - (1ull << 62));
    s.last_time_us = static_cast<int64_t>(std::stoull(name.substr(42, 20)) - (1ull << 62));
    s.stored_bytes = obj.size;
    if (name.size() == 83) {
      s.last_seq = std::stoull(name.substr(63, 20));
      if (s.last_seq <= s.seq) return std::nullopt;
    }
    return s;
  } catch (...) {
    return std::nullopt;
  }
}

std::string LogKey(const LogSegment& s) {
  std::string key = fmt::format("{}{:020}-{:020}-{:020}", LogPrefix(s.stream), s.seq,
                                static_cast<uint64_t>(s.first_time_us) + (1ull << 62),
                                static_cast<uint64_t>(s.last_time_us) + (1ull << 62));
  if (s.LastSeq() > s.seq) key += fmt::format("-{:020}", s.LastSeq());
  return key;
}

// Every segment of the stream stored, in order of seq (the widest first
// among those that start at the same seq).
Result<std::vector<LogSegment>> StoredLogSegments(storage::ObjectStore& store, const std::string& stream) {
  ASSIGN_OR_RETURN(auto objs, store.List(LogPrefix(stream)));
  std::vector<LogSegment> out;
  for (const auto& o : objs) {
    if (auto s = ParseLogKey(stream, o)) out.push_back(*s);
  }
  std::sort(out.begin(), out.end(), [](const LogSegment& a, const LogSegment& b) {
    return a.seq != b.seq ? a.seq < b.seq : a.LastSeq() > b.LastSeq();
  });
  return out;
}

// Splits stored segments into those a reader sees and those a merged
// segment already holds (left behind by a crash before their deletion).
// Only a merged segment covers others: two segments stored under one seq
// (a put that failed after storing, then its retry with more records) both
// stay visible, and readers drop the records they hold twice.
void SplitCovered(std::vector<LogSegment> stored, std::vector<LogSegment>& visible, std::vector<LogSegment>* covered) {
  uint64_t through = 0;  // the highest seq a merged segment listed so far holds
  for (auto& s : stored) {
    if (s.LastSeq() <= through) {
      if (covered) covered->push_back(std::move(s));
      continue;
    }
    if (s.LastSeq() > s.seq) through = s.LastSeq();
    visible.push_back(std::move(s));
  }
}

bool ValidStream(const std::string& s) { return ValidSnapshotId(s) && s.find(':') == std::string::npos; }

}  // namespace

Result<LogSegment> Repository::AppendLogSegment(const std::string& stream, int64_t first_time_us,
                                                int64_t last_time_us, std::span<const std::string_view> pieces) {
  if (!ValidStream(stream)) return Status(errors::kInvalidParameterValue, "bad log stream " + stream);
  if (last_time_us < first_time_us) return Status(errors::kInvalidParameterValue, "segment ends before it starts");
  std::lock_guard lock(impl_->log_mu);
  auto& next = impl_->next_seq[stream];
  if (next == 0) {
    ASSIGN_OR_RETURN(auto existing, StoredLogSegments(*impl_->store, stream));
    next = 1;
    for (const auto& s : existing) next = std::max(next, s.LastSeq() + 1);
  }
  LogSegment seg{stream, next, first_time_us, last_time_us, 0};
  // The number is used up even by a failed put, which may have stored the
  // object after all: the caller's retry must not share its seq.
  ++next;
  RETURN_IF_ERROR(impl_->PutStreamed(
      LogKey(seg), [&](const Impl::Sink& sink) { return EncodeLogSegmentTo(pieces, sink); }, &seg.stored_bytes));
  return seg;
}

Result<std::vector<LogSegment>> Repository::ListLogSegments(const std::string& stream, int64_t from_us,
                                                            int64_t to_us) {
  if (!ValidStream(stream)) return Status(errors::kInvalidParameterValue, "bad log stream " + stream);
  std::vector<LogSegment> visible, out;
  for (int attempt = 0; attempt < 2; ++attempt) {
    ASSIGN_OR_RETURN(auto stored, StoredLogSegments(*impl_->store, stream));
    visible.clear();
    SplitCovered(std::move(stored), visible, nullptr);
    // A listing taken while compaction swaps members for their merged
    // segment may miss both (a directory walk is not atomic): a gap in
    // the numbers is listed once more.
    bool gap = false;
    for (size_t k = 1; k < visible.size(); ++k) gap = gap || visible[k].seq > visible[k - 1].LastSeq() + 1;
    if (!gap) break;
  }
  for (auto& s : visible) {
    if (s.last_time_us >= from_us && s.first_time_us <= to_us) out.push_back(std::move(s));
  }
  return out;
}

Result<std::string> Repository::ReadLogSegment(const LogSegment& segment) {
  auto bytes = impl_->store->Get(LogKey(segment));
  if (!bytes.ok() && bytes.status().Is(errors::kObjectNotFound) && ValidStream(segment.stream)) {
    // Merged away since it was listed: the merged segment holds its records.
    ASSIGN_OR_RETURN(auto stored, StoredLogSegments(*impl_->store, segment.stream));
    std::vector<LogSegment> visible;
    SplitCovered(std::move(stored), visible, nullptr);
    for (const auto& s : visible) {
      if (s.seq <= segment.seq && segment.LastSeq() <= s.LastSeq() && LogKey(s) != LogKey(segment)) {
        return ReadLogSegment(s);
      }
    }
  }
  if (!bytes.ok()) return bytes.status().WithContext(LogKey(segment));
  auto plain = impl_->OpenObject(LogKey(segment), std::move(*bytes));
  auto payload = plain.ok() ? DecodeLogSegment(*plain) : Result<std::string>(plain.status());
  if (!payload.ok()) return payload.status().WithContext(LogKey(segment));
  return payload;
}

Result<uint64_t> Repository::DeleteLogSegmentsBefore(const std::string& stream, int64_t time_us) {
  if (!ValidStream(stream)) return Status(errors::kInvalidParameterValue, "bad log stream " + stream);
  ++impl_->log_rewrite_waiting;
  std::lock_guard rewrite(impl_->log_rewrite_mu);
  --impl_->log_rewrite_waiting;
  // Merged segments' leftovers too: they are past retention as well.
  ASSIGN_OR_RETURN(auto all, StoredLogSegments(*impl_->store, stream));
  std::vector<std::string> keys;
  for (const auto& s : all)
    if (s.last_time_us < time_us) keys.push_back(LogKey(s));
  RETURN_IF_ERROR(impl_->store->DeleteMany(keys));
  return static_cast<uint64_t>(keys.size());
}

Result<LogCompactionStats> Repository::CompactLog(const std::string& stream, const LogCompactionOptions& options) {
  if (!ValidStream(stream)) return Status(errors::kInvalidParameterValue, "bad log stream " + stream);
  std::lock_guard rewrite(impl_->log_rewrite_mu);
  // Compaction may run at idle priority (stratad runs it so): once
  // retention waits for it, it finishes at normal priority.
  std::optional<ScopedNormalPriority> lifted;
  auto lift_if_waited_for = [&] {
    if (!lifted && impl_->log_rewrite_waiting.load() > 0) lifted.emplace();
  };
  ASSIGN_OR_RETURN(auto stored, StoredLogSegments(*impl_->store, stream));
  std::vector<LogSegment> visible, covered;
  SplitCovered(std::move(stored), visible, &covered);
  LogCompactionStats stats;
  std::vector<std::string> leftovers;
  for (const auto& s : covered) leftovers.push_back(LogKey(s));
  RETURN_IF_ERROR(impl_->store->DeleteMany(leftovers));

  // A group: consecutive eligible segments, their stored objects (opened)
  // read one by one.
  struct Member {
    std::string object;
    size_t frames_at = 0, frames_size = 0;  // its zstd frames, within object
    uint64_t raw_bytes = 0;
    bool keep_frames = false;  // copied as they are, not compressed again
    std::string_view Frames() const { return std::string_view(object).substr(frames_at, frames_size); }
  };
  std::vector<LogSegment> group;
  std::vector<Member> members;
  uint64_t group_stored = 0, group_raw = 0;
  std::string scratch;  // a kept member's frames decoded, to check them
  auto write_group = [&]() -> Status {
    lift_if_waited_for();
    if (group.size() >= 2) {
      // Merged segments exist only in repositories that say so.
      RETURN_IF_ERROR(impl_->RaiseFormat());
      LogSegment merged{stream, group.front().seq, INT64_MAX, INT64_MIN, 0, group.back().LastSeq()};
      for (const auto& g : group) {
        merged.first_time_us = std::min(merged.first_time_us, g.first_time_us);
        merged.last_time_us = std::max(merged.last_time_us, g.last_time_us);
      }
      // Kept members' frames as they are; each run of other members as one
      // new frame at options.zstd_level. Concatenated frames decode to the
      // concatenated payloads, so the merged segment reads as one.
      std::vector<std::string> runs;
      runs.reserve(members.size());  // never reallocated: `frames` points into them
      std::vector<std::string_view> frames;
      std::string pending;
      auto close_run = [&]() -> Status {
        if (pending.empty()) return Status::Ok();
        runs.emplace_back();
        RETURN_IF_ERROR(CompressLogFrame(pending, options.zstd_level, runs.back()));
        frames.push_back(runs.back());
        pending.clear();
        return Status::Ok();
      };
      for (const auto& m : members) {
        if (!m.keep_frames) {
          RETURN_IF_ERROR(DecodeLogFramesTo(m.Frames(), m.raw_bytes, pending));
          continue;
        }
        RETURN_IF_ERROR(close_run());
        // Checked before its neighbours' records are tied to it: frames
        // that do not decode must not take a merged segment down with them.
        scratch.clear();
        RETURN_IF_ERROR(DecodeLogFramesTo(m.Frames(), m.raw_bytes, scratch));
        frames.push_back(m.Frames());
      }
      RETURN_IF_ERROR(close_run());
      RETURN_IF_ERROR(impl_->PutStreamed(
          LogKey(merged), [&](const Impl::Sink& sink) { return EncodeLogFramesTo(group_raw, frames, sink); },
          &merged.stored_bytes));
      std::vector<std::string> keys;
      for (const auto& g : group) keys.push_back(LogKey(g));
      // Durable first, deleted after: a crash between leaves covered members.
      RETURN_IF_ERROR(impl_->store->DeleteMany(keys));
      stats.segments_merged += group.size();
      ++stats.segments_written;
      stats.bytes_before += group_stored;
      stats.bytes_after += merged.stored_bytes;
    }
    group.clear();
    members.clear();
    group_stored = group_raw = 0;
    return Status::Ok();
  };
  for (const auto& s : visible) {
    lift_if_waited_for();
    const bool live_large = options.merge_large && s.LastSeq() == s.seq && s.stored_bytes >= options.small_stored_bytes;
    const bool eligible = (s.stored_bytes < options.small_stored_bytes || live_large) &&
                          s.last_time_us < options.before_us &&
                          s.last_time_us - s.first_time_us < options.max_span_us;
    if (!group.empty() && (!eligible || s.seq != group.back().LastSeq() + 1 ||
                           s.last_time_us - group.front().first_time_us >= options.max_span_us)) {
      RETURN_IF_ERROR(write_group());
    }
    if (!eligible) continue;
    auto bytes = impl_->store->Get(LogKey(s));
    auto plain = bytes.ok() ? impl_->OpenObject(LogKey(s), std::move(*bytes)) : Result<std::string>(bytes.status());
    if (!plain.ok()) return plain.status().WithContext(LogKey(s));
    auto frames = LogSegmentFramesOf(*plain);
    if (!frames.ok()) return frames.status().WithContext(LogKey(s));
    if (!group.empty() && group_raw + frames->raw_bytes > kMaxLogSegmentRawBytes) RETURN_IF_ERROR(write_group());
    Member m;
    m.frames_at = static_cast<size_t>(frames->frames.data() - plain->data());
    m.frames_size = frames->frames.size();
    m.raw_bytes = frames->raw_bytes;
    // A large live segment is at the live level (merge_large), and small
    // frames compress far better together.
    m.keep_frames = !live_large && m.raw_bytes >= options.keep_frames_raw_bytes &&
                    m.frames_size * options.keep_frames_ratio <= m.raw_bytes;
    m.object = std::move(*plain);
    members.push_back(std::move(m));
    group.push_back(s);
    group_stored += s.stored_bytes;
    group_raw += members.back().raw_bytes;
    // A group is written once it reaches the targets with two members at
    // least (large segments are merged in pairs).
    if (group.size() >= 2 &&
        (group_stored >= options.target_stored_bytes || group_raw >= options.target_raw_bytes)) {
      RETURN_IF_ERROR(write_group());
      // Bounded passes: retention waits for a running one, and a long
      // backlog (a first pass after an upgrade) is taken over several.
      if (stats.segments_written >= options.max_segments_written) {
        stats.more = true;
        return stats;
      }
    }
  }
  RETURN_IF_ERROR(write_group());
  return stats;
}

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

Result<std::string> Repository::TEST_ChunkId(std::string_view plain) const {
  ASSIGN_OR_RETURN(Hash h, impl_->ChunkId(plain));
  return std::string(reinterpret_cast<const char*>(h.data()), h.size());
}

RepoOptions RepoOptions::ForMemoryBudget(uint64_t bytes, int cpus) {
  RepoOptions o;
  // The lanes take a quarter of the budget, each in its batch and the
  // batch's frames; packs (an eighth each, filling and being stored)
  // another quarter. No more lanes than leave each a batch of 4 MiB: a
  // smaller unit splits a stretch of the file over more places in the packs
  // (more ranged reads for a restore) and pays the per-unit costs more often.
  const uint64_t most_lanes = std::max<uint64_t>(1, bytes / (32ull << 20));
  o.threads = static_cast<int>(std::clamp<uint64_t>(static_cast<uint64_t>(std::max(cpus, 1)), 1, most_lanes));
  o.pack_target_bytes = std::clamp<uint64_t>(bytes / 8, 1ull << 20, 32ull << 20);
  o.batch_bytes = std::clamp<uint64_t>(bytes / (8ull * static_cast<uint64_t>(o.threads)), 256ull << 10, 8ull << 20);
  const uint64_t most_restorers = std::max<uint64_t>(1, bytes / kRestoreThreadBytes);
  o.restore_threads = static_cast<int>(std::min<uint64_t>(2ull * static_cast<uint64_t>(o.threads), most_restorers));
  return o;
}

}  // namespace strata::repo
