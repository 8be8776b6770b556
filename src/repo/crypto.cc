#include "repo/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <climits>
#include <cstring>
#include <memory>

namespace strata::repo::crypto {
namespace {

// Fetched once: an implicit fetch (EVP_aes_256_gcm()) on every init costs a
// provider lookup per chunk in OpenSSL 3.
const EVP_CIPHER* Aes256Gcm() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  return cipher;
}
const EVP_MD* Sha256Md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

EVP_CIPHER_CTX* ThreadCipherCtx() {
  thread_local std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> ctx(EVP_CIPHER_CTX_new());
  return ctx.get();
}
EVP_MD_CTX* ThreadMdCtx() {
  thread_local std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  return ctx.get();
}

const uint8_t* U8(std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }

// EVP_*Update takes an int length: feed larger inputs in pieces.
constexpr size_t kPiece = 1u << 30;

Status OpenSslFailure(const char* what) {
  return Status(errors::kInternalFailure, std::string("OpenSSL: ") + what + " failed");
}

}  // namespace

SecretKey::SecretKey(std::string_view raw) {
  bytes_.fill(0);
  std::memcpy(bytes_.data(), raw.data(), std::min(raw.size(), bytes_.size()));
}

SecretKey::~SecretKey() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }

Result<SecretKey> SecretKey::Random() {
  SecretKey k;
  if (RAND_bytes(k.bytes_.data(), static_cast<int>(k.bytes_.size())) != 1) return OpenSslFailure("RAND_bytes");
  return k;
}

Status SealTo(const SecretKey& key, std::string_view plain, std::string_view aad, std::string& out) {
  uint8_t nonce[kNonceBytes];
  if (RAND_bytes(nonce, sizeof nonce) != 1) return OpenSslFailure("RAND_bytes");
  EVP_CIPHER_CTX* ctx = ThreadCipherCtx();
  if (!ctx || !Aes256Gcm() || EVP_EncryptInit_ex2(ctx, Aes256Gcm(), key.data(), nonce, nullptr) != 1) {
    return OpenSslFailure("AES-256-GCM init");
  }
  int n = 0;
  if (!aad.empty() && EVP_EncryptUpdate(ctx, nullptr, &n, U8(aad), static_cast<int>(aad.size())) != 1) {
    return OpenSslFailure("AES-256-GCM aad");
  }
  size_t start = out.size();
  out.resize(start + kNonceBytes + plain.size() + kTagBytes);
  uint8_t* p = reinterpret_cast<uint8_t*>(out.data() + start);
  std::memcpy(p, nonce, kNonceBytes);
  uint8_t* c = p + kNonceBytes;
  for (size_t done = 0; done < plain.size(); done += kPiece) {
    int len = static_cast<int>(std::min(kPiece, plain.size() - done));
    if (EVP_EncryptUpdate(ctx, c + done, &n, U8(plain) + done, len) != 1) return OpenSslFailure("AES-256-GCM");
  }
  if (EVP_EncryptFinal_ex(ctx, c + plain.size(), &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTagBytes, c + plain.size()) != 1) {
    return OpenSslFailure("AES-256-GCM final");
  }
  return Status::Ok();
}

Result<std::string> Seal(const SecretKey& key, std::string_view plain, std::string_view aad) {
  std::string out;
  RETURN_IF_ERROR(SealTo(key, plain, aad, out));
  return out;
}

Result<std::string> Open(const SecretKey& key, std::string_view sealed, std::string_view aad) {
  if (sealed.size() < kSealOverhead) return Status(errors::kCorruption, "encrypted blob is truncated");
  const uint8_t* nonce = U8(sealed);
  std::string_view body = sealed.substr(kNonceBytes, sealed.size() - kSealOverhead);
  uint8_t tag[kTagBytes];
  std::memcpy(tag, sealed.data() + sealed.size() - kTagBytes, kTagBytes);
  EVP_CIPHER_CTX* ctx = ThreadCipherCtx();
  if (!ctx || !Aes256Gcm() || EVP_DecryptInit_ex2(ctx, Aes256Gcm(), key.data(), nonce, nullptr) != 1) {
    return OpenSslFailure("AES-256-GCM init");
  }
  int n = 0;
  if (!aad.empty() && EVP_DecryptUpdate(ctx, nullptr, &n, U8(aad), static_cast<int>(aad.size())) != 1) {
    return OpenSslFailure("AES-256-GCM aad");
  }
  std::string out(body.size(), '\0');
  uint8_t* o = reinterpret_cast<uint8_t*>(out.data());
  for (size_t done = 0; done < body.size(); done += kPiece) {
    int len = static_cast<int>(std::min(kPiece, body.size() - done));
    if (EVP_DecryptUpdate(ctx, o + done, &n, U8(body) + done, len) != 1) return OpenSslFailure("AES-256-GCM");
  }
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, kTagBytes, tag) != 1) {
    return OpenSslFailure("AES-256-GCM set tag");
  }
  // Released plaintext is only ever authenticated plaintext: on a tag
  // mismatch the (unauthenticated) bytes already decrypted are wiped.
  if (EVP_DecryptFinal_ex(ctx, o + body.size(), &n) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    return Status(errors::kCorruption, "encrypted blob does not authenticate");
  }
  return out;
}

Result<std::unique_ptr<StreamSealer>> StreamSealer::Begin(const SecretKey& key, std::string_view aad,
                                                          std::string& out) {
  std::unique_ptr<StreamSealer> s(new StreamSealer());
  auto* ctx = EVP_CIPHER_CTX_new();
  s->ctx_ = ctx;
  uint8_t nonce[kNonceBytes];
  if (RAND_bytes(nonce, sizeof nonce) != 1) return OpenSslFailure("RAND_bytes");
  if (!ctx || !Aes256Gcm() || EVP_EncryptInit_ex2(ctx, Aes256Gcm(), key.data(), nonce, nullptr) != 1) {
    return OpenSslFailure("AES-256-GCM init");
  }
  int n = 0;
  if (!aad.empty() && EVP_EncryptUpdate(ctx, nullptr, &n, U8(aad), static_cast<int>(aad.size())) != 1) {
    return OpenSslFailure("AES-256-GCM aad");
  }
  out.append(reinterpret_cast<const char*>(nonce), sizeof nonce);
  return s;
}

StreamSealer::~StreamSealer() { EVP_CIPHER_CTX_free(static_cast<EVP_CIPHER_CTX*>(ctx_)); }

Status StreamSealer::Update(std::string_view plain, std::string& out) {
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(ctx_);
  size_t start = out.size();
  out.resize(start + plain.size());
  uint8_t* c = reinterpret_cast<uint8_t*>(out.data() + start);
  for (size_t done = 0; done < plain.size(); done += kPiece) {
    int len = static_cast<int>(std::min(kPiece, plain.size() - done)), n = 0;
    if (EVP_EncryptUpdate(ctx, c + done, &n, U8(plain) + done, len) != 1) return OpenSslFailure("AES-256-GCM");
  }
  return Status::Ok();
}

Status StreamSealer::Finish(std::string& out) {
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(ctx_);
  uint8_t tag[kTagBytes];
  int n = 0;
  if (EVP_EncryptFinal_ex(ctx, tag, &n) != 1 || EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) != 1) {
    return OpenSslFailure("AES-256-GCM final");
  }
  out.append(reinterpret_cast<const char*>(tag), sizeof tag);
  return Status::Ok();
}

HmacSha256::HmacSha256() = default;

HmacSha256::~HmacSha256() {
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(inner_));
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(outer_));
}

Result<std::unique_ptr<HmacSha256>> HmacSha256::Create(const SecretKey& key) {
  std::unique_ptr<HmacSha256> h(new HmacSha256());
  uint8_t ipad[64], opad[64];
  for (size_t i = 0; i < 64; ++i) {
    uint8_t k = i < kKeyBytes ? key.data()[i] : 0;
    ipad[i] = k ^ 0x36;
    opad[i] = k ^ 0x5c;
  }
  auto* inner = EVP_MD_CTX_new();
  auto* outer = EVP_MD_CTX_new();
  h->inner_ = inner;
  h->outer_ = outer;
  bool ok = inner && outer && Sha256Md() && EVP_DigestInit_ex(inner, Sha256Md(), nullptr) == 1 &&
            EVP_DigestUpdate(inner, ipad, sizeof ipad) == 1 && EVP_DigestInit_ex(outer, Sha256Md(), nullptr) == 1 &&
            EVP_DigestUpdate(outer, opad, sizeof opad) == 1;
  OPENSSL_cleanse(ipad, sizeof ipad);
  OPENSSL_cleanse(opad, sizeof opad);
  if (!ok) return OpenSslFailure("HMAC-SHA256 init");
  return h;
}

Result<Hash> HmacSha256::Mac(std::string_view data) const {
  Hash inner_hash{}, out{};
  EVP_MD_CTX* ctx = ThreadMdCtx();
  unsigned int n = 0;
  if (!ctx || EVP_MD_CTX_copy_ex(ctx, static_cast<EVP_MD_CTX*>(inner_)) != 1 ||
      EVP_DigestUpdate(ctx, data.data(), data.size()) != 1 || EVP_DigestFinal_ex(ctx, inner_hash.data(), &n) != 1 ||
      EVP_MD_CTX_copy_ex(ctx, static_cast<EVP_MD_CTX*>(outer_)) != 1 ||
      EVP_DigestUpdate(ctx, inner_hash.data(), inner_hash.size()) != 1 ||
      EVP_DigestFinal_ex(ctx, out.data(), &n) != 1) {
    return OpenSslFailure("HMAC-SHA256");
  }
  return out;
}

void Wipe(std::string& s) {
  OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    auto b = static_cast<uint8_t>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

std::optional<std::string> HexDecode(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (hex.size() % 2) return std::nullopt;
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out[i] = static_cast<char>(hi << 4 | lo);
  }
  return out;
}

}  // namespace strata::repo::crypto
