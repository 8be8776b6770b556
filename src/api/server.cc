#include <httplib.h>

#include <fmt/format.h>

#include "api/api.h"
#include "api/query_params.h"
#include "api/rds_data.h"
#include "api/rds_query.h"
#include "common/ids.h"
#include "common/log.h"

namespace strata::api {
namespace {

sigv4::Request ToSigV4(const httplib::Request& req) {
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

void SendXml(httplib::Response& res, int status, std::string body, const std::string& request_id) {
  res.status = status;
  res.set_header("x-amzn-RequestId", request_id);
  res.set_content(std::move(body), "text/xml");
}

void SendJson(httplib::Response& res, const JsonResponse& r, const std::string& request_id) {
  res.status = r.status;
  res.set_header("x-amzn-RequestId", request_id);
  if (!r.error_type.empty()) res.set_header("x-amzn-ErrorType", r.error_type);
  res.set_content(r.body, "application/json");
}

}  // namespace

class Server::Impl {
 public:
  Impl(ServerConfig c, control::ControlPlane* cp) : config(std::move(c)), rds(cp), data(cp) {}

  ServerConfig config;
  httplib::Server http;
  RdsQueryApi rds;
  RdsDataApi data;
  int port = 0;

  void Route() {
    http.set_payload_max_length(config.max_body_bytes);
    int threads = config.threads;
    http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok\n", "text/plain");
    });
    auto any = [this](const httplib::Request& req, httplib::Response& res) { Dispatch(req, res); };
    http.Post(".*", any);
    http.Get(".*", any);
    http.Put(".*", any);
    http.Delete(".*", any);
    http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      // httplib's own refusals (413 over the body limit, 400 unparsable) get
      // an AWS-shaped body too, so clients print a reason.
      if (!res.body.empty()) return;
      std::string request_id = RandomUuid();
      if (res.status == 413) {
        SendXml(res, 413,
                RdsErrorXml(Status(errors::kRequestEntityTooLarge, "Request body too large"),
                            request_id),
                request_id);
      } else if (res.status == 404) {
        SendXml(res, 404, RdsErrorXml(Status(errors::kInvalidAction, "Unknown path"), request_id),
                request_id);
      }
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res,
                                  std::exception_ptr) {
      std::string request_id = RandomUuid();
      log::Error("unhandled exception", {{"request_id", request_id}});
      SendXml(res, 500,
              RdsErrorXml(Status(errors::kInternalFailure, "internal error"), request_id),
              request_id);
    });
  }

  void Dispatch(const httplib::Request& req, httplib::Response& res) {
    std::string request_id = RandomUuid();
    auto start = std::chrono::steady_clock::now();
    sigv4::Request signed_req = ToSigV4(req);
    bool is_data_api = data.Handles(req.path);
    std::string action;
    Status st = Status::Ok();
    int status = 200;

    // The path says which service this request is for; the signature must
    // have been made for that service in this region.
    std::string_view service = is_data_api ? "rds-data" : "rds";
    auto identity = sigv4::Verify(signed_req, config.secrets, config.clock->Now(),
                                  {.region = config.region, .service = service});
    if (!identity.ok()) st = identity.status();

    if (is_data_api) {
      action = req.path.substr(1);
      JsonResponse r = st.ok() ? data.Handle(req.path, req.body) : JsonAuthError(st);
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
    : impl_(std::make_unique<Impl>(std::move(config), control)) {
  impl_->Route();
}

Server::~Server() = default;

Status Server::Bind() {
  if (impl_->config.port == 0) {
    impl_->port = impl_->http.bind_to_any_port(impl_->config.host);
  } else {
    impl_->port = impl_->http.bind_to_port(impl_->config.host, impl_->config.port)
                      ? impl_->config.port
                      : -1;
  }
  if (impl_->port <= 0) {
    return Status(errors::kIoError, fmt::format("cannot listen on {}:{}", impl_->config.host,
                                                impl_->config.port));
  }
  return Status::Ok();
}

int Server::port() const { return impl_->port; }

Status Server::Serve() {
  if (!impl_->http.listen_after_bind()) {
    return Status(errors::kIoError, "HTTP server stopped with an error");
  }
  return Status::Ok();
}

void Server::Stop() { impl_->http.stop(); }

}  // namespace strata::api
