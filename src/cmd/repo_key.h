// The repository key of stratad and the `strata repo` commands: a key file
// named on the command line, and DATA/repository-key, where stratad records
// which file and key id it opened the repository with (a path, never the
// key) so that `strata repo verify|stats` on the same host need no flags.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "common/status.h"
#include "repo/repo.h"

namespace strata::cli {

// The keyring of `key_file` (key id `key_id`, empty: derived); with no
// key_file, the one DATA/repository-key records; neither: nullptr (an
// unencrypted repository).
Result<std::shared_ptr<repo::Keyring>> RepoKeyring(const std::filesystem::path& data_dir,
                                                   const std::string& key_file, const std::string& key_id);

// Records (or, with an empty key_file, forgets) the key file stratad uses.
Status RecordRepoKeyFile(const std::filesystem::path& data_dir, const std::string& key_file,
                         const std::string& key_id);

}  // namespace strata::cli
