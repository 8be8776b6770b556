// What the server asks of each AWS (or Strata-internal) service it routes to.
// A service lives in its own folder (api/rds/, api/rds_data/, ...) and is
// registered with one line in api/services.cc; see api.h for how a request
// finds its service.
//
// Thread safety: Handle and WriteError are called concurrently from the
// server's worker threads.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "api/http_server.h"
#include "common/principal.h"
#include "common/status.h"

namespace strata::control {
class ControlPlane;
}

namespace strata::api {

struct ServerConfig;

// The AWS wire protocols (botocore's metadata.protocol).
enum class Protocol {
  kQuery,     // form parameters with Action and Version, XML answers (rds, iam, sts, monitoring)
  kRestJson,  // the operation in the URI path, JSON bodies (rds-data, backup, lambda)
  kJson,      // POST / with X-Amz-Target, JSON bodies (events; Strata's own "strata")
};

// One request that passed SigV4 for this service.
struct Call {
  const http::Request& http;
  std::string_view raw_query;  // the query string as sent (without '?'), still percent-encoded
  const std::string& request_id;
};

// What a handler did, for the server's request log. The client has already
// been answered (in the public form of any error).
struct Outcome {
  std::string action;
  Status status = Status::Ok();  // a failure with its full detail, for the log only
  int http_status = 200;
};

class Service {
 public:
  virtual ~Service() = default;

  // True if `path` is one of this service's own operations (a REST API's URI).
  // Services that all answer at "/" (Query, JSON) own no path: the signature's
  // scope tells them apart.
  virtual bool OwnsPath(std::string_view /*path*/) const { return false; }

  // Serves one authenticated request, writing the answer (success or the
  // protocol's error envelope) into `res`.
  virtual Outcome Handle(const Principal& caller, const Call& call, http::Response& res) = 0;

  // The protocol's error envelope for a request refused before it reached
  // Handle: a SigV4 failure or a refusal by the transport. `status` is
  // already in its public form (see wire/public_error.h).
  virtual void WriteError(const Status& status, const std::string& request_id, http::Response& res) const = 0;

  // The operation a request names, for the log of a refused request ("" if
  // it cannot be told).
  virtual std::string ActionOf(const http::Request& req) const = 0;
};

// What a service is built from.
struct ServiceContext {
  control::ControlPlane* control;
  const ServerConfig& config;
};

// A row of the registration table: the SigV4 service name (the credential
// scope's service), its protocol, and how to build it. A factory may return
// null: the service is not served in this configuration (a test-only one).
struct ServiceRegistration {
  std::string_view name;
  Protocol protocol;
  std::unique_ptr<Service> (*make)(const ServiceContext&);
};

// The table, in api/services.cc. The first row is the default route: a
// request that names no service the server knows goes to it (and its
// signature check then says which scope it expects).
std::vector<ServiceRegistration> RegisteredServices();

}  // namespace strata::api
