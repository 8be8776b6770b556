// The repository's on-storage encodings: chunk hashes, index and manifest
// objects. Every object ends with the SHA-256 of everything before it, so a
// flipped byte anywhere is found when the object is read.
#pragma once

#include <array>
#include <cstring>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace strata::repo {

using Hash = std::array<uint8_t, 32>;

struct HashHasher {
  size_t operator()(const Hash& h) const {
    size_t v;
    static_assert(sizeof v <= sizeof(Hash));
    std::memcpy(&v, h.data(), sizeof v);
    return v;
  }
};

Hash Sha256(std::string_view data);
std::string ToHex(const Hash& h);

// SHA-256 of bytes given in pieces.
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void Update(std::string_view data);
  Hash Final();

 private:
  void* ctx_;  // EVP_MD_CTX
};

enum class Codec : uint8_t { kRaw = 0, kZstd = 1 };

// A chunk's place in a pack. Chunks are stored in frames: runs of chunks
// compressed (and sealed) together, because zstd on 4 KiB alone compresses
// database pages half as well and half as fast as on tens of KiB. Every chunk
// of a frame has an entry with the frame's offset, stored size and codec.
// Format-1 indexes (SIDX0001) hold one chunk per frame, sealed under the
// chunk's own id (`framed` false).
struct IndexEntry {
  Hash hash{};
  uint64_t offset = 0;       // the frame's, in the pack
  uint32_t stored_size = 0;  // the frame's
  uint32_t raw_size = 0;     // the chunk's
  Codec codec = Codec::kRaw;
  uint32_t frame_raw_size = 0;  // the frame's decoded size
  uint32_t in_frame = 0;        // the chunk's offset in the decoded frame
  bool framed = true;
};

std::string EncodeIndex(const std::vector<IndexEntry>& entries);
Result<std::vector<IndexEntry>> DecodeIndex(std::string_view bytes);

struct ManifestFile {
  std::string path;
  uint64_t size = 0;
  uint32_t mode = 0600;
  std::vector<Hash> chunks;
};

struct Manifest {
  std::string id;
  uint32_t chunk_size = 0;
  std::map<std::string, std::string> metadata;
  std::vector<ManifestFile> files;
  uint64_t LogicalBytes() const;
  uint64_t ChunkCount() const;
};

// A change-log segment object (a capture's live segment): the payload (the
// concatenation of `pieces`) zstd-compressed at level 1, checksummed, handed
// to `sink` in pieces (checksum last), compressed into buffers the calling
// thread keeps; a payload of 4 MiB or more as several frames on two threads,
// reading large pieces in place.
Status EncodeLogSegmentTo(std::span<const std::string_view> pieces,
                          const std::function<Status(std::string_view)>& sink);
Result<std::string> DecodeLogSegment(std::string_view bytes);
// A stored log segment's zstd frames (a view into `bytes`, checksum
// checked) and the payload size they decode to.
struct LogSegmentFrames {
  uint64_t raw_bytes = 0;
  std::string_view frames;
};
Result<LogSegmentFrames> LogSegmentFramesOf(std::string_view bytes);
// A segment's payload is at most this large (a sanity bound for readers).
inline constexpr uint64_t kMaxLogSegmentRawBytes = 1ull << 34;
// Appends what `frames` decode to to `out`: kCorruption unless that is
// exactly raw_bytes.
Status DecodeLogFramesTo(std::string_view frames, uint64_t raw_bytes, std::string& out);
// `payload` as one zstd frame at `level`, into `out` (replacing it).
Status CompressLogFrame(std::string_view payload, int level, std::string& out);
// A segment made of other segments' frames, as they are: concatenated zstd
// frames decode to the concatenated payloads, so merging needs no zstd.
Status EncodeLogFramesTo(uint64_t raw_bytes, std::span<const std::string_view> frames,
                         const std::function<Status(std::string_view)>& sink);
// ZSTD_compressCCtx with a context the calling thread keeps (a fresh one is
// hundreds of KiB of fresh memory): the compressed size, or a zstd error
// code (ZSTD_isError).
size_t ZstdCompressKept(char* dst, size_t capacity, std::string_view src, int level);

std::string EncodeManifest(const Manifest& m);
// The same bytes handed to `sink` in pieces of about 1 MiB, checksum last:
// a manifest of a large database (32 bytes per chunk) is written without
// being held twice. The first failing sink call's status is returned.
Status EncodeManifestTo(const Manifest& m, const std::function<Status(std::string_view)>& sink);
Result<Manifest> DecodeManifest(std::string_view bytes);

}  // namespace strata::repo
