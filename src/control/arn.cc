#include "control/arn.h"

#include <fmt/format.h>

namespace strata::control {

std::string FormatArn(std::string_view region, std::string_view account,
                      std::string_view resource_type, std::string_view id) {
  return fmt::format("arn:aws:rds:{}:{}:{}:{}", region, account, resource_type, id);
}

std::optional<Arn> ParseArn(std::string_view s) {
  // arn:partition:service:region:account:type:id
  std::string_view parts[6];
  for (int i = 0; i < 6; ++i) {
    size_t colon = s.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    parts[i] = s.substr(0, colon);
    s.remove_prefix(colon + 1);
  }
  if (parts[0] != "arn" || parts[1].empty() || s.empty()) return std::nullopt;
  return Arn{std::string(parts[2]), std::string(parts[3]), std::string(parts[4]),
             std::string(parts[5]), std::string(s)};
}

}  // namespace strata::control
