// Private to engine/: running PostgreSQL's programs (initdb, pg_ctl) and
// finding where they are and whom they run as. PostgreSQL refuses to run as
// root. When stratad is root, each instance's server runs as an OS user of
// its own ("strata-pg-<resource id>", a system user without a home or a
// shell, made on the instance's first start and removed with the instance),
// so that a server, or whoever gets it to run something, reaches only its
// own cluster: not the other instances', the SQLite files or the catalog.
// Every such user is also in the group "strata-pg", which alone may pass
// (search, not list) through stratad's data dir to the instances' own
// directories. When stratad is not root, its servers run as stratad's own
// user, with every file private to that user (one user: no isolation between
// instances beyond what PostgreSQL's roles give).
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/engine.h"

namespace strata::engine::pg {

struct OsUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name;
  std::vector<gid_t> groups;  // supplementary groups besides gid
};

// The group whose members may pass through stratad's data dir.
inline constexpr const char* kServerGroup = "strata-pg";

// The OS user name of an instance's server: "strata-pg-" and the lower-cased
// letters of its resource id (32 characters at most, useradd's limit).
std::string ServerUserName(const InstanceSpec& spec);

// The user the instance's server runs as, made (with the group) when it does
// not exist yet: nullopt when stratad is not root (stratad's own user).
Result<std::optional<OsUser>> ServerUser(const InstanceSpec& spec);

// Removes the instance's OS user (and its user group), if there is one.
Status RemoveServerUser(const InstanceSpec& spec);

// The owner of `path` as an OsUser (for a cluster an older build left).
Result<OsUser> OwnerOf(const std::filesystem::path& path);

// The directory of PostgreSQL's programs: STRATA_POSTGRES_BIN if set, else
// the newest /usr/lib/postgresql/<major>/bin.
Result<std::filesystem::path> BinDir();

// The server module every cluster preloads (strata_pg_guard.so):
// STRATA_PG_GUARD if set, else beside stratad's binary, else in
// ../lib/strata/ from it.
Result<std::filesystem::path> GuardModule();

struct ProcessOutput {
  int exit_code = 0;
  std::string output;  // stdout and stderr together
};

// Runs argv (argv[0] absolute) to completion, as `user` when given, with no
// descriptors of stratad's but stdin from /dev/null and the output captured.
Result<ProcessOutput> Run(const std::vector<std::string>& argv, const std::optional<OsUser>& user);

// Gives `path` (recursively) to `user`; a no-op without one.
Status Chown(const std::filesystem::path& path, const std::optional<OsUser>& user, bool recursive);

// Lets `user` reach `path` through its parent directories. An ancestor that
// stratad owns and whose group has no rights (the data dir: 0700) gets the
// group kServerGroup and search permission for it (0710): the servers pass,
// nobody else does, and none can list it. Any other ancestor that lets
// nobody through gets search permission for others, as before. Only when root.
Status MakeReachable(const std::filesystem::path& path, const std::optional<OsUser>& user);

}  // namespace strata::engine::pg
