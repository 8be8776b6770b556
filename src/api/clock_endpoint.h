// The manual clock's endpoint, for tests only: it exists only when stratad
// runs with --clock manual (ServerConfig::manual_clock set); otherwise its
// paths are unknown like any other. Requests are SigV4-signed for the
// service "strata" with the server's credentials, as every other request.
//
//   GET  /strata/clock                          {"now": ISO 8601, "epochSeconds": n}
//   POST /strata/clock/set      {"time": ISO 8601}
//   POST /strata/clock/advance  {"seconds": n}
//
// Set and advance only move the clock forward (schedules and the restorable
// time never go back), then run one scheduler pass so that what became due
// (an automated snapshot, retention) has begun when the answer arrives.
#pragma once

#include <mutex>
#include <string>
#include <string_view>

#include "api/rds_data.h"
#include "common/clock.h"
#include "control/control.h"

namespace strata::api {

class ClockEndpoint {
 public:
  // The SigV4 service name its requests are signed for.
  static constexpr std::string_view kService = "strata";

  // clock null: the endpoint does not exist (the system clock runs).
  ClockEndpoint(ManualClock* clock, control::ControlPlane* control) : clock_(clock), control_(control) {}
  bool Handles(std::string_view path) const;
  JsonResponse Handle(const std::string& method, const std::string& path, const std::string& body);

 private:
  std::mutex move_mu_;  // one move at a time: read, check, set
  ManualClock* clock_;
  control::ControlPlane* control_;
};

}  // namespace strata::api
