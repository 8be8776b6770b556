// The RDS parameters Strata takes but does not act on, in one table, so that
// none is accepted and silently dropped: each is refused, accepted only with
// the value that is true of Strata (what it reports), or accepted as a no-op
// for a stated reason. docs/api.md lists the same table; a test checks that
// every parameter of the botocore model is either honoured or listed there.
#pragma once

#include <span>
#include <string_view>

#include "api/wire/query_params.h"
#include "common/status.h"

namespace strata::api {

enum class Treatment {
  kRefused,    // any value: InvalidParameterCombination (or the model's not-found code)
  kOnlyTruth,  // only `truth` is accepted; other values: InvalidParameterCombination
  kDefaultOnly,  // only a name that starts with `truth` (an engine default group)
  kNoOp,       // accepted; `reason` says why it changes nothing
};

struct UnactedParameter {
  std::string_view action;  // "*" for every action that takes it
  std::string_view name;
  Treatment treatment;
  std::string_view truth;
  std::string_view reason;
};

std::span<const UnactedParameter> UnactedParameters();

// InvalidParameterCombination (DBParameterGroupNotFound / OptionGroupNotFoundFault
// for group names) for the first parameter of `action` in `params` that the
// table refuses.
Status CheckUnactedParameters(std::string_view action, const QueryParams& params);

}  // namespace strata::api
