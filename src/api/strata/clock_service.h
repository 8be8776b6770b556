// Strata's own service "strata": the manual clock, for tests only. It is
// registered only when stratad runs with --clock manual
// (ServerConfig::manual_clock set); otherwise its paths are unknown like any
// other. Requests are SigV4-signed for the service "strata" with the
// server's credentials, as every other request.
//
//   GET  /strata/clock                          {"now": ISO 8601, "epochSeconds": n}
//   POST /strata/clock/set      {"time": ISO 8601}
//   POST /strata/clock/advance  {"seconds": n}
//
// Set and advance only move the clock forward (schedules and the restorable
// time never go back), then run one scheduler pass so that what became due
// (an automated snapshot, retention) has begun when the answer arrives.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "api/service.h"
#include "api/wire/json_errors.h"
#include "common/clock.h"

namespace strata::api {

class ClockService : public Service {
 public:
  ClockService(ManualClock* clock, control::ControlPlane* control) : clock_(clock), control_(control) {}

  bool OwnsPath(std::string_view path) const override;
  Outcome Handle(const Principal& caller, const Call& call, http::Response& res) override;
  void WriteError(const Status& status, const std::string& request_id, http::Response& res) const override;
  std::string ActionOf(const http::Request& req) const override;

 private:
  // failure: the error answered, for the request log.
  JsonResponse Run(const std::string& method, const std::string& path, const std::string& body, Status& failure);

  std::mutex move_mu_;  // one move at a time: read, check, set
  ManualClock* clock_;
  control::ControlPlane* control_;
};

// Null unless the manual clock is on.
std::unique_ptr<Service> NewStrataService(const ServiceContext& context);

}  // namespace strata::api
