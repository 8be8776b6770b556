#include "engine/postgres/pg_credentials.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>

namespace strata::engine::pg {
namespace {

std::string Base64(const unsigned char* data, size_t n) {
  std::string out(4 * ((n + 2) / 3), '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(static_cast<size_t>(len));
  return out;
}

// Words PostgreSQL reserves (a role may not be named them without quoting,
// which clients get wrong) and the roles RDS keeps for itself.
constexpr std::array kReserved = {
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both", "case", "cast",
    "check", "collate", "column", "constraint", "create", "current_catalog", "current_date", "current_role",
    "current_time", "current_timestamp", "current_user", "default", "deferrable", "desc", "distinct", "do",
    "else", "end", "except", "false", "fetch", "for", "foreign", "from", "grant", "group", "having", "in",
    "initially", "intersect", "into", "lateral", "leading", "limit", "localtime", "localtimestamp", "not",
    "null", "offset", "on", "only", "or", "order", "placing", "primary", "references", "returning", "select",
    "session_user", "some", "symmetric", "table", "then", "to", "trailing", "true", "union", "unique", "user",
    "using", "variadic", "when", "where", "window", "with", "postgres", "public", "rdsadmin", "rdsrepladmin",
    "rds_superuser", "strata"};

}  // namespace

Result<std::string> ScramVerifier(const std::string& password, int iterations) {
  std::array<unsigned char, 16> salt{};
  if (RAND_bytes(salt.data(), static_cast<int>(salt.size())) != 1) {
    return Status(errors::kInternalFailure, "no random bytes for a password salt");
  }
  std::array<unsigned char, 32> salted{};
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt.data(),
                        static_cast<int>(salt.size()), iterations, EVP_sha256(), static_cast<int>(salted.size()),
                        salted.data()) != 1) {
    return Status(errors::kInternalFailure, "PBKDF2 failed");
  }
  auto hmac = [&](const char* text) {
    std::array<unsigned char, 32> out{};
    unsigned len = 0;
    HMAC(EVP_sha256(), salted.data(), static_cast<int>(salted.size()), reinterpret_cast<const unsigned char*>(text),
         std::char_traits<char>::length(text), out.data(), &len);
    return out;
  };
  auto client_key = hmac("Client Key");
  auto server_key = hmac("Server Key");
  std::array<unsigned char, 32> stored_key{};
  SHA256(client_key.data(), client_key.size(), stored_key.data());
  return fmt::format("SCRAM-SHA-256${}:{}${}:{}", iterations, Base64(salt.data(), salt.size()),
                     Base64(stored_key.data(), stored_key.size()), Base64(server_key.data(), server_key.size()));
}

Status ValidateMasterUsername(const std::string& name) {
  bool shape = !name.empty() && std::isalpha(static_cast<unsigned char>(name[0])) &&
               std::all_of(name.begin(), name.end(),
                           [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
  if (!shape) {
    return Status(errors::kInvalidParameterValue,
                  "MasterUsername must begin with a letter and contain only letters, digits and underscores.");
  }
  std::string lower = name;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower.rfind("pg_", 0) == 0 ||
      std::find(kReserved.begin(), kReserved.end(), lower) != kReserved.end()) {
    return Status(errors::kInvalidParameterValue,
                  fmt::format("MasterUsername {} cannot be used as it is a reserved word used by the engine", name));
  }
  return Status::Ok();
}

}  // namespace strata::engine::pg
