#include "api/wire/json_errors.h"

#include <nlohmann/json.hpp>

#include <utility>

namespace strata::api {

JsonResponse JsonError(const Status& status) {
  nlohmann::json body = {{"message", status.message()}};
  return JsonResponse{status.code().http_status,
                      body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                      std::string(status.code().aws_code)};
}

JsonResponse JsonAuthError(const Status& status) {
  static constexpr std::pair<const ErrorCode*, ErrorCode> kJsonNames[] = {
      {&errors::kMissingAuthenticationToken, {"MissingAuthenticationTokenException", 403}},
      {&errors::kIncompleteSignature, {"IncompleteSignatureException", 400}},
      {&errors::kInvalidClientTokenId, {"UnrecognizedClientException", 403}},
      {&errors::kSignatureDoesNotMatch, {"InvalidSignatureException", 403}},
      {&errors::kRequestExpired, {"InvalidSignatureException", 403}},
  };
  for (const auto& [query_code, json_code] : kJsonNames) {
    if (status.Is(*query_code)) return JsonError(Status(json_code, status.message()));
  }
  return JsonError(status);
}

void SendJson(http::Response& res, const JsonResponse& r, const std::string& request_id) {
  res.status = r.status;
  res.set_header("x-amzn-RequestId", request_id);
  if (!r.error_type.empty()) res.set_header("x-amzn-ErrorType", r.error_type);
  res.set_content(r.body, "application/json");
}

}  // namespace strata::api
