// The key-file keyring: one key-encryption key, held in memory only as long
// as the keyring lives. Wrapping is AES-256-GCM under that key with the
// caller's context as AAD, so a wrapped blob opens only under the same key
// and for the same purpose.
#include <sys/stat.h>

#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "repo/crypto.h"
#include "repo/repo.h"

namespace strata::repo {
namespace {

bool ValidKeyId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) return false;
  }
  return id != "." && id != "..";
}

class KeyFileKeyring final : public Keyring {
 public:
  KeyFileKeyring(crypto::SecretKey kek, std::string key_id) : kek_(std::move(kek)), key_id_(std::move(key_id)) {}

  std::string DefaultKeyId() const override { return key_id_; }

  Result<std::string> Wrap(const std::string& key_id, std::string_view plain, std::string_view context) override {
    RETURN_IF_ERROR(Holds(key_id));
    return crypto::Seal(kek_, plain, context);
  }

  Result<std::string> Unwrap(const std::string& key_id, std::string_view wrapped, std::string_view context) override {
    RETURN_IF_ERROR(Holds(key_id));
    auto plain = crypto::Open(kek_, wrapped, context);
    if (!plain.ok()) {
      return Status(errors::kKMSKeyNotAccessible,
                    fmt::format("the key given does not match (it does not unwrap the repository's keys)"));
    }
    return plain;
  }

 private:
  Status Holds(const std::string& key_id) const {
    if (key_id == key_id_) return Status::Ok();
    return Status(errors::kKMSKeyNotAccessible, fmt::format("the key given has key id {}, not {}", key_id_, key_id));
  }

  crypto::SecretKey kek_;
  std::string key_id_;
};

}  // namespace

Result<std::shared_ptr<Keyring>> NewKeyringOfKey(std::string_view key, const std::string& key_id) {
  if (key.size() != crypto::kKeyBytes) {
    return Status(errors::kInvalidParameterValue, fmt::format("a repository key is {} bytes, not {}",
                                                              crypto::kKeyBytes, key.size()));
  }
  crypto::SecretKey kek(key);
  std::string id = key_id;
  if (id.empty()) {
    // Derived through an HMAC under the key itself: names the key without
    // revealing anything about it.
    ASSIGN_OR_RETURN(auto mac, crypto::HmacSha256::Create(kek));
    ASSIGN_OR_RETURN(Hash h, mac->Mac("strata repository key id"));
    id = "key-" + ToHex(h).substr(0, 16);
  }
  if (!ValidKeyId(id)) {
    return Status(errors::kInvalidParameterValue,
                  fmt::format("key id '{}' must be 1 to 64 letters, digits, '.', '_' or '-'", id));
  }
  return std::shared_ptr<Keyring>(std::make_shared<KeyFileKeyring>(std::move(kek), std::move(id)));
}

Result<std::shared_ptr<Keyring>> OpenKeyFile(const std::filesystem::path& path, const std::string& key_id) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return Status(errors::kInvalidParameterValue,
                  fmt::format("repository key file {}: {}", path.string(), std::strerror(errno)));
  }
  if (st.st_mode & 077) {
    return Status(errors::kInvalidParameterValue,
                  fmt::format("repository key file {} is readable by others (mode {:04o}): chmod 600 it",
                              path.string(), st.st_mode & 07777));
  }
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  if (!in) return Status(errors::kInvalidParameterValue, "cannot read repository key file " + path.string());
  std::string text = buf.str();
  std::string key;
  if (text.size() == crypto::kKeyBytes) {
    key = text;
  } else {
    size_t b = text.find_first_not_of(" \t\r\n"), e = text.find_last_not_of(" \t\r\n");
    std::string_view hex = b == std::string::npos ? std::string_view() : std::string_view(text).substr(b, e - b + 1);
    auto decoded = hex.size() == 2 * crypto::kKeyBytes ? crypto::HexDecode(hex) : std::nullopt;
    if (!decoded) {
      crypto::Wipe(text);
      return Status(errors::kInvalidParameterValue,
                    fmt::format("repository key file {} must hold 32 bytes, raw or as 64 hex digits "
                                "(make one with: openssl rand -hex 32)", path.string()));
    }
    key = std::move(*decoded);
  }
  auto keyring = NewKeyringOfKey(key, key_id);
  crypto::Wipe(key);
  crypto::Wipe(text);
  if (!keyring.ok()) return keyring.status().WithContext(path.string());
  return keyring;
}

}  // namespace strata::repo
