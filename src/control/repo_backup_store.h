// BackupStore over the backup repository (repo/).
#pragma once

#include <memory>

#include "control/backup_store.h"
#include "repo/repo.h"

namespace strata::control {

// SQLite pages of 512 B-2 KiB share a 4 KiB chunk: smaller chunks would
// grow every manifest (32 bytes per chunk) for no gain in dedup.
inline constexpr uint32_t kMinChunkSize = 4096;

// Snapshots are chunked at the engine's page size, or at least_chunk_size
// (a power of two, kMinChunkSize to 1 MiB) when that is larger: larger
// chunks make smaller manifests and chunk indexes for large databases, at
// the cost of incrementals that store a whole chunk per changed page.
std::unique_ptr<BackupStore> NewRepoBackupStore(std::shared_ptr<repo::Repository> repository,
                                                uint32_t least_chunk_size = kMinChunkSize);

}  // namespace strata::control
