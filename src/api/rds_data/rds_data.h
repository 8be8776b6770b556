// The RDS Data API (version 2018-08-01, rest-json): ExecuteStatement,
// BatchExecuteStatement, Begin/Commit/RollbackTransaction against an
// instance's ARN, with the API's typed Field values. secretArn is required
// by the model and accepted as is: Strata authorizes the caller by SigV4.
// SigV4 service "rds-data"; its operations are the URI paths it owns.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "api/service.h"
#include "api/wire/json_errors.h"
#include "common/status.h"
#include "control/control.h"

namespace strata::api {

class RdsDataApi : public Service {
 public:
  explicit RdsDataApi(control::ControlPlane* control) : control_(control) {}

  // "/Execute", "/BatchExecute", "/BeginTransaction", ...
  bool OwnsPath(std::string_view path) const override;
  Outcome Handle(const Principal& caller, const Call& call, http::Response& res) override;
  void WriteError(const Status& status, const std::string& request_id, http::Response& res) const override;
  std::string ActionOf(const http::Request& req) const override;

 private:
  // The answer to one operation; `failure` is set to the error with its
  // detail when the answer is one (the client's copy may say less).
  JsonResponse Run(const std::string& path, const std::string& body, const std::string& request_id,
                   Status& failure);

  control::ControlPlane* control_;
};

// The registration in api/services.cc.
std::unique_ptr<Service> NewRdsDataService(const ServiceContext& context);

std::string Base64Encode(std::string_view bytes);
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace strata::api
