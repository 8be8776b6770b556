// The repository's cryptography, over OpenSSL: AES-256-GCM sealing of chunk
// blobs and objects, HMAC-SHA256 chunk ids, and random keys and nonces.
// Internal to repo/; the public face of encryption is the Keyring in repo.h.
//
// A sealed blob is   nonce (12 bytes) | ciphertext | tag (16 bytes)
// with a fresh random nonce each time: the same plaintext sealed twice gives
// two different blobs. The caller's associated data (AAD) is authenticated
// but not stored; opening with a different AAD fails like a flipped byte, which
// is what binds a blob to the chunk id or object key it was sealed for.
//
// Random 96-bit nonces stay safe for 2^32 seals under one key (NIST SP
// 800-38D 8.3); at 4 KiB chunks that is 16 TiB of distinct chunk data per
// data key. Garbage collection moves sealed chunks without re-sealing them.
//
// Thread safety: every function may be called from any thread; the OpenSSL
// contexts they use are per thread.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "repo/format.h"

namespace strata::repo::crypto {

inline constexpr size_t kKeyBytes = 32;
inline constexpr size_t kNonceBytes = 12;
inline constexpr size_t kTagBytes = 16;
inline constexpr size_t kSealOverhead = kNonceBytes + kTagBytes;

// A 256-bit secret, wiped from memory when it goes away.
class SecretKey {
 public:
  SecretKey() { bytes_.fill(0); }
  explicit SecretKey(std::string_view raw);  // raw.size() must be kKeyBytes
  SecretKey(const SecretKey& other) = default;
  SecretKey& operator=(const SecretKey& other) = default;
  ~SecretKey();
  const uint8_t* data() const { return bytes_.data(); }
  std::string_view view() const { return {reinterpret_cast<const char*>(bytes_.data()), bytes_.size()}; }

  // A new key from the operating system's CSPRNG (RAND_bytes); kInternalFailure
  // if OpenSSL cannot seed it.
  static Result<SecretKey> Random();

 private:
  std::array<uint8_t, kKeyBytes> bytes_;
};

// Appends Seal(key, plain, aad) to `out`. Fails only if the CSPRNG does.
Status SealTo(const SecretKey& key, std::string_view plain, std::string_view aad, std::string& out);
Result<std::string> Seal(const SecretKey& key, std::string_view plain, std::string_view aad);
// The plaintext, or kCorruption if the blob is truncated or does not
// authenticate under this key and AAD (tampered, swapped, or another key).
Result<std::string> Open(const SecretKey& key, std::string_view sealed, std::string_view aad);

// Seals a stream in pieces into exactly the blob Seal gives (nonce |
// ciphertext | tag), so an object too large to hold twice (a manifest) is
// sealed as it is written. Open reads it back whole.
class StreamSealer {
 public:
  // Appends the nonce to `out`.
  static Result<std::unique_ptr<StreamSealer>> Begin(const SecretKey& key, std::string_view aad, std::string& out);
  ~StreamSealer();
  StreamSealer(const StreamSealer&) = delete;
  StreamSealer& operator=(const StreamSealer&) = delete;
  // Appends the ciphertext of `plain` to `out`.
  Status Update(std::string_view plain, std::string& out);
  // Appends the tag; the sealer is spent.
  Status Finish(std::string& out);

 private:
  StreamSealer() = default;
  void* ctx_ = nullptr;  // EVP_CIPHER_CTX
};

// HMAC-SHA256(key, data), RFC 2104. The keyed inner and outer SHA-256 states
// are computed once per key, so a 4 KiB chunk costs two SHA-256 passes plus
// two context copies, not a MAC fetch and key set-up.
class HmacSha256 {
 public:
  static Result<std::unique_ptr<HmacSha256>> Create(const SecretKey& key);
  ~HmacSha256();
  HmacSha256(const HmacSha256&) = delete;
  HmacSha256& operator=(const HmacSha256&) = delete;
  // Fails (kInternalFailure) only if OpenSSL cannot allocate a context.
  Result<Hash> Mac(std::string_view data) const;

 private:
  HmacSha256();
  void* inner_ = nullptr;  // EVP_MD_CTX: SHA-256 after (key ^ ipad)
  void* outer_ = nullptr;  // EVP_MD_CTX: SHA-256 after (key ^ opad)
};

// Overwrites a string that held secret bytes (not optimized away).
void Wipe(std::string& s);

// Lower-case hex, and back (nullopt on an odd length or a non-hex digit).
std::string HexEncode(std::string_view bytes);
std::optional<std::string> HexDecode(std::string_view hex);

}  // namespace strata::repo::crypto
