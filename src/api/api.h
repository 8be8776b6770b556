// api/: the wire protocols on one HTTP port. Parses requests, verifies SigV4,
// resolves the caller, routes to a service, serializes responses and AWS
// errors. No business logic lives here.
//
// A request's path through it:
//   http_server (Boost.Beast)  -> Server: route by path or credential scope
//   -> sigv4::Verify, scoped to the routed service in --region
//   -> Principal (access key id -> who; common/principal.h)
//   -> the service's Handle(principal, call)  (api/<service>/)
//   -> control::ControlPlane.
// Routing (api/services.cc holds the table): a REST service owns its paths
// (rds-data: /Execute, /BatchExecute, /BeginTransaction, /CommitTransaction,
// /RollbackTransaction); a request elsewhere goes to the service its
// credential scope names among the Query and JSON ones; anything else to the
// first row, "rds", whose verification then names the scope it expects.
//   GET  /health                      200 "ok" once ready (no auth)
//   GET/POST /strata/clock[/set|/advance]  the manual clock ("strata", api/strata/),
//                                     served only with --clock manual
//
// Errors: internal codes (wire/public_error.h) reach clients as
// InternalFailure / InternalServerErrorException with a generic message and
// the request id; the detail is logged under that id.
//
// Transport: api/http_server.h (event-driven; handlers on a bounded worker
// pool, overload answered with Throttling/ThrottlingException).
// Thread safety: requests are served concurrently on the worker pool;
// Stop() may be called from any thread (a signal handler thread).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/sigv4.h"
#include "common/status.h"
#include "control/control.h"

namespace strata::api {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 5480;  // 0 picks a free port
  size_t max_body_bytes = 1 << 20;
  // Threads that run requests, and how many more may wait for one before the
  // excess is answered with the protocol's throttling error.
  int workers = 8;
  size_t queue_limit = 32;
  std::chrono::milliseconds header_timeout{10'000};  // first byte to the end of the request head
  std::chrono::milliseconds body_timeout{30'000};    // end of the head to the end of the body
  std::chrono::milliseconds idle_timeout{60'000};    // an idle keep-alive connection closes after this
  std::string region = "us-east-1";  // the only region a request's signature may be scoped to
  const Clock* clock = nullptr;  // for SigV4 time checks; not owned
  sigv4::SecretLookup secrets;   // access key id -> secret key
  // Set only by `stratad --clock manual` (tests): the clock the control plane
  // runs on, moved through /strata/clock (api/strata/). Not owned.
  ManualClock* manual_clock = nullptr;
};

class Server {
 public:
  Server(ServerConfig config, control::ControlPlane* control);
  ~Server();

  // Binds the socket; after this, port() is the real port.
  Status Bind();
  int port() const;
  // Serves until Stop(); in-flight requests finish before it returns.
  Status Serve();
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::api
