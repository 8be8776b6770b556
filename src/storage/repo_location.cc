// DATA/repository: where stratad keeps its backup repository, written at
// start (no secrets in it), so that `strata repo verify` and other tools open
// the same store. Absent: the posix repository under DATA/repo.
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/credentials.h"
#include "storage/storage.h"

namespace strata::storage {

Status SaveRepoLocation(const std::filesystem::path& data_dir, const std::optional<S3Config>& s3) {
  nlohmann::json j = {{"driver", s3 ? "s3" : "posix"}};
  if (s3) {
    j["bucket"] = s3->bucket;
    j["prefix"] = s3->prefix;
    j["endpoint"] = s3->endpoint;
    j["region"] = s3->region;
    j["path_style"] = s3->path_style;
  }
  const std::string text = j.dump(2) + "\n";
  // Unchanged (every start but the first): nothing is written, which a
  // start on a full disk depends on.
  return WriteFileAtomically(data_dir / "repository", text, {.skip_if_unchanged = true});
}

Result<std::unique_ptr<ObjectStore>> OpenRepoOfDataDir(const std::filesystem::path& data_dir) {
  std::ifstream in(data_dir / "repository");
  auto j = in ? nlohmann::json::parse(in, nullptr, false) : nlohmann::json();
  if (j.is_discarded() || !j.is_object() || j.value("driver", "posix") != "s3") {
    return OpenPosixStore(data_dir / "repo");
  }
  S3Config cfg;
  cfg.bucket = j.value("bucket", "");
  cfg.prefix = j.value("prefix", "");
  cfg.endpoint = j.value("endpoint", "");
  cfg.region = j.value("region", "us-east-1");
  cfg.path_style = j.value("path_style", false);
  if (auto creds = ResolveClientCredentials(std::nullopt)) cfg.credentials = *creds;
  return OpenS3Store(cfg);
}

}  // namespace strata::storage
