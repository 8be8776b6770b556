// Routing on top of the HTTP transport (api/http_server.h): each request is
// verified once (SigV4, scoped to the service it is routed to), its caller
// resolved to a Principal, and handed to its service (api/services.cc); the
// AWS error envelope of that service's protocol for what the transport
// refuses itself; and one log line per request.
#include <fmt/format.h>

#include "api/api.h"
#include "api/http_server.h"
#include "api/service.h"
#include "api/wire/public_error.h"
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

// The error code of a transport refusal in a protocol: the Query APIs' codes,
// or the JSON protocols' exceptions.
const ErrorCode& RefusalCode(http::Refusal::Kind kind, Protocol protocol) {
  bool query = protocol == Protocol::kQuery;
  switch (kind) {
    case http::Refusal::kBadRequest: return query ? errors::kMalformedHttpRequest : errors::kDataMalformedHttpRequest;
    case http::Refusal::kRequestTimeout: return query ? errors::kRequestTimeout : errors::kDataRequestTimeout;
    case http::Refusal::kBodyTooLarge: return query ? errors::kRequestEntityTooLarge : errors::kDataRequestTooLarge;
    case http::Refusal::kUriTooLong: return query ? errors::kRequestURITooLong : errors::kDataURITooLong;
    case http::Refusal::kHeaderTooLarge:
      return query ? errors::kRequestHeaderFieldsTooLarge : errors::kDataHeaderFieldsTooLarge;
    case http::Refusal::kOverloaded: return query ? errors::kThrottling : errors::kDataThrottling;
    case http::Refusal::kHandlerFailed: break;
  }
  return query ? errors::kInternalFailure : errors::kDataInternal;
}

const ErrorCode& InternalCode(Protocol protocol) {
  return protocol == Protocol::kQuery ? errors::kInternalFailure : errors::kDataInternal;
}

// The service a request's credential scope names (Credential=AKID/DATE/REGION/SERVICE/aws4_request,
// in the Authorization header or a presigned URL's X-Amz-Credential), unverified:
// it only picks the route, whose own verification then checks it. "" if none.
std::string ScopeService(const http::Request& req) {
  std::string credential;
  std::string auth = req.get_header_value("Authorization");
  if (size_t at = auth.find("Credential="); at != std::string::npos) {
    credential = auth.substr(at + 11, auth.find_first_of(", ", at) - (at + 11));
  } else if (size_t q = req.target.find("X-Amz-Credential="); q != std::string::npos) {
    // Percent-encoded in a query string: only the slashes matter here.
    std::string encoded = req.target.substr(q + 17, req.target.find('&', q) - (q + 17));
    for (size_t i = 0; i < encoded.size(); ++i) {
      bool slash = encoded.compare(i, 3, "%2F") == 0 || encoded.compare(i, 3, "%2f") == 0;
      credential += slash ? '/' : encoded[i];
      if (slash) i += 2;
    }
  }
  // AKID/DATE/REGION/SERVICE/aws4_request: the fourth part.
  size_t pos = 0;
  for (int i = 0; i < 3 && pos != std::string::npos; ++i) {
    pos = credential.find('/', pos);
    if (pos != std::string::npos) ++pos;
  }
  if (pos == std::string::npos) return "";
  return credential.substr(pos, credential.find('/', pos) - pos);
}

struct Route {
  std::string_view name;  // the SigV4 service the signature must be scoped to
  Protocol protocol;
  std::unique_ptr<Service> service;
};

}  // namespace

class Server::Impl {
 public:
  Impl(ServerConfig c, control::ControlPlane* cp)
      : config(std::move(c)),
        account_id(cp->AccountId()),
        routes(BuildRoutes(ServiceContext{cp, config})),
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
  std::string account_id;
  std::vector<Route> routes;  // routes[0] is the default
  http::Server http;

  static std::vector<Route> BuildRoutes(const ServiceContext& context) {
    std::vector<Route> out;
    for (const ServiceRegistration& r : RegisteredServices()) {
      if (auto service = r.make(context)) out.push_back({r.name, r.protocol, std::move(service)});
    }
    return out;
  }

  // Where a request goes: a REST service owning its path; else the service
  // its credential scope names, among those that answer at a shared path
  // (Query, JSON); else the default, whose verification then tells the
  // client which scope this endpoint expects. `req` is null when only the
  // path is known (a refusal before the head was read).
  const Route& RouteOf(std::string_view path, const http::Request* req) const {
    for (const Route& r : routes) {
      if (r.service->OwnsPath(path)) return r;
    }
    if (req != nullptr) {
      std::string scope = ScopeService(*req);
      for (const Route& r : routes) {
        if (r.name == scope) {
          if (r.protocol != Protocol::kRestJson) return r;
          break;  // a REST service answers only at the paths it owns
        }
      }
    }
    return routes.front();
  }

  // The AWS error envelope of the protocol the request is routed to, logged
  // like every other failed request.
  http::Response Refuse(const http::Refusal& refusal) {
    std::string request_id = RandomUuid();
    const Route& route = RouteOf(refusal.path, refusal.request);
    Status st(RefusalCode(refusal.kind, route.protocol), refusal.message);
    std::string action;
    if (refusal.request != nullptr) {
      action = route.service->ActionOf(*refusal.request);
    } else if (!refusal.path.empty()) {
      // Only the head is known: a REST API's path still names the action.
      http::Request head;
      head.method = refusal.method;
      head.path = refusal.path;
      action = route.service->ActionOf(head);
    }
    http::Response res;
    route.service->WriteError(PublicError(st, request_id, InternalCode(route.protocol)), request_id, res);
    nlohmann::json fields = {{"request_id", request_id}, {"method", refusal.method}, {"path", refusal.path},
                             {"service", route.name},    {"action", action},          {"status", res.status},
                             {"error", st.code().aws_code}, {"message", st.message()}, {"peer", refusal.peer}};
    if (res.status >= 500) log::Error("request", fields);
    else log::Warn("request refused", fields);
    return res;
  }

  // The caller behind a verified signature. Every key stratad knows today is
  // the account's root user; IAM will look its users' and roles' keys up here.
  Principal Resolve(const sigv4::Identity& identity) const {
    return Principal::Root(account_id, identity.access_key_id);
  }

  void Dispatch(const http::Request& req, http::Response& res) {
    std::string request_id = RandomUuid();
    auto start = std::chrono::steady_clock::now();
    sigv4::Request signed_req = ToSigV4(req);
    const Route& route = RouteOf(req.path, &req);

    // The signature must have been made for the routed service in this region.
    auto identity = sigv4::Verify(signed_req, config.secrets, config.clock->Now(),
                                  {.region = config.region, .service = route.name});
    Outcome outcome;
    if (identity.ok()) {
      outcome = route.service->Handle(Resolve(*identity), Call{req, signed_req.raw_query, request_id}, res);
    } else {
      outcome.action = route.service->ActionOf(req);
      outcome.status = identity.status();
      route.service->WriteError(identity.status(), request_id, res);
      outcome.http_status = res.status;
    }

    auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - start).count();
    nlohmann::json fields = {{"request_id", request_id}, {"method", req.method}, {"path", req.path},
                             {"service", route.name},    {"action", outcome.action}, {"status", outcome.http_status},
                             {"micros", micros}};
    if (!outcome.status.ok()) {
      fields["error"] = outcome.status.code().aws_code;
      fields["message"] = outcome.status.message();
    }
    if (identity.ok()) fields["access_key_id"] = identity->access_key_id;
    if (outcome.http_status >= 500) log::Error("request", fields);
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
