// An HTTP/1.1 server on Boost.Beast and Asio that knows nothing of AWS: it
// reads requests, hands them to a handler on a bounded worker pool and writes
// the answers; what an answer says (and the error envelope of a refusal) is
// the caller's business.
//
// Why event-driven: a connection costs a socket and a small buffer, not a
// thread, so thousands of idle keep-alive or slow clients hold no worker and
// cannot stop anyone else's request. Every phase of a connection has a
// deadline and a size limit enforced while reading (header, body -- for
// Content-Length and chunked bodies alike -- idle keep-alive, write), so a
// client can neither pin a connection forever nor make the server buffer more
// than max_body_bytes per request.
//
// Threads: io_threads run the event loop (parsing, writing, and the inline
// handler, which must be fast and must not block); handlers run on `workers`
// threads fed by a queue of at most `queue_limit` requests. A request that
// finds the queue full is answered at once with a Refusal of kind kOverloaded
// rather than waiting without bound.
//
// Thread safety: Stop() may be called from any thread, before or during
// Serve(). The handlers are called concurrently from the worker threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace strata::api::http {

struct Request {
  std::string method;
  std::string target;  // the request-target as sent: path and query, still percent-encoded
  std::string path;    // target up to '?'
  std::vector<std::pair<std::string, std::string>> headers;  // names as sent
  std::string body;
  std::string peer;  // the client's address:port

  // First value of a header (name in any case), "" when absent.
  std::string get_header_value(std::string_view name) const;
  bool has_header(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // After this answer the connection closes (a refusal mid-request).
  bool close = false;

  void set_header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
  }
  void set_content(std::string content, std::string content_type) {
    body = std::move(content);
    set_header("Content-Type", std::move(content_type));
  }
};

// Why the transport answers a request itself instead of passing it on.
struct Refusal {
  enum Kind {
    kBadRequest,         // 400: unparsable request line, header, chunk or Content-Length
    kRequestTimeout,     // 408: the head or body did not arrive within its timeout
    kBodyTooLarge,       // 413: body (declared or chunked) over max_body_bytes
    kUriTooLong,         // 414: request-target over max_target_bytes
    kHeaderTooLarge,     // 431: head over max_header_bytes
    kOverloaded,         // all workers busy and the queue full
    kHandlerFailed,      // the handler threw
  };
  Kind kind;
  int http_status;
  std::string message;  // for the error body and the log
  // Known when the request head was parsed (empty otherwise): lets the caller
  // answer in the protocol of the path.
  std::string method;
  std::string path;
  std::string peer;
  // The whole request, when it was read before the refusal (kOverloaded,
  // kHandlerFailed); null otherwise.
  const Request* request = nullptr;
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 picks a free port
  size_t max_body_bytes = 1 << 20;
  size_t max_header_bytes = 32 << 10;  // request line and all header fields
  size_t max_target_bytes = 16 << 10;  // the request-target alone
  std::chrono::milliseconds header_timeout{10'000};  // first byte of a request to the end of its head
  std::chrono::milliseconds body_timeout{30'000};    // end of the head to the end of the body
  std::chrono::milliseconds idle_timeout{60'000};    // keep-alive wait for the next request
  std::chrono::milliseconds write_timeout{30'000};   // writing one answer
  // Connections over this are closed as they are accepted: with a full head
  // buffered each (max_header_bytes), this bounds what slow clients can pin.
  size_t max_connections = 10'000;
  int io_threads = 2;
  int workers = 8;
  size_t queue_limit = 32;
};

class Server {
 public:
  using Handler = std::function<Response(const Request&)>;
  // Called on an I/O thread before queueing; answers cheap requests (a health
  // check) there so they stay fast when the workers are busy. nullopt: queue.
  using InlineHandler = std::function<std::optional<Response>(const Request&)>;
  // Builds the answer to a refusal (and logs it). Called on any thread.
  using RefusalHandler = std::function<Response(const Refusal&)>;

  Server(ServerOptions options, Handler handler, InlineHandler inline_handler,
         RefusalHandler refusal_handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens; after this, port() is the real port.
  Status Bind();
  int port() const;
  // Serves until Stop(). Returns once every request being handled has been
  // answered and every connection is closed.
  Status Serve();
  // Stops accepting, closes idle and half-read connections at once, and lets
  // requests already being handled finish (their connections then close).
  void Stop();

  class Impl;  // public only so that the connections in http_server.cc can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace strata::api::http
