// The RDS Data API (version 2018-08-01, rest-json): ExecuteStatement,
// BatchExecuteStatement, Begin/Commit/RollbackTransaction against an
// instance's ARN, with the API's typed Field values. secretArn is required
// by the model and accepted as is: Strata authorizes the caller by SigV4.
#pragma once

#include <string>

#include "common/status.h"
#include "control/control.h"

namespace strata::api {

struct JsonResponse {
  int status = 200;
  std::string body;
  std::string error_type;  // x-amzn-ErrorType, set on errors
};

class RdsDataApi {
 public:
  explicit RdsDataApi(control::ControlPlane* control) : control_(control) {}
  // path is the request URI path ("/Execute", ...). Returns false if the path
  // is not a Data API operation.
  bool Handles(const std::string& path) const;
  JsonResponse Handle(const std::string& path, const std::string& body);

 private:
  control::ControlPlane* control_;
};

// {"message": ...} with the code in x-amzn-ErrorType, the one place a Status
// becomes a rest-json error.
JsonResponse JsonError(const Status& status);

// A SigV4 failure as the JSON protocols name it (the Query APIs' codes, e.g.
// SignatureDoesNotMatch, are InvalidSignatureException there).
JsonResponse JsonAuthError(const Status& status);

std::string Base64Encode(std::string_view bytes);
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace strata::api
