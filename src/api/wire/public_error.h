// The one rule for what an error may tell a client: the codes of the layers
// below the API (I/O, storage, corruption, keys, a failed tool) and
// InternalFailure itself carry file paths, errno text, SQL or tool output in
// their messages. At the edge they become the protocol's internal-error code
// with a generic message and the request id; the detail goes to the server's
// log under the same request id.
#pragma once

#include <string>

#include "common/status.h"

namespace strata::api {

// True for the codes whose messages are for the operator, not the client.
bool IsInternal(const ErrorCode& code);

// The generic message a client gets for an internal failure.
std::string InternalFailureMessage(const std::string& request_id);

// `status` as a client may see it: internal codes become `internal_code`
// (InternalFailure for the Query APIs, InternalServerErrorException for the
// JSON ones) with InternalFailureMessage; every other status is unchanged.
Status PublicError(const Status& status, const std::string& request_id,
                   const ErrorCode& internal_code = errors::kInternalFailure);

}  // namespace strata::api
