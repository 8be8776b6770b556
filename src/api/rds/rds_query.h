// The Amazon RDS Query API (version 2014-10-31): Action dispatch, request
// parameters -> control/ requests, domain values -> the XML the botocore model
// describes, and the one place a Status becomes an RDS <ErrorResponse>.
#pragma once

#include <memory>
#include <string>

#include "api/service.h"
#include "api/wire/query_params.h"
#include "common/status.h"
#include "control/control.h"

namespace strata::api {

inline constexpr const char* kRdsXmlns = "http://rds.amazonaws.com/doc/2014-10-31/";
inline constexpr const char* kRdsVersion = "2014-10-31";

// SigV4 service "rds"; answers at any path no other service owns (the
// default route, see api/services.cc).
class RdsQueryApi : public Service {
 public:
  explicit RdsQueryApi(control::ControlPlane* control) : control_(control) {}

  Outcome Handle(const Principal& caller, const Call& call, http::Response& res) override;
  void WriteError(const Status& status, const std::string& request_id, http::Response& res) const override;
  // The Action of a request, from its query string or form body.
  std::string ActionOf(const http::Request& req) const override;

  // One authenticated request's parameters. On success the full XML response
  // document; otherwise the Status to render with RdsErrorXml.
  Result<std::string> Respond(const QueryParams& params, const std::string& request_id);

 private:
  control::ControlPlane* control_;
};

// The registration in api/services.cc.
std::unique_ptr<Service> NewRdsService(const ServiceContext& context);

// <ErrorResponse><Error><Type>Sender|Receiver</Type><Code/><Message/></Error><RequestId/></ErrorResponse>
std::string RdsErrorXml(const Status& status, const std::string& request_id);

}  // namespace strata::api
