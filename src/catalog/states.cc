#include "catalog/states.h"

#include <fmt/format.h>

#include <array>
#include <ostream>

namespace strata::catalog {
namespace {

// Indexed by the enum's value: keep in the enum's order.
constexpr std::array<std::string_view, 7> kInstanceStatusNames = {
    "creating", "available", "modifying", "backing-up", "rebooting", "deleting", "failed"};
constexpr std::array<std::string_view, 5> kSnapshotStatusNames = {"creating", "available", "failed", "deleting",
                                                                  "deleted"};
constexpr std::array<std::string_view, 2> kSnapshotTypeNames = {"manual", "automated"};
constexpr std::array<std::string_view, 4> kAutomatedBackupStatusNames = {"active", "retained", "creating",
                                                                         "deleting"};

template <typename E, size_t N>
std::string_view NameOf(const std::array<std::string_view, N>& names, E value) {
  auto i = static_cast<size_t>(value);
  return i < N ? names[i] : std::string_view("unknown");
}

template <typename E, size_t N>
Result<E> Parse(const std::array<std::string_view, N>& names, std::string_view text, std::string_view what) {
  for (size_t i = 0; i < N; ++i) {
    if (names[i] == text) return static_cast<E>(i);
  }
  return Status(errors::kInvalidParameterValue, fmt::format("unknown {} '{}'", what, text));
}

}  // namespace

std::string_view ToString(InstanceStatus s) { return NameOf(kInstanceStatusNames, s); }
std::string_view ToString(SnapshotStatus s) { return NameOf(kSnapshotStatusNames, s); }
std::string_view ToString(SnapshotType t) { return NameOf(kSnapshotTypeNames, t); }
std::string_view ToString(AutomatedBackupStatus s) { return NameOf(kAutomatedBackupStatusNames, s); }

Result<InstanceStatus> ParseInstanceStatus(std::string_view text) {
  return Parse<InstanceStatus>(kInstanceStatusNames, text, "instance status");
}
Result<SnapshotStatus> ParseSnapshotStatus(std::string_view text) {
  return Parse<SnapshotStatus>(kSnapshotStatusNames, text, "snapshot status");
}
Result<SnapshotType> ParseSnapshotType(std::string_view text) {
  return Parse<SnapshotType>(kSnapshotTypeNames, text, "snapshot type");
}
Result<AutomatedBackupStatus> ParseAutomatedBackupStatus(std::string_view text) {
  return Parse<AutomatedBackupStatus>(kAutomatedBackupStatusNames, text, "automated backup status");
}

std::ostream& operator<<(std::ostream& os, InstanceStatus s) { return os << ToString(s); }
std::ostream& operator<<(std::ostream& os, SnapshotStatus s) { return os << ToString(s); }
std::ostream& operator<<(std::ostream& os, SnapshotType t) { return os << ToString(t); }
std::ostream& operator<<(std::ostream& os, AutomatedBackupStatus s) { return os << ToString(s); }

}  // namespace strata::catalog
