// Private to repo/: what the repository's parts share. repo.h is the
// layer's public header; this one is included only by repo/'s own .cc files.
//
//   repo.cc            opening (config, format, keys) and the shared object
//                      helpers: sealing, manifests, indexes, frame decoding
//   pack_writer.h/.cc  new chunks grouped into frames, encoded, and streamed
//                      into packs and their indexes
//   snapshot_writer.cc taking a snapshot (full or incremental) and the
//                      manifest-level operations (get, list, copy, delete)
//   restore.cc         writing a snapshot's files back (delta, direct I/O)
//   log_segments.cc    the change-log segment store: append, list, read,
//                      retention and compaction
//   maintenance.cc     verify, garbage collection, stats and sizes
#pragma once

#include <atomic>
#include <cctype>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json_fwd.hpp>

#include "repo/chunk_index.h"
#include "repo/crypto.h"
#include "repo/format.h"
#include "repo/repo.h"

namespace strata::repo {

class Workers;

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
inline constexpr int kFormatPlainV1 = 1;
inline constexpr int kFormatPlain = 7;
inline constexpr int kFormatEncrypted = 8;
// The wrapped-keys object's own version, so its layout can change (key
// rotation, more wrapped keys) without a new repository format.
inline constexpr int kKeysFormat = 1;
// An encrypted index, manifest or change-log segment: this magic, then the
// sealed (nonce, ciphertext, tag) plain encoding of the object.
inline constexpr std::string_view kSealedObjectMagic = "SENC0001";

inline std::string PackKey(const std::string& id) { return "packs/" + id; }
inline std::string IndexKey(const std::string& id) { return "index/" + id; }
inline std::string ManifestKey(const std::string& id) { return "snapshots/" + id; }
inline std::string KeysKey(const std::string& key_id) { return "keys/" + key_id; }

// AADs: what a sealed blob is for. A chunk is bound to its id, an object to
// its key, the wrapped keys to their key id: moving any of them elsewhere
// makes them fail to authenticate.
inline std::string ChunkAad(const Hash& id) {
  return "strata chunk v1 " + std::string(reinterpret_cast<const char*>(id.data()), id.size());
}
// Frames are sealed alike wherever they sit: every chunk taken from one is
// checked against its keyed id, which a frame moved or swapped fails.
inline constexpr std::string_view kFrameAad = "strata frame v1";
inline std::string ObjectAad(const std::string& key) { return "strata object v1 " + key; }
inline std::string KeysContext(const std::string& key_id) { return "strata repository keys v1 " + key_id; }

inline bool ValidSnapshotId(const std::string& id) {
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

// Whether zstd will find little to take out of a chunk (pack_writer.cc).
bool LooksIncompressible(std::string_view chunk);

// Decoded frames a restore thread has read (restore.cc).
class FrameCache;

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
                                  std::string buffer = {}) const;
  // The chunk at `loc` in its decoded frame, if it is what `id` names.
  static std::optional<std::string_view> ChunkIn(const std::string& frame, const Location& loc) {
    if (loc.in_frame > frame.size() || loc.raw_size > frame.size() - loc.in_frame) return std::nullopt;
    return std::string_view(frame).substr(loc.in_frame, loc.raw_size);
  }

  // Walks a pack's index entries in order, decoding each frame once for all
  // its chunks (a frame's entries are adjacent in its index; maintenance.cc).
  class PackChunks;

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
  void EncodeFrame(std::string_view raw, EncodedFrame& out) const;

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

  Status LoadIndexes();

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
  void ReadFrames(const std::vector<Hash>& ids, size_t i, size_t end, const Location& loc, FrameCache& cache);

  Result<Manifest> ReadManifest(const std::string& id);
  // An object handed to `produce`'s sink in pieces, streamed to the store
  // and, encrypted, sealed as it goes: a large database's manifest (32 bytes
  // per chunk) or a 16 MiB change-log segment is never held a second time.
  // `stored`: the object's size in the store.
  using Sink = std::function<Status(std::string_view)>;
  Status PutStreamed(const std::string& key, const std::function<Status(const Sink&)>& produce,
                     uint64_t* stored = nullptr);

  Status WriteManifest(const Manifest& m) {
    return PutStreamed(ManifestKey(m.id), [&](const Sink& sink) { return EncodeManifestTo(m, sink); });
  }

  // Streams new chunks into packs (pack_writer.h).
  class PackWriter;

  // Groups chunks into frames of up to options.frame_bytes, in the order
  // given, those that look incompressible apart from the rest, and encodes
  // them on the workers into frames[0, count); returns count. A frame's
  // chunks are in order, and frames are in the order of their first chunk,
  // so a restore still reads a stretch of a file from adjacent frames.
  // `frames` keeps its buffers from call to call.
  // `incompressible[k]`: LooksIncompressible(chunks[k]), if the caller has
  // it already; empty: worked out here. `workers` null: all on this thread.
  size_t EncodeFrames(const std::vector<std::pair<Hash, std::string_view>>& chunks, Workers* workers,
                      std::vector<EncodedFrame>& frames, std::vector<uint8_t> incompressible = {}) const;

  // A snapshot's lane (snapshot_writer.cc).
  struct Lane;
  Status StoreUnit(const FileSource& f, uint32_t cs, const std::vector<Piece>& pieces,
                   std::vector<Hash>& chunks, PackWriter& writer, Lane& lane);
};

}  // namespace strata::repo
