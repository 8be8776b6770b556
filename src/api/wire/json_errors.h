// The JSON protocols' (rest-json, json) answers and error envelope, shared by
// every service that speaks them: {"message": ...} with the code in
// x-amzn-ErrorType.
#pragma once

#include <string>

#include "api/http_server.h"
#include "common/status.h"

namespace strata::api {

struct JsonResponse {
  int status = 200;
  std::string body;
  std::string error_type;  // x-amzn-ErrorType, set on errors
};

// The one place a Status becomes a JSON protocol error.
JsonResponse JsonError(const Status& status);

// A SigV4 failure as the JSON protocols name it (the Query APIs' codes, e.g.
// SignatureDoesNotMatch, are InvalidSignatureException there); any other
// status as JsonError.
JsonResponse JsonAuthError(const Status& status);

// Writes `r` as the answer, with the request id header every AWS answer has.
void SendJson(http::Response& res, const JsonResponse& r, const std::string& request_id);

}  // namespace strata::api
