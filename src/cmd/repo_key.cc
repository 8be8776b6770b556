#include "cmd/repo_key.h"

#include <fstream>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"

namespace strata::cli {

namespace fs = std::filesystem;

Result<std::shared_ptr<repo::Keyring>> RepoKeyring(const fs::path& data_dir, const std::string& key_file,
                                                   const std::string& key_id) {
  if (!key_file.empty()) return repo::OpenKeyFile(fs::absolute(key_file), key_id);
  std::ifstream in(data_dir / "repository-key");
  if (!in) return std::shared_ptr<repo::Keyring>();
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("key_file")) {
    return Status(errors::kInvalidParameterValue, (data_dir / "repository-key").string() + " is damaged");
  }
  return repo::OpenKeyFile(j.value("key_file", ""), j.value("key_id", ""));
}

Status RecordRepoKeyFile(const fs::path& data_dir, const std::string& key_file, const std::string& key_id) {
  fs::path path = data_dir / "repository-key";
  std::error_code ec;
  if (key_file.empty()) {
    fs::remove(path, ec);
    return Status::Ok();
  }
  nlohmann::json j = {{"key_file", fs::absolute(key_file).string()}, {"key_id", key_id}};
  const std::string text = j.dump(2) + "\n";
  // Unchanged: nothing is written (a start on a full disk depends on it).
  return WriteFileAtomically(path, text, {.skip_if_unchanged = true});
}

}  // namespace strata::cli
