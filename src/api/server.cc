// Routing and the AWS wire protocols on top of the HTTP transport
// (api/http_server.h): SigV4, then the RDS Query API or the RDS Data API by
// path; and the AWS error envelope for what the transport refuses itself.
#include <fmt/format.h>

#include "api/api.h"
#include "api/clock_endpoint.h"
#include "api/http_server.h"
#include "api/query_params.h"
#include "api/rds_data.h"
#include "api/rds_query.h"
#include "common/ids.h"
#include "common/log.h"

namespace strata::api {
namespace {

sigv4::Request ToSigV4(const http::Request& req) {
  sigv4::Request out;
  out.method = req.method;
  std::string target = req.target.empty() ? req.path : req.target;
  size_t q = target.find('?');
  out.raw_path = target.substr(0, q);
  if (q != std::string::npos) out.raw_query = target.substr(q + 1);
  for (const auto& [k, v] : req.headers) out.headers.emplace_back(k, v);
  out.body = req.body;
  return out;
}

void SendXml(http::Response& res, int status, std::string body, const std::string& request_id) {
  res.status = status;
  res.set_header("x-amzn-RequestId", request_id);
  res.set_content(std::move(body), "text/xml");
}

void SendJson(http::Response& res, const JsonResponse& r, const std::string& request_id) {
  res.status = r.status;
  res.set_header("x-amzn-RequestId", request_id);
  if (!r.error_type.empty()) res.set_header("x-amzn-ErrorType", r.error_type);
  res.set_content(r.body, "application/json");
}

http::ServerOptions TransportOptions(const ServerConfig& c) {
  http::ServerOptions o;
  o.host = c.host;
  o.port = c.port;
  o.max_body_bytes = c.max_body_bytes;
  o.header_timeout = c.header_timeout;
  o.body_timeout = c.body_timeout;
  o.idle_timeout = c.idle_timeout;
  o.workers = c.workers;
  o.queue_limit = c.queue_limit;
  return o;
}

// The error code of a transport refusal in the Query API (first) and in the
// Data API (second).
std::pair<const ErrorCode*, const ErrorCode*> RefusalCodes(http::Refusal::Kind kind) {
  switch (kind) {
    case http::Refusal::kBadRequest: return {&errors::kMalformedHttpRequest, &errors::kDataMalformedHttpRequest};
    case http::Refusal::kRequestTimeout: return {&errors::kRequestTimeout, &errors::kDataRequestTimeout};
    case http::Refusal::kBodyTooLarge: return {&errors::kRequestEntityTooLarge, &errors::kDataRequestTooLarge};
    case http::Refusal::kUriTooLong: return {&errors::kRequestURITooLong, &errors::kDataURITooLong};
    case http::Refusal::kHeaderTooLarge:
      return {&errors::kRequestHeaderFieldsTooLarge, &errors::kDataHeaderFieldsTooLarge};
    case http::Refusal::kOverloaded: return {&errors::kThrottling, &errors::kDataThrottling};
    case http::Refusal::kHandlerFailed: break;
  }
  return {&errors::kInternalFailure, &errors::kDataInternal};
}

}  // namespace

class Server::Impl {
 public:
  Impl(ServerConfig c, control::ControlPlane* cp)
      : config(std::move(c)),
        rds(cp),
        data(cp),
        clock(config.manual_clock, cp),
        http(
            TransportOptions(config),
            [this](const http::Request& req) {
              http::Response res;
              Dispatch(req, res);
              return res;
            },
            [](const http::Request& req) -> std::optional<http::Response> {
              // On the I/O thread, so a load balancer's check answers even
              // when every worker is busy.
              if (req.method != "GET" || req.path != "/health") return std::nullopt;
              http::Response res;
              res.set_content("ok\n", "text/plain");
              return res;
            },
            [this](const http::Refusal& r) { return Refuse(r); }) {}

  ServerConfig config;
  RdsQueryApi rds;
  RdsDataApi data;
  ClockEndpoint clock;  // answers only with --clock manual
  http::Server http;

  // The AWS error envelope of the protocol the path belongs to (XML unless it
  // is a Data API path), logged like every other failed request.
  http::Response Refuse(const http::Refusal& refusal) {
    std::string request_id = RandomUuid();
    bool is_data_api = !refusal.path.empty() && data.Handles(refusal.path);
    auto [query_code, data_code] = RefusalCodes(refusal.kind);
    Status st(is_data_api ? *data_code : *query_code, refusal.message);
    std::string action;
    if (is_data_api) {
      action = refusal.path.substr(1);
    } else if (refusal.request != nullptr) {
      action = QueryAction(*refusal.request);
    }
    http::Response res;
    if (is_data_api) {
      SendJson(res, JsonError(st), request_id);
    } else {
      SendXml(res, st.code().http_status, RdsErrorXml(st, request_id), request_id);
    }
    nlohmann::json fields = {{"request_id", request_id}, {"method", refusal.method}, {"path", refusal.path},
                             {"action", action}, {"status", res.status}, {"error", st.code().aws_code},
                             {"message", st.message()}, {"peer", refusal.peer}};
    if (res.status >= 500) log::Error("request", fields);
    else log::Warn("request refused", fields);
    return res;
  }

  // The Action of a Query API request, from its query string or form body.
  static std::string QueryAction(const http::Request& req) {
    size_t q = req.target.find('?');
    auto params = QueryParams::Parse(q == std::string::npos ? std::string() : req.target.substr(q + 1));
    if (params.ok() && req.method == "POST") {
      auto form = QueryParams::Parse(req.body);
      if (form.ok()) params->Merge(*form);
    }
    return params.ok() ? params->Get("Action").value_or("") : "";
  }

  void Dispatch(const http::Request& req, http::Response& res) {
    std::string request_id = RandomUuid();
    auto start = std::chrono::steady_clock::now();
    sigv4::Request signed_req = ToSigV4(req);
    bool is_clock = clock.Handles(req.path);
    bool is_data_api = is_clock || data.Handles(req.path);  // both speak JSON
    std::string action;
    Status st = Status::Ok();
    int status = 200;

    // The path says which service this request is for; the signature must
    // have been made for that service in this region.
    std::string_view service = is_clock ? ClockEndpoint::kService : is_data_api ? "rds-data" : "rds";
    auto identity = sigv4::Verify(signed_req, config.secrets, config.clock->Now(),
                                  {.region = config.region, .service = service});
    if (!identity.ok()) st = identity.status();

    if (is_data_api) {
      action = req.path.substr(1);
      JsonResponse r = !st.ok()   ? JsonAuthError(st)
                       : is_clock ? clock.Handle(req.method, req.path, req.body)
                                  : data.Handle(req.path, req.body);
      status = r.status;
      SendJson(res, r, request_id);
    } else {
      std::string body;
      if (st.ok()) {
        auto params = QueryParams::Parse(signed_req.raw_query);
        if (params.ok() && req.method == "POST") {
          auto form = QueryParams::Parse(req.body);
          if (form.ok()) {
            params->Merge(*form);
          } else {
            params = form.status();
          }
        }
        if (!params.ok()) {
          st = params.status();
        } else {
          action = params->Get("Action").value_or("");
          auto out = rds.Handle(*params, request_id);
          if (out.ok()) body = std::move(*out);
          else st = out.status();
        }
      }
      status = st.ok() ? 200 : st.code().http_status;
      SendXml(res, status, st.ok() ? std::move(body) : RdsErrorXml(st, request_id), request_id);
    }

    auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - start).count();
    nlohmann::json fields = {{"request_id", request_id}, {"method", req.method},
                             {"path", req.path}, {"action", action}, {"status", status},
                             {"micros", micros}};
    if (!st.ok()) {
      fields["error"] = st.code().aws_code;
      fields["message"] = st.message();
    }
    if (identity.ok()) fields["access_key_id"] = identity->access_key_id;
    if (status >= 500) log::Error("request", fields);
    else log::Info("request", fields);
  }
};

Server::Server(ServerConfig config, control::ControlPlane* control)
    : impl_(std::make_unique<Impl>(std::move(config), control)) {}

Server::~Server() = default;

Status Server::Bind() { return impl_->http.Bind(); }

int Server::port() const { return impl_->http.port(); }

Status Server::Serve() { return impl_->http.Serve(); }

void Server::Stop() { impl_->http.Stop(); }

}  // namespace strata::api
