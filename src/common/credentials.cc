#include "common/credentials.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "common/atomic_file.h"
#include "common/ids.h"

namespace strata {
namespace {

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : nullptr;
}

}  // namespace

Result<CredentialsFile> LoadCredentialsFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return Status(errors::kIoError, fmt::format("cannot read {}", path.string()));
  CredentialsFile out;
  std::string line, profile;
  while (std::getline(in, line)) {
    line = Trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      profile = Trim(line.substr(1, line.size() - 2));
      if (profile.rfind("profile ", 0) == 0) profile = Trim(profile.substr(8));
      continue;
    }
    size_t eq = line.find('=');
    if (eq == std::string::npos || profile.empty()) continue;
    std::string key = Trim(line.substr(0, eq)), value = Trim(line.substr(eq + 1));
    auto& c = out[profile];
    if (key == "aws_access_key_id") c.access_key_id = value;
    else if (key == "aws_secret_access_key") c.secret_access_key = value;
    else if (key == "aws_session_token") c.session_token = value;
  }
  return out;
}

Result<sigv4::Credentials> CreateRootCredentials(const std::filesystem::path& path) {
  sigv4::Credentials c;
  c.access_key_id = "AKIA" + RandomAlnumUpper(16);
  c.secret_access_key = RandomAlnum(40);
  std::string text = fmt::format(
      "# Strata root credentials, created by stratad. Keep this file private.\n"
      "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
      c.access_key_id, c.secret_access_key);
  // Made once, never replaced: a second stratad start keeps its credentials.
  RETURN_IF_ERROR(WriteFileAtomically(path, text, {.mode = 0600, .replace = false}));
  return c;
}

std::optional<sigv4::Credentials> ResolveClientCredentials(
    const std::optional<std::filesystem::path>& fallback_file) {
  if (Env("AWS_ACCESS_KEY_ID") && Env("AWS_SECRET_ACCESS_KEY")) {
    sigv4::Credentials c{Env("AWS_ACCESS_KEY_ID"), Env("AWS_SECRET_ACCESS_KEY"), ""};
    if (Env("AWS_SESSION_TOKEN")) c.session_token = Env("AWS_SESSION_TOKEN");
    return c;
  }
  std::string profile = Env("AWS_PROFILE") ? Env("AWS_PROFILE") : "default";
  std::vector<std::filesystem::path> files;
  if (fallback_file) files.push_back(*fallback_file);
  if (Env("AWS_SHARED_CREDENTIALS_FILE")) files.emplace_back(Env("AWS_SHARED_CREDENTIALS_FILE"));
  if (Env("HOME")) files.push_back(std::filesystem::path(Env("HOME")) / ".aws" / "credentials");
  for (const auto& f : files) {
    auto loaded = LoadCredentialsFile(f);
    if (!loaded.ok()) continue;  // absent or unreadable: the next file may answer
    auto it = loaded->find(profile);
    if (it != loaded->end() && !it->second.access_key_id.empty()) return it->second;
  }
  return std::nullopt;
}

}  // namespace strata
