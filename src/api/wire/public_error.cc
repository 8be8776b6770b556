#include "api/wire/public_error.h"

#include <fmt/format.h>

namespace strata::api {

bool IsInternal(const ErrorCode& code) {
  // error_codes.h: "Below the API" (but KMSKeyNotAccessibleFault, which is
  // RDS's own code) and the two internal-error codes of the protocols.
  static constexpr const ErrorCode* kInternal[] = {
      &errors::kInternalFailure, &errors::kDataInternal, &errors::kObjectNotFound, &errors::kIoError,
      &errors::kNoSpace,         &errors::kPortInUse,    &errors::kCorruption,     &errors::kKeyError,
  };
  for (const ErrorCode* c : kInternal) {
    if (c->aws_code == code.aws_code && c->http_status == code.http_status) return true;
  }
  return false;
}

std::string InternalFailureMessage(const std::string& request_id) {
  return fmt::format("The request processing has failed because of an unknown error, exception or failure. "
                     "Request ID: {}",
                     request_id);
}

Status PublicError(const Status& status, const std::string& request_id, const ErrorCode& internal_code) {
  if (status.ok() || !IsInternal(status.code())) return status;
  return Status(internal_code, InternalFailureMessage(request_id));
}

}  // namespace strata::api
