#include "cmd/repo_key.h"

#include <cerrno>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "common/disk_space.h"

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
  {
    // Unchanged: nothing to write (a start on a full disk depends on it).
    std::ifstream in(path);
    std::string old((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in && old == text) return Status::Ok();
  }
  fs::path tmp = path;
  tmp += ".tmp";
  {
    errno = 0;
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) return disk::ErrnoStatus("cannot write " + tmp.string(), errno ? errno : EIO);
  }
  fs::rename(tmp, path, ec);
  if (ec) return Status(errors::kIoError, "cannot write " + path.string() + ": " + ec.message());
  return Status::Ok();
}

}  // namespace strata::cli
