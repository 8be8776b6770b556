#include "control/restore_source.h"

#include <fmt/format.h>

#include <cstdlib>
#include <vector>

namespace strata::control {
namespace {

constexpr const char* kPitrPrefix = "pitr|";

}  // namespace

std::string EncodePitrSource(const PitrSource& p) {
  return fmt::format("{}{}|{}|{}|{}|{}", kPitrPrefix, p.repo_snapshot_id, p.resource_id, p.seq_before,
                     p.time_before.time_since_epoch().count(), p.target.time_since_epoch().count());
}

std::optional<PitrSource> DecodePitrSource(const std::string& s) {
  if (s.rfind(kPitrPrefix, 0) != 0) return std::nullopt;
  std::vector<std::string> parts;
  size_t start = std::string(kPitrPrefix).size();
  for (size_t i = start; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == '|') {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  if (parts.size() != 5) return std::nullopt;
  PitrSource p;
  p.repo_snapshot_id = parts[0];
  p.resource_id = parts[1];
  p.seq_before = std::strtoll(parts[2].c_str(), nullptr, 10);
  p.time_before = TimePoint(std::chrono::microseconds(std::strtoll(parts[3].c_str(), nullptr, 10)));
  p.target = TimePoint(std::chrono::microseconds(std::strtoll(parts[4].c_str(), nullptr, 10)));
  return p;
}

std::string RestoreSourceSnapshot(const std::string& restore_source) {
  if (auto p = DecodePitrSource(restore_source)) return p->repo_snapshot_id;
  return restore_source;
}

bool IsPointInTimeRestore(const std::string& restore_source) { return DecodePitrSource(restore_source).has_value(); }

}  // namespace strata::control
