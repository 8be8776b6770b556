// Amazon Resource Names for what Strata owns: arn:aws:rds:REGION:ACCOUNT:TYPE:ID.
//
// Every ARN a caller gives is parsed once, with ParseOwnArn, and compared with
// this server's region and account: a foreign ARN never names a local resource
// (nor becomes a key under which tags are stored), and IAM authorizes on the
// canonical form that Arn::Text() gives back.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace strata::control {

struct Arn {
  std::string partition;  // "aws"
  std::string service;    // "rds"
  std::string region;
  std::string account;
  std::string resource_type;  // "db", "snapshot", "auto-backup"
  std::string resource_id;    // may itself contain ':' (snapshot:rds:app-2026-...)

  std::string Text() const;
};

std::string FormatArn(std::string_view region, std::string_view account,
                      std::string_view resource_type, std::string_view id);
// Splits any ARN into its parts; nullopt if it is not arn:P:S:R:A:TYPE:ID.
std::optional<Arn> ParseArn(std::string_view arn);

// Where this server's resources live.
struct ArnOwner {
  std::string_view region;
  std::string_view account;
};

// The ARN of a resource of `resource_type` that this server owns, with its
// identifier lower-cased as RDS stores identifiers. InvalidParameterValue, with
// what is wrong, for a malformed ARN, another partition, service, region or
// account, or another resource type.
Result<Arn> ParseOwnArn(std::string_view text, const ArnOwner& owner, std::string_view resource_type);

}  // namespace strata::control
