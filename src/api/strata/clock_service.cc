#include "api/strata/clock_service.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "api/api.h"
#include "common/log.h"
#include "control/control.h"

namespace strata::api {
namespace {

using nlohmann::json;

constexpr std::string_view kPath = "/strata/clock";
constexpr ErrorCode kUnknownOperation{"UnknownOperationException", 404};
constexpr ErrorCode kValidation{"ValidationException", 400};

JsonResponse Now(const ManualClock& clock) {
  TimePoint now = clock.Now();
  json body = {{"now", FormatIso8601(now)}, {"epochSeconds", ToEpochSeconds(now)}};
  return JsonResponse{200, body.dump(), ""};
}

// The time a set or advance request asks for.
Result<TimePoint> Target(const ManualClock& clock, std::string_view op, const json& req) {
  if (op == "set") {
    auto it = req.find("time");
    if (it == req.end() || !it->is_string()) return Status(kValidation, "set needs {\"time\": ISO 8601}");
    auto t = ParseIso8601(it->get<std::string>());
    if (!t) return Status(kValidation, "not an ISO 8601 time with a zone: " + it->get<std::string>());
    return *t;
  }
  auto it = req.find("seconds");
  if (it == req.end() || !it->is_number()) return Status(kValidation, "advance needs {\"seconds\": n}");
  double seconds = it->get<double>();
  // Bounded before the microseconds are computed: a huge value would overflow them.
  if (!std::isfinite(seconds) || seconds < 0 || seconds > 1e10) {
    return Status(kValidation, "seconds must be from 0 to 1e10");
  }
  return clock.Now() + std::chrono::microseconds(static_cast<int64_t>(std::llround(seconds * 1e6)));
}

}  // namespace

bool ClockService::OwnsPath(std::string_view path) const {
  return path.substr(0, kPath.size()) == kPath && (path.size() == kPath.size() || path[kPath.size()] == '/');
}

std::string ClockService::ActionOf(const http::Request& req) const {
  std::string_view op = std::string_view(req.path).substr(std::min(req.path.size(), kPath.size()));
  return op.empty() ? "GetClock" : op == "/set" ? "SetClock" : op == "/advance" ? "AdvanceClock" : "";
}

void ClockService::WriteError(const Status& status, const std::string& request_id, http::Response& res) const {
  SendJson(res, JsonAuthError(status), request_id);
}

Outcome ClockService::Handle(const Principal& /*caller: IAM authorizes against it*/, const Call& call,
                             http::Response& res) {
  Outcome out{.action = ActionOf(call.http)};
  JsonResponse r = Run(call.http.method, call.http.path, call.http.body, out.status);
  out.http_status = r.status;
  SendJson(res, r, call.request_id);
  return out;
}

std::unique_ptr<Service> NewStrataService(const ServiceContext& context) {
  if (context.config.manual_clock == nullptr) return nullptr;
  return std::make_unique<ClockService>(context.config.manual_clock, context.control);
}

JsonResponse ClockService::Run(const std::string& method, const std::string& path, const std::string& body,
                               Status& failure) {
  auto fail = [&failure](Status st) {
    failure = st;
    return JsonError(st);
  };
  std::string_view op = std::string_view(path).substr(kPath.size());
  if (method == "GET" && op.empty()) return Now(*clock_);
  if (method != "POST" || (op != "/set" && op != "/advance")) {
    return fail(Status(kUnknownOperation, fmt::format("no operation {} {}", method, path)));
  }
  op.remove_prefix(1);
  json req = json::parse(body.empty() ? std::string("{}") : body, nullptr, false);
  if (req.is_discarded() || !req.is_object()) return fail(Status(kValidation, "the body is not a JSON object"));
  std::lock_guard lock(move_mu_);
  auto target = Target(*clock_, op, req);
  if (!target.ok()) return fail(target.status());
  TimePoint before = clock_->Now();
  if (*target < before) {
    return fail(Status(kValidation, fmt::format("the manual clock only moves forward: it is {}, not {}",
                                                     FormatIso8601(before), FormatIso8601(*target))));
  }
  clock_->Set(*target);
  log::Warn("MANUAL CLOCK moved", {{"from", FormatIso8601(before)}, {"to", FormatIso8601(*target)}});
  control_->RunScheduler();
  return Now(*clock_);
}

}  // namespace strata::api
