#include "control/arn.h"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace strata::control {

std::string Arn::Text() const {
  return fmt::format("arn:{}:{}:{}:{}:{}:{}", partition, service, region, account, resource_type,
                     resource_id);
}

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
  return Arn{std::string(parts[1]), std::string(parts[2]), std::string(parts[3]),
             std::string(parts[4]), std::string(parts[5]), std::string(s)};
}

Result<Arn> ParseOwnArn(std::string_view text, const ArnOwner& owner, std::string_view resource_type) {
  auto invalid = [&](std::string_view why) {
    return Status(errors::kInvalidParameterValue, fmt::format("Invalid resource name {}: {}", text, why));
  };
  auto arn = ParseArn(text);
  if (!arn) return invalid("not an ARN of the form arn:aws:rds:REGION:ACCOUNT:TYPE:ID");
  if (arn->partition != "aws") return invalid(fmt::format("partition '{}' is not aws", arn->partition));
  if (arn->service != "rds") return invalid(fmt::format("service '{}' is not rds", arn->service));
  if (arn->region != owner.region) {
    return invalid(fmt::format("region '{}' is not this endpoint's region '{}'", arn->region, owner.region));
  }
  if (arn->account != owner.account) {
    return invalid(fmt::format("account '{}' is not this endpoint's account '{}'", arn->account, owner.account));
  }
  if (arn->resource_type != resource_type) {
    return invalid(fmt::format("resource type '{}' is not '{}'", arn->resource_type, resource_type));
  }
  std::transform(arn->resource_id.begin(), arn->resource_id.end(), arn->resource_id.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return *arn;
}

}  // namespace strata::control
