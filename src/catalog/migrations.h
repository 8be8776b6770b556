// Versioned schema migrations for the catalog. Each migration runs once, in
// order, inside a transaction, and bumps PRAGMA user_version; a catalog from a
// newer Strata (higher version than this build knows) is refused, not guessed at.
#pragma once

#include "common/sqlite.h"
#include "common/status.h"

namespace strata::catalog {

int LatestSchemaVersion();

// Migrates up to `target` (a test builds an old catalog with it).
Status Migrate(sqlite::Db& db, int target = LatestSchemaVersion());
int CurrentSchemaVersion(sqlite::Db& db);

}  // namespace strata::catalog
