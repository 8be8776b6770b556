// Opening a repository (its config, format and keys) and the object
// helpers every part shares: frame decoding, indexes, manifests, streamed
// (and sealed) puts. The parts: see repo_internal.h.
#include "repo/repo.h"

#include <zstd.h>

#include <algorithm>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "repo/repo_internal.h"

namespace strata::repo {
namespace {

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

}  // namespace

Result<std::string> Repository::Impl::DecodeFrame(const Hash& id, const Location& loc, std::string_view stored,
                                                  std::string buffer) const {
  if (enc) {
    auto opened = crypto::Open(enc->data_key, stored, loc.framed ? std::string(kFrameAad) : ChunkAad(id));
    if (!opened.ok()) return Status(errors::kCorruption, "chunk does not authenticate");
    RETURN_IF_ERROR(Decompress(loc, *opened, buffer));
    return buffer;
  }
  RETURN_IF_ERROR(Decompress(loc, stored, buffer));
  return buffer;
}

Status Repository::Impl::LoadIndexes() {
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


Result<Manifest> Repository::Impl::ReadManifest(const std::string& id) {
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

Status Repository::Impl::PutStreamed(const std::string& key, const std::function<Status(const Sink&)>& produce,
                                     uint64_t* stored) {
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
