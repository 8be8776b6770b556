// Pack writing: new chunks grouped into frames, compressed (and sealed),
// and streamed into packs and their indexes.
#include "repo/pack_writer.h"

#include <zstd.h>

#include <algorithm>
#include <array>

#include "common/ids.h"
#include "common/task_pool.h"
#include "repo/workers.h"

namespace strata::repo {

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

// Compress first, then seal: ciphertext does not compress.
void Repository::Impl::EncodeFrame(std::string_view raw, EncodedFrame& out) const {
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

size_t Repository::Impl::EncodeFrames(const std::vector<std::pair<Hash, std::string_view>>& chunks,
                                      Workers* workers, std::vector<EncodedFrame>& frames,
                                      std::vector<uint8_t> incompressible) const {
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

Repository::Impl::PackWriter::PackWriter(Impl* repo)
    : repo_(repo), block_bytes_(std::min<uint64_t>(kBlockBytes, repo->options.pack_target_bytes)) {
  store_thread_ = std::thread([this] { StoreLoop(); });
}

Repository::Impl::PackWriter::~PackWriter() {
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

bool Repository::Impl::PackWriter::Claim(const Hash& h) {
  std::lock_guard lock(mu_);
  // Under mu_, and the store thread indexes a pack before it drops the
  // pack's claims: a chunk is never both unclaimed and unknown between.
  if (pending_.count(h) || repo_->Known(h)) return false;
  pending_.insert(h);
  return true;
}

Status Repository::Impl::PackWriter::Add(const std::vector<EncodedFrame>& frames, size_t n) {
  for (size_t k = 0; k < n; ++k) RETURN_IF_ERROR(frames[k].status);
  std::lock_guard add_lock(add_mu_);
  {
    std::lock_guard lock(mu_);
    RETURN_IF_ERROR(status_);
  }
  for (size_t k = 0; k < n; ++k) RETURN_IF_ERROR(AddLocked(frames[k]));
  return Status::Ok();
}

Status Repository::Impl::PackWriter::Finish() {
  {
    std::lock_guard add_lock(add_mu_);
    if (pack_bytes_ > 0) RETURN_IF_ERROR(Send(true));
  }
  std::unique_lock lock(mu_);
  idle_.wait(lock, [this] { return queue_.empty() && !busy_; });
  return status_;
}

Status Repository::Impl::PackWriter::AddLocked(const EncodedFrame& frame) {
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

Status Repository::Impl::PackWriter::Send(bool ends_pack) {
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

void Repository::Impl::PackWriter::StoreLoop() {
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

Status Repository::Impl::PackWriter::Store(const Block& block, std::unique_ptr<storage::ObjectWriter>& pack,
                                           std::string& pack_id) {
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

}  // namespace strata::repo
