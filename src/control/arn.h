// Amazon Resource Names for what Strata owns: arn:aws:rds:REGION:ACCOUNT:TYPE:ID.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace strata::control {

struct Arn {
  std::string service;  // "rds"
  std::string region;
  std::string account;
  std::string resource_type;  // "db", "snapshot", "auto-backup"
  std::string resource_id;    // may itself contain ':' (snapshot:rds:app-2026-...)
};

std::string FormatArn(std::string_view region, std::string_view account,
                      std::string_view resource_type, std::string_view id);
std::optional<Arn> ParseArn(std::string_view arn);

}  // namespace strata::control
