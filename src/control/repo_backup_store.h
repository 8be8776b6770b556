// BackupStore over the backup repository (repo/).
#pragma once

#include <memory>

#include "control/backup_store.h"
#include "repo/repo.h"

namespace strata::control {

std::unique_ptr<BackupStore> NewRepoBackupStore(std::shared_ptr<repo::Repository> repository);

}  // namespace strata::control
