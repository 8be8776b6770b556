// The Amazon RDS Query API (version 2014-10-31): Action dispatch, request
// parameters -> control/ requests, domain values -> the XML the botocore model
// describes, and the one place a Status becomes an RDS <ErrorResponse>.
#pragma once

#include <string>

#include "api/query_params.h"
#include "common/status.h"
#include "control/control.h"

namespace strata::api {

inline constexpr const char* kRdsXmlns = "http://rds.amazonaws.com/doc/2014-10-31/";
inline constexpr const char* kRdsVersion = "2014-10-31";

class RdsQueryApi {
 public:
  explicit RdsQueryApi(control::ControlPlane* control) : control_(control) {}

  // One authenticated request. On success the full XML response document;
  // otherwise the Status to render with RdsErrorXml.
  Result<std::string> Handle(const QueryParams& params, const std::string& request_id);

 private:
  control::ControlPlane* control_;
};

// <ErrorResponse><Error><Type>Sender|Receiver</Type><Code/><Message/></Error><RequestId/></ErrorResponse>
std::string RdsErrorXml(const Status& status, const std::string& request_id);

}  // namespace strata::api
