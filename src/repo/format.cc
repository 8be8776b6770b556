#include "repo/format.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <zstd.h>

#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "repo/workers.h"

namespace strata::repo {
namespace {

constexpr std::string_view kIndexMagicV1 = "SIDX0001";
constexpr std::string_view kIndexMagicV2 = "SIDX0002";
constexpr std::string_view kIndexMagic = "SIDX0003";
constexpr size_t kFrameRecordSize = 8 + 4 + 4 + 1 + 4;  // offset, stored, decoded, codec, chunks
constexpr std::string_view kManifestMagic = "SMAN0001";
constexpr size_t kEntrySizeV1 = 32 + 8 + 4 + 4 + 1;
constexpr size_t kEntrySize = kEntrySizeV1 + 4 + 4;
constexpr uint32_t kMaxChunkBytes = 1u << 20;  // the largest chunk size a repository accepts
constexpr uint32_t kMaxFrameBytes = 64u << 20;

void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

void Seal(std::string& out) {
  Hash h = Sha256(out);
  out.append(reinterpret_cast<const char*>(h.data()), h.size());
}

// Hands an object to `sink` in pieces, hashing them as they pass; Finish
// appends the SHA-256 trailer that Unseal checks (the streamed Seal).
class SealingSink {
 public:
  explicit SealingSink(const std::function<Status(std::string_view)>& sink) : sink_(sink) {}
  Status Put(std::string_view piece) {
    sum_.Update(piece);
    return sink_(piece);
  }
  Status Finish() {
    Hash h = sum_.Final();
    return sink_(std::string_view(reinterpret_cast<const char*>(h.data()), h.size()));
  }

 private:
  const std::function<Status(std::string_view)>& sink_;
  Sha256Stream sum_;
};

// The body of a sealed object, or kCorruption if its checksum does not match.
Result<std::string_view> Unseal(std::string_view bytes, std::string_view magic, const char* what) {
  if (bytes.size() < magic.size() + 32 || bytes.substr(0, magic.size()) != magic) {
    return Status(errors::kCorruption, fmt::format("{} is not a Strata {} object", what, what));
  }
  std::string_view body = bytes.substr(0, bytes.size() - 32);
  Hash want = Sha256(body);
  if (std::memcmp(want.data(), bytes.data() + body.size(), 32) != 0) {
    return Status(errors::kCorruption, fmt::format("{} checksum mismatch", what));
  }
  return body.substr(magic.size());
}

}  // namespace

namespace {
// Fetched once, with a context per thread: SHA256() fetches the digest on
// every call in OpenSSL 3, a fifth of the cost of hashing a 4 KiB chunk.
const EVP_MD* Sha256Md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}
}  // namespace

Hash Sha256(std::string_view data) {
  Hash h;
  thread_local std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  unsigned int n = 0;
  if (!ctx || !Sha256Md() || EVP_DigestInit_ex2(ctx.get(), Sha256Md(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx.get(), data.data(), data.size()) != 1 || EVP_DigestFinal_ex(ctx.get(), h.data(), &n) != 1) {
    SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), h.data());
  }
  return h;
}

Sha256Stream::Sha256Stream() : ctx_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex2(static_cast<EVP_MD_CTX*>(ctx_), Sha256Md(), nullptr);
}
Sha256Stream::~Sha256Stream() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }
void Sha256Stream::Update(std::string_view data) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data.data(), data.size());
}
Hash Sha256Stream::Final() {
  Hash h;
  unsigned int n = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), h.data(), &n);
  return h;
}

std::string ToHex(const Hash& h) {
  std::string out;
  for (uint8_t b : h) out += fmt::format("{:02x}", b);
  return out;
}

namespace {

// SIDX0002: one record per chunk, each repeating its frame's fields.
std::string EncodeIndexV2(const std::vector<IndexEntry>& entries) {
  std::string out(kIndexMagicV2);
  out.reserve(kIndexMagicV2.size() + entries.size() * kEntrySize + 32);
  for (const auto& e : entries) {
    out.append(reinterpret_cast<const char*>(e.hash.data()), 32);
    PutU64(out, e.offset);
    PutU32(out, e.stored_size);
    PutU32(out, e.raw_size);
    out.push_back(static_cast<char>(e.codec));
    PutU32(out, e.frame_raw_size);
    PutU32(out, e.in_frame);
  }
  Seal(out);
  return out;
}

// Sizes a restore allocates: an index that passed its checksum but was
// written wrong must fail as corrupt, not exhaust memory.
Status CheckSizes(const IndexEntry& e) {
  if (e.in_frame > e.frame_raw_size || e.raw_size > e.frame_raw_size - e.in_frame) {
    return Status(errors::kCorruption, "index places a chunk outside its frame");
  }
  if (e.raw_size > kMaxChunkBytes || e.frame_raw_size > kMaxFrameBytes || e.stored_size > kMaxFrameBytes + 1024) {
    return Status(errors::kCorruption, "index names a chunk or frame larger than any Strata writes");
  }
  return Status::Ok();
}

Result<std::vector<IndexEntry>> DecodeIndexV3(std::string_view body) {
  if (body.size() < 12) return Status(errors::kCorruption, "index is truncated");
  const uint32_t frames = GetU32(body.data()), chunks = GetU32(body.data() + 4), zlen = GetU32(body.data() + 8);
  const uint64_t table = uint64_t{frames} * kFrameRecordSize + uint64_t{chunks} * 4;
  if (body.size() != 12 + uint64_t{zlen} + uint64_t{chunks} * 32 || table > uint64_t{chunks} * 64 + 64) {
    return Status(errors::kCorruption, "index sizes do not add up");
  }
  std::string fields(table, '\0');
  size_t n = ZSTD_decompress(fields.data(), fields.size(), body.data() + 12, zlen);
  if (ZSTD_isError(n) || n != table) return Status(errors::kCorruption, "index does not decompress");
  const char* hashes = body.data() + 12 + zlen;
  std::vector<IndexEntry> out(chunks);
  size_t c = 0;
  for (uint32_t f = 0; f < frames; ++f) {
    const char* p = fields.data() + size_t{f} * kFrameRecordSize;
    const uint64_t offset = GetU64(p);
    const uint32_t stored = GetU32(p + 8), decoded = GetU32(p + 12), count = GetU32(p + 17);
    const uint8_t codec = static_cast<uint8_t>(p[16]);
    if (codec > 1) return Status(errors::kCorruption, "index names an unknown codec");
    if (count > chunks - c) return Status(errors::kCorruption, "index frames name more chunks than it holds");
    uint32_t in_frame = 0;
    for (uint32_t k = 0; k < count; ++k, ++c) {
      IndexEntry& e = out[c];
      std::memcpy(e.hash.data(), hashes + c * 32, 32);
      e.offset = offset;
      e.stored_size = stored;
      e.raw_size = GetU32(fields.data() + size_t{frames} * kFrameRecordSize + c * 4);
      e.codec = static_cast<Codec>(codec);
      e.frame_raw_size = decoded;
      e.in_frame = in_frame;
      RETURN_IF_ERROR(CheckSizes(e));
      in_frame += e.raw_size;
    }
  }
  if (c != chunks) return Status(errors::kCorruption, "index frames name fewer chunks than it holds");
  return out;
}

}  // namespace

// SIDX0003: the frames (offset, stored and decoded size, codec, how many
// chunks) and every chunk's size, zstd-compressed, then the chunk ids in
// the same order, raw (they do not compress). A frame's chunks are adjacent
// and laid end to end in it, so their places are not stored. On a pgbench
// cluster that is 33 bytes a chunk where SIDX0002 took 57. Entries that do
// not follow that layout (none Strata writes) are stored as SIDX0002.
std::string EncodeIndex(const std::vector<IndexEntry>& entries) {
  std::string fields, chunk_sizes, hashes;
  fields.reserve(entries.size() / 8 * kFrameRecordSize + kFrameRecordSize);
  chunk_sizes.reserve(entries.size() * 4);
  hashes.reserve(entries.size() * 32);
  uint32_t frames = 0;
  for (size_t i = 0; i < entries.size();) {
    const IndexEntry& first = entries[i];
    size_t j = i;
    uint32_t in_frame = 0;
    for (; j < entries.size() && entries[j].offset == first.offset && entries[j].framed &&
           entries[j].stored_size == first.stored_size && entries[j].codec == first.codec &&
           entries[j].frame_raw_size == first.frame_raw_size && entries[j].in_frame == in_frame;
         ++j) {
      in_frame += entries[j].raw_size;
    }
    if (j == i || !first.framed) return EncodeIndexV2(entries);
    PutU64(fields, first.offset);
    PutU32(fields, first.stored_size);
    PutU32(fields, first.frame_raw_size);
    fields.push_back(static_cast<char>(first.codec));
    PutU32(fields, static_cast<uint32_t>(j - i));
    for (size_t k = i; k < j; ++k) {
      PutU32(chunk_sizes, entries[k].raw_size);
      hashes.append(reinterpret_cast<const char*>(entries[k].hash.data()), 32);
    }
    ++frames;
    i = j;
  }
  fields += chunk_sizes;
  std::string z(ZSTD_compressBound(fields.size()), '\0');
  size_t zn = ZSTD_compress(z.data(), z.size(), fields.data(), fields.size(), 3);
  if (ZSTD_isError(zn)) return EncodeIndexV2(entries);
  std::string out(kIndexMagic);
  out.reserve(out.size() + 12 + zn + hashes.size() + 32);
  PutU32(out, frames);
  PutU32(out, static_cast<uint32_t>(entries.size()));
  PutU32(out, static_cast<uint32_t>(zn));
  out.append(z.data(), zn);
  out += hashes;
  Seal(out);
  return out;
}

Result<std::vector<IndexEntry>> DecodeIndex(std::string_view bytes) {
  if (bytes.substr(0, kIndexMagic.size()) == kIndexMagic) {
    ASSIGN_OR_RETURN(auto body, Unseal(bytes, kIndexMagic, "index"));
    return DecodeIndexV3(body);
  }
  const bool v1 = bytes.substr(0, kIndexMagicV1.size()) == kIndexMagicV1;
  const size_t entry_size = v1 ? kEntrySizeV1 : kEntrySize;
  ASSIGN_OR_RETURN(auto body, Unseal(bytes, v1 ? kIndexMagicV1 : kIndexMagicV2, "index"));
  if (body.size() % entry_size != 0) return Status(errors::kCorruption, "index has a partial entry");
  std::vector<IndexEntry> out(body.size() / entry_size);
  for (size_t i = 0; i < out.size(); ++i) {
    const char* p = body.data() + i * entry_size;
    std::memcpy(out[i].hash.data(), p, 32);
    out[i].offset = GetU64(p + 32);
    out[i].stored_size = GetU32(p + 40);
    out[i].raw_size = GetU32(p + 44);
    uint8_t codec = static_cast<uint8_t>(p[48]);
    if (codec > 1) return Status(errors::kCorruption, "index names an unknown codec");
    out[i].codec = static_cast<Codec>(codec);
    if (v1) {
      out[i].frame_raw_size = out[i].raw_size;
      out[i].framed = false;
    } else {
      out[i].frame_raw_size = GetU32(p + 49);
      out[i].in_frame = GetU32(p + 53);
    }
    RETURN_IF_ERROR(CheckSizes(out[i]));
  }
  return out;
}

constexpr std::string_view kLogMagic = "SLOG0001";
constexpr size_t kParallelLogBytes = 4 << 20;
// A live segment's frames: small enough that two threads share a 16 MiB
// segment evenly, large enough that zstd's level-1 window (512 KiB) loses
// next to nothing at their starts.
constexpr size_t kLogFrameBytes = 2 << 20;

namespace {

// The payload cut into frame inputs: a piece of kLogFrameBytes or more is
// read in place (in parts of at most kLogFrameBytes); runs of smaller pieces
// are gathered into `gathered` (sized first, so views into it stay valid).
std::vector<std::string_view> PlanLogFrames(std::span<const std::string_view> pieces, std::string& gathered) {
  size_t small = 0;
  for (auto p : pieces) small += p.size() < kLogFrameBytes ? p.size() : 0;
  gathered.clear();
  gathered.reserve(small);
  std::vector<std::string_view> frames;
  size_t run_start = 0;
  auto close_run = [&] {
    if (gathered.size() > run_start) frames.emplace_back(gathered.data() + run_start, gathered.size() - run_start);
    run_start = gathered.size();
  };
  for (auto p : pieces) {
    if (p.size() < kLogFrameBytes) {
      gathered.append(p);
      if (gathered.size() - run_start >= kLogFrameBytes) close_run();
      continue;
    }
    close_run();
    const size_t parts = (p.size() + kLogFrameBytes - 1) / kLogFrameBytes, part = (p.size() + parts - 1) / parts;
    for (size_t at = 0; at < p.size(); at += part) frames.push_back(p.substr(at, part));
  }
  close_run();
  return frames;
}

Status ZstdFailure(size_t n) {
  // Never an empty body under a valid checksum: the capture must keep the
  // segment's records and try again, not count them as stored.
  return Status(errors::kIoError, std::string("compressing a log segment: ") + ZSTD_getErrorName(n));
}

}  // namespace

size_t ZstdCompressKept(char* dst, size_t capacity, std::string_view src, int level) {
  thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
  return ZSTD_compressCCtx(cctx.get(), dst, capacity, src.data(), src.size(), level);
}

Status EncodeLogSegmentTo(std::span<const std::string_view> pieces,
                          const std::function<Status(std::string_view)>& sink) {
  constexpr int kLiveLevel = 1;  // keeps the capture's lag low; compaction may recompress
  size_t total = 0;
  for (auto p : pieces) total += p.size();
  // Kept by the thread (a capture's shipper stores every segment of its
  // instance): fresh 16 MiB buffers per segment were page faults and
  // zeroing worth most of a backlog's drain.
  thread_local std::string z, gathered;
  std::vector<std::string_view> frames;
  if (total < kParallelLogBytes) {
    std::string_view input = pieces.size() == 1 ? pieces[0] : std::string_view{};
    if (pieces.size() > 1) {
      gathered.clear();
      gathered.reserve(total);
      for (auto p : pieces) gathered.append(p);
      input = gathered;
    }
    if (z.size() < ZSTD_compressBound(total)) z.resize(ZSTD_compressBound(total));
    size_t n = ZstdCompressKept(z.data(), z.size(), input, kLiveLevel);
    if (ZSTD_isError(n)) return ZstdFailure(n);
    frames.emplace_back(z.data(), n);
    return EncodeLogFramesTo(total, frames, sink);
  }
  // A backlog drains as fast as this compresses: frames on two threads
  // (kept with the calling thread), each into its own part of z. A reader
  // decompresses the frames one after another (ZSTD_decompress does).
  thread_local Workers workers(2);
  std::vector<std::string_view> inputs = PlanLogFrames(pieces, gathered);
  std::vector<size_t> offset(inputs.size() + 1, 0), written(inputs.size(), 0);
  for (size_t i = 0; i < inputs.size(); ++i) offset[i + 1] = offset[i] + ZSTD_compressBound(inputs[i].size());
  if (z.size() < offset.back()) z.resize(offset.back());
  // Each thread takes a run of frames holding its share of the bytes.
  std::vector<size_t> first{0};
  size_t done = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    done += inputs[i].size();
    if (done * workers.threads() >= total * first.size() && first.size() < static_cast<size_t>(workers.threads())) {
      first.push_back(i + 1);
    }
  }
  while (first.size() <= static_cast<size_t>(workers.threads())) first.push_back(inputs.size());
  char* const into = z.data();  // named here: in the lambda, `z` would be the running thread's own
  workers.For(
      workers.threads(),
      [&](size_t begin, size_t end) {
        for (size_t i = first[begin]; i < first[end]; ++i) {
          written[i] = ZstdCompressKept(into + offset[i], offset[i + 1] - offset[i], inputs[i], kLiveLevel);
        }
      },
      /*serial_below=*/2);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (ZSTD_isError(written[i])) return ZstdFailure(written[i]);
    frames.emplace_back(z.data() + offset[i], written[i]);
  }
  return EncodeLogFramesTo(total, frames, sink);
}

Result<LogSegmentFrames> LogSegmentFramesOf(std::string_view bytes) {
  ASSIGN_OR_RETURN(auto body, Unseal(bytes, kLogMagic, "log segment"));
  if (body.size() < 8) return Status(errors::kCorruption, "log segment is truncated");
  uint64_t raw = GetU64(body.data());
  if (raw > kMaxLogSegmentRawBytes) return Status(errors::kCorruption, "log segment size is implausible");
  return LogSegmentFrames{raw, body.substr(8)};
}

Status DecodeLogFramesTo(std::string_view frames, uint64_t raw_bytes, std::string& out) {
  const size_t at = out.size();
  out.resize(at + raw_bytes);
  size_t n = ZSTD_decompress(out.data() + at, raw_bytes, frames.data(), frames.size());
  if (ZSTD_isError(n) || n != raw_bytes) {
    out.resize(at);
    return Status(errors::kCorruption, "log segment does not decompress");
  }
  return Status::Ok();
}

Status CompressLogFrame(std::string_view payload, int level, std::string& out) {
  out.resize(ZSTD_compressBound(payload.size()));
  size_t n = ZstdCompressKept(out.data(), out.size(), payload, level);
  if (ZSTD_isError(n)) return ZstdFailure(n);
  out.resize(n);
  return Status::Ok();
}

Status EncodeLogFramesTo(uint64_t raw_bytes, std::span<const std::string_view> frames,
                         const std::function<Status(std::string_view)>& sink) {
  std::string header(kLogMagic);
  PutU64(header, raw_bytes);
  SealingSink out(sink);
  RETURN_IF_ERROR(out.Put(header));
  for (auto f : frames) RETURN_IF_ERROR(out.Put(f));
  return out.Finish();
}

Result<std::string> DecodeLogSegment(std::string_view bytes) {
  ASSIGN_OR_RETURN(auto segment, LogSegmentFramesOf(bytes));
  std::string out;
  RETURN_IF_ERROR(DecodeLogFramesTo(segment.frames, segment.raw_bytes, out));
  return out;
}

uint64_t Manifest::LogicalBytes() const {
  uint64_t n = 0;
  for (const auto& f : files) n += f.size;
  return n;
}

uint64_t Manifest::ChunkCount() const {
  uint64_t n = 0;
  for (const auto& f : files) n += f.chunks.size();
  return n;
}

Status EncodeManifestTo(const Manifest& m, const std::function<Status(std::string_view)>& sink) {
  nlohmann::json header = {{"id", m.id}, {"chunk_size", m.chunk_size}, {"metadata", m.metadata}};
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : m.files) {
    files.push_back({{"path", f.path}, {"size", f.size}, {"mode", f.mode}, {"chunks", f.chunks.size()}});
  }
  header["files"] = files;
  std::string text = header.dump();
  constexpr size_t kPieceBytes = 1 << 20;
  std::string piece(kManifestMagic);
  PutU32(piece, static_cast<uint32_t>(text.size()));
  piece += text;
  SealingSink out(sink);
  auto emit = [&]() -> Status {
    Status st = out.Put(piece);
    piece.clear();
    return st;
  };
  for (const auto& f : m.files) {
    for (const auto& h : f.chunks) {
      piece.append(reinterpret_cast<const char*>(h.data()), 32);
      if (piece.size() >= kPieceBytes) RETURN_IF_ERROR(emit());
    }
  }
  if (!piece.empty()) RETURN_IF_ERROR(emit());
  return out.Finish();
}

std::string EncodeManifest(const Manifest& m) {
  std::string out;
  out.reserve(m.ChunkCount() * 32 + 4096);
  // Dropped: EncodeManifestTo fails only when its sink does, and this one
  // (appending to a string) never does.
  (void)EncodeManifestTo(m, [&](std::string_view piece) {
    out += piece;
    return Status::Ok();
  });
  return out;
}

Result<Manifest> DecodeManifest(std::string_view bytes) {
  ASSIGN_OR_RETURN(auto body, Unseal(bytes, kManifestMagic, "manifest"));
  if (body.size() < 4) return Status(errors::kCorruption, "manifest is truncated");
  uint32_t len = GetU32(body.data());
  if (body.size() < 4 + uint64_t{len}) return Status(errors::kCorruption, "manifest is truncated");
  auto header = nlohmann::json::parse(body.substr(4, len), nullptr, false);
  if (header.is_discarded() || !header.is_object()) {
    return Status(errors::kCorruption, "manifest header is not JSON");
  }
  Manifest m;
  std::string_view hashes = body.substr(4 + len);
  size_t pos = 0;
  try {
    m.id = header.at("id").get<std::string>();
    m.chunk_size = header.at("chunk_size").get<uint32_t>();
    m.metadata = header.at("metadata").get<std::map<std::string, std::string>>();
    for (const auto& f : header.at("files")) {
      ManifestFile mf;
      mf.path = f.at("path").get<std::string>();
      mf.size = f.at("size").get<uint64_t>();
      mf.mode = f.at("mode").get<uint32_t>();
      uint64_t n = f.at("chunks").get<uint64_t>();
      if ((hashes.size() - pos) / 32 < n) return Status(errors::kCorruption, "manifest is missing hashes");
      const auto* first = reinterpret_cast<const Hash*>(hashes.data() + pos);
      static_assert(sizeof(Hash) == 32);
      mf.chunks.assign(first, first + n);
      pos += n * 32;
      m.files.push_back(std::move(mf));
    }
  } catch (const nlohmann::json::exception& e) {
    return Status(errors::kCorruption, fmt::format("manifest header: {}", e.what()));
  }
  if (pos != hashes.size()) return Status(errors::kCorruption, "manifest has trailing bytes");
  return m;
}

}  // namespace strata::repo
