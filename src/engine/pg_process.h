// Private to engine/: running PostgreSQL's programs (initdb, pg_ctl) and
// finding where they are and whom they run as. PostgreSQL refuses to run as
// root, so when stratad is root its servers run as the unprivileged OS user
// Debian's packages create ("postgres"); otherwise as stratad's own user.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace strata::engine::pg {

struct OsUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name;
};

// The user servers run as: nullopt when stratad is not root (they run as
// stratad's own user).
Result<std::optional<OsUser>> ServerUser();

// The directory of PostgreSQL's programs: STRATA_POSTGRES_BIN if set, else
// the newest /usr/lib/postgresql/<major>/bin.
Result<std::filesystem::path> BinDir();

struct ProcessOutput {
  int exit_code = 0;
  std::string output;  // stdout and stderr together
};

// Runs argv (argv[0] absolute) to completion, as `user` when given, with no
// descriptors of stratad's but stdin from /dev/null and the output captured.
Result<ProcessOutput> Run(const std::vector<std::string>& argv, const std::optional<OsUser>& user);

// Gives `path` (recursively) to `user`; a no-op without one.
Status Chown(const std::filesystem::path& path, const std::optional<OsUser>& user, bool recursive);

// Lets `user` reach `path` through its parent directories: adds search (x)
// permission for others to each ancestor that lacks it. Only when root.
Status MakeReachable(const std::filesystem::path& path, const std::optional<OsUser>& user);

}  // namespace strata::engine::pg
