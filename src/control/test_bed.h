// Test-only: the directory, catalog and repository-backed store that
// control's tests open a ControlPlane (or an InstanceCapture) on.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "common/ids.h"
#include "control/control.h"
#include "control/repo_backup_store.h"

namespace strata::control::test_bed {

// A new empty directory under the system's temporary directory.
inline std::filesystem::path NewTestDir(const std::string& prefix) {
  auto dir = std::filesystem::temp_directory_path() / (prefix + "_" + RandomHex(6));
  std::filesystem::create_directories(dir);
  return dir;
}

// dir/catalog.db; null (and the test failed) if it does not open.
inline std::unique_ptr<catalog::Catalog> OpenTestCatalog(const std::filesystem::path& dir) {
  auto cat = catalog::Catalog::Open(dir / "catalog.db");
  if (!cat.ok()) {
    ADD_FAILURE() << "catalog: " << cat.status().ToString();
    return nullptr;
  }
  return std::move(*cat);
}

// A backup store over a repository in dir/repo; null (and the test failed) if it does not open.
inline std::unique_ptr<BackupStore> OpenTestStore(const std::filesystem::path& dir) {
  auto store = storage::OpenPosixStore(dir / "repo");
  if (!store.ok()) {
    ADD_FAILURE() << "store: " << store.status().ToString();
    return nullptr;
  }
  auto repo = repo::Repository::Open(std::move(*store));
  if (!repo.ok()) {
    ADD_FAILURE() << "repository: " << repo.status().ToString();
    return nullptr;
  }
  return NewRepoBackupStore(std::move(*repo));
}

// A control plane on dir with its catalog and `store` (by default one over dir/repo).
inline std::unique_ptr<ControlPlane> OpenTestControlPlane(
    const std::filesystem::path& dir, const Clock& clock,
    std::unique_ptr<BackupStore> store = nullptr, disk::DiskGuard* disk = nullptr) {
  auto cat = OpenTestCatalog(dir);
  if (!store) store = OpenTestStore(dir);
  if (!cat || !store) return nullptr;
  Config cfg;
  cfg.data_dir = dir;
  cfg.clock = &clock;
  cfg.disk = disk;
  auto cp = ControlPlane::Open(cfg, std::move(cat), std::move(store));
  if (!cp.ok()) {
    ADD_FAILURE() << "control plane: " << cp.status().ToString();
    return nullptr;
  }
  return std::move(*cp);
}

}  // namespace strata::control::test_bed
