// Private to control/: what a restoring instance (creating) restores from,
// as its catalog record's restore_source keeps it: a repository snapshot
// id, or for a point-in-time restore the base and the log to replay.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/clock.h"

namespace strata::control {

struct PitrSource {
  std::string repo_snapshot_id;
  std::string resource_id;  // whose change log is replayed
  int64_t seq_before = 0;
  TimePoint time_before{};
  TimePoint target{};
};

std::string EncodePitrSource(const PitrSource& p);
std::optional<PitrSource> DecodePitrSource(const std::string& restore_source);
// The repository snapshot a restore starts from.
std::string RestoreSourceSnapshot(const std::string& restore_source);
bool IsPointInTimeRestore(const std::string& restore_source);

}  // namespace strata::control
