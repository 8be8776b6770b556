// stratad's files are readable only by their owner: it runs under umask 077,
// and at start takes group and other rights away from what an older build
// (umask 022) left in its data dir. The PostgreSQL clusters are not
// stratad's to change: they belong to their servers' OS users (0700, as
// PostgreSQL makes them), and stratad gives the data dir and instances/
// search-only rights for those users' group when it starts a server.
#pragma once

#include <filesystem>

#include "common/status.h"

namespace strata {

// umask(077) for the whole process: every file and directory stratad makes
// from now on (catalog, credentials, repository, SQLite instances, restored
// files) is its owner's only.
void UsePrivateUmask();

// Takes group and other rights from the data dir (0700), from every file or
// directory stratad's OS user owns at its top (catalog.db and its -wal and
// -shm, credentials, the repository's root), in instances/, and inside the
// instance directories it owns (SQLite's). Entries owned by another user
// (a PostgreSQL instance's directory) are left alone.
Status PrivatizeDataDir(const std::filesystem::path& data_dir);

}  // namespace strata
