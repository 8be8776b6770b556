// One way to write a small file (credentials, the endpoint, the repository's
// location and key, a PostgreSQL cluster's settings) so that a crash or a
// failed write never leaves it torn or empty: readers see the old contents
// or the new, whole.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string_view>

#include "common/status.h"

namespace strata {

struct AtomicWriteOptions {
  // The file's permissions (not narrowed by the umask). Private by default,
  // as every file stratad keeps for itself is (common/private_files.h).
  mode_t mode = 0600;
  // false: fail with "already exists" instead of replacing an existing file
  // (root credentials are made once, never overwritten).
  bool replace = true;
  // true: a file that already holds exactly these contents is left as it is
  // and nothing is written (a start on a full disk depends on it).
  bool skip_if_unchanged = false;
};

// Writes `contents` to a new file beside `path` (same directory, so the
// rename stays in one file system), fsyncs it, renames it over `path` (or
// links it there, options.replace false) and fsyncs the directory, so the
// new name survives a crash. On any error `path` is left as it was and the
// temporary file is removed.
Status WriteFileAtomically(const std::filesystem::path& path, std::string_view contents,
                           const AtomicWriteOptions& options = {});

}  // namespace strata
