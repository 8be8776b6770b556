#include "api/http_server.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include "common/log.h"

namespace strata::api::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {
bool SameName(std::string_view a, std::string_view b) {
  return beast::iequals(beast::string_view(a.data(), a.size()), beast::string_view(b.data(), b.size()));
}
}  // namespace

std::string Request::get_header_value(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (SameName(k, name)) return v;
  }
  return "";
}

bool Request::has_header(std::string_view name) const {
  return std::any_of(headers.begin(), headers.end(), [&](const auto& h) { return SameName(h.first, name); });
}

namespace {

// Fixed threads fed by a bounded queue. Capacity counts running and waiting
// tasks together (workers + queue_limit), so the answer to TrySubmit does not
// depend on how fast an idle worker wakes up.
class WorkerPool {
 public:
  WorkerPool(int threads, size_t queue_limit)
      : capacity_(static_cast<size_t>(std::max(1, threads)) + queue_limit) {
    for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { Run(); });
  }
  ~WorkerPool() { Shutdown(); }

  // False when every worker is busy and the queue is full.
  bool TrySubmit(std::function<void()> task) {
    {
      std::lock_guard lock(mu_);
      if (stopping_ || queue_.size() + running_ >= capacity_) return false;
      queue_.push_back(std::move(task));
    }
    cv_.notify_one();
    return true;
  }

  // Runs what is queued, then joins the threads.
  void Shutdown() {
    {
      std::lock_guard lock(mu_);
      if (stopping_ && threads_.empty()) return;
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void Run() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      auto task = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
      lock.unlock();
      task();  // tasks catch their own exceptions
      lock.lock();
      --running_;
    }
  }

  const size_t capacity_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  size_t running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// After an answer that closes the connection, keep reading (and discarding)
// for a moment: closing a socket with unread input makes the kernel send a
// reset, which can destroy the answer before the client reads it (a client
// still sending a refused body would see "connection reset", not the 413).
constexpr std::chrono::milliseconds kLingerTime{2'000};

}  // namespace

class Session;

class Server::Impl {
 public:
  Impl(ServerOptions o, Handler h, InlineHandler ih, RefusalHandler rh)
      : options(std::move(o)),
        handler(std::move(h)),
        inline_handler(std::move(ih)),
        refusal_handler(std::move(rh)),
        pool(options.workers, options.queue_limit),
        ioc(std::max(1, options.io_threads)),
        acceptor(asio::make_strand(ioc)),
        accept_retry(acceptor.get_executor()) {}

  void DoAccept();
  void Register(uint64_t id, std::weak_ptr<Session> s) {
    std::lock_guard lock(sessions_mu);
    sessions.emplace(id, std::move(s));
  }
  void Unregister(uint64_t id) {
    std::lock_guard lock(sessions_mu);
    sessions.erase(id);
  }

  // Declared in this order so that destroying the io_context (which destroys
  // handlers never run, and with them sessions) still finds the registry.
  const ServerOptions options;
  const Handler handler;
  const InlineHandler inline_handler;
  const RefusalHandler refusal_handler;
  std::atomic<bool> stopping{false};
  std::mutex sessions_mu;
  std::unordered_map<uint64_t, std::weak_ptr<Session>> sessions;
  uint64_t next_session_id = 0;  // acceptor strand only
  bool warned_full = false;      // acceptor strand only
  WorkerPool pool;
  asio::io_context ioc;
  tcp::acceptor acceptor;
  asio::steady_timer accept_retry;
  int port = 0;
};

// One connection: reads requests one after another (idle wait, head, body),
// hands each to the worker pool and writes its answer. Every step runs on the
// connection's strand; a steady_timer bounds each phase.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, Server::Impl* server, uint64_t id)
      : socket_(std::move(socket)),
        deadline_(socket_.get_executor()),
        buffer_(server->options.max_header_bytes + 8192),
        server_(server),
        id_(id) {
    error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    if (!ec) peer_ = fmt::format("{}:{}", ep.address().to_string(), ep.port());
  }
  ~Session() { server_->Unregister(id_); }

  void Start() {
    asio::dispatch(socket_.get_executor(), [self = shared_from_this()] { self->ReadNext(); });
  }

  // From Stop(): a connection waiting for or reading a request closes now; one
  // whose request is being handled or answered finishes that first.
  void CloseIfNotBusy() {
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      if (self->phase_ != Phase::kHandling && self->phase_ != Phase::kWriting) self->Close();
    });
  }

 private:
  enum class Phase { kIdle, kHead, kBody, kHandling, kWriting, kLingering, kClosed };

  const ServerOptions& options() const { return server_->options; }

  void Arm(std::chrono::milliseconds timeout) {
    timed_out_ = false;
    const uint64_t generation = ++timer_generation_;
    deadline_.expires_after(timeout);
    deadline_.async_wait([self = shared_from_this(), generation](error_code ec) {
      if (ec || generation != self->timer_generation_) return;
      self->timed_out_ = true;
      error_code ignored;
      self->socket_.cancel(ignored);  // the pending read or write fails with operation_aborted
    });
  }
  void Disarm() {
    ++timer_generation_;
    deadline_.cancel();
  }

  void ReadNext() {
    if (phase_ == Phase::kClosed) return;
    if (server_->stopping) return Close();
    phase_ = Phase::kIdle;
    if (buffer_.size() > 0) return ReadHead();  // a pipelined request is already here
    buffer_.shrink_to_fit();                     // an idle connection holds no large buffer
    Arm(options().idle_timeout);
    socket_.async_read_some(buffer_.prepare(4096), [self = shared_from_this()](error_code ec, size_t n) {
      if (ec) return self->Close();  // idle timeout, the client left, or Stop
      self->buffer_.commit(n);
      self->ReadHead();
    });
  }

  void ReadHead() {
    phase_ = Phase::kHead;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(options().max_header_bytes));
    parser_->body_limit(options().max_body_bytes);
    Arm(options().header_timeout);
    bhttp::async_read_header(socket_, buffer_, *parser_,
                             [self = shared_from_this()](error_code ec, size_t) { self->OnHead(ec); });
  }

  void OnHead(error_code ec) {
    if (ec) return OnReadError(ec);
    const auto& req = parser_->get();
    if (req.target().size() > options().max_target_bytes) {
      return Refuse(Refusal::kUriTooLong, 414,
                    fmt::format("The request-target is longer than {} bytes", options().max_target_bytes));
    }
    if (beast::iequals(req[bhttp::field::expect], "100-continue") && !parser_->is_done()) {
      // The client waits for this before sending the body.
      auto cont = std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::continue_, 11);
      phase_ = Phase::kWriting;
      Arm(options().write_timeout);
      bhttp::async_write(socket_, *cont, [self = shared_from_this(), cont](error_code ec, size_t) {
        if (ec) return self->Close();
        self->ReadBody();
      });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    phase_ = Phase::kBody;
    if (parser_->is_done()) return OnBody({});
    Arm(options().body_timeout);
    bhttp::async_read(socket_, buffer_, *parser_,
                      [self = shared_from_this()](error_code ec, size_t) { self->OnBody(ec); });
  }

  void OnReadError(error_code ec) {
    if (phase_ == Phase::kClosed) return;
    if (timed_out_) {
      return Refuse(Refusal::kRequestTimeout, 408,
                    phase_ == Phase::kHead ? "The request head did not arrive in time"
                                           : "The request body did not arrive in time");
    }
    if (ec == bhttp::error::body_limit) {
      return Refuse(Refusal::kBodyTooLarge, 413,
                    fmt::format("Request body larger than {} bytes", options().max_body_bytes));
    }
    if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
      // The parser takes the request line first: if it has not got it, the
      // line itself -- in practice its target -- is what is too long.
      if (parser_->get().target().empty()) {
        return Refuse(Refusal::kUriTooLong, 414, "The request line is too long");
      }
      return Refuse(Refusal::kHeaderTooLarge, 431,
                    fmt::format("The request head is larger than {} bytes", options().max_header_bytes));
    }
    if (ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category() &&
        ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message &&
        ec != bhttp::error::need_more) {
      // bad_method, bad_target, bad_version, bad_field, bad_value,
      // bad_content_length, bad_transfer_encoding, bad_chunk, ...
      return Refuse(Refusal::kBadRequest, 400, fmt::format("Malformed HTTP request: {}", ec.message()));
    }
    Close();  // the client closed or reset the connection: nobody to answer
  }

  void OnBody(error_code ec) {
    if (ec) return OnReadError(ec);
    Disarm();
    auto msg = parser_->release();
    parser_.reset();
    const bool keep_alive = msg.keep_alive();
    Request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    req.path = req.target.substr(0, req.target.find('?'));
    for (const auto& field : msg) req.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    req.body = std::move(msg.body());
    req.peer = peer_;

    if (server_->inline_handler) {
      if (auto res = server_->inline_handler(req)) return Write(std::move(*res), keep_alive);
    }
    phase_ = Phase::kHandling;
    auto shared_req = std::make_shared<const Request>(std::move(req));
    // The io_context must keep running until the answer is written, though no
    // I/O of this connection is pending while a worker has it.
    auto work = std::make_shared<asio::executor_work_guard<asio::io_context::executor_type>>(
        server_->ioc.get_executor());
    bool queued = server_->pool.TrySubmit([self = shared_from_this(), shared_req, keep_alive, work] {
      Response res = self->HandleOnWorker(*shared_req);
      asio::post(self->socket_.get_executor(), [self, res = std::move(res), keep_alive, work]() mutable {
        self->Write(std::move(res), keep_alive);
      });
    });
    if (!queued) {
      Refusal overload{Refusal::kOverloaded, 503, "Too many requests are being handled; retry later",
                       shared_req->method, shared_req->path, peer_, shared_req.get()};
      Write(RefusalAnswer(overload), keep_alive);
    }
  }

  Response RefusalAnswer(const Refusal& refusal) {
    try {
      return server_->refusal_handler(refusal);
    } catch (...) {
      Response res;
      res.status = refusal.http_status;
      res.close = true;
      return res;
    }
  }

  Response HandleOnWorker(const Request& req) {
    std::string what;
    try {
      return server_->handler(req);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
      what = "unknown exception";
    }
    return RefusalAnswer(
        Refusal{Refusal::kHandlerFailed, 500, "unhandled exception: " + what, req.method, req.path, peer_, &req});
  }

  // Answers a request the transport refuses itself; the connection closes
  // after it, since the rest of the request cannot be trusted.
  void Refuse(Refusal::Kind kind, int status, std::string message) {
    Refusal refusal{kind, status, std::move(message), "", "", peer_};
    if (parser_ && !parser_->get().target().empty()) {  // the request line was read
      const auto& req = parser_->get();
      refusal.method = std::string(req.method_string());
      auto target = req.target();
      refusal.path = std::string(target.substr(0, std::min(target.find('?'), options().max_target_bytes)));
    }
    parser_.reset();
    buffer_.clear();
    Response res = RefusalAnswer(refusal);
    res.close = true;
    Write(std::move(res), false);
  }

  void Write(Response res, bool keep_alive) {
    if (phase_ == Phase::kClosed) return;
    keep_alive = keep_alive && !res.close && !server_->stopping;
    res_ = {};
    res_.version(11);
    res_.result(static_cast<unsigned>(res.status));
    for (auto& [k, v] : res.headers) res_.insert(k, v);
    res_.body() = std::move(res.body);
    res_.keep_alive(keep_alive);
    res_.prepare_payload();
    phase_ = Phase::kWriting;
    Arm(options().write_timeout);
    bhttp::async_write(socket_, res_, [self = shared_from_this(), keep_alive](error_code ec, size_t) {
      self->res_ = {};
      if (ec || self->server_->stopping) return self->Close();  // stopping: no lingering either
      if (!keep_alive) return self->Linger();
      self->ReadNext();
    });
  }

  // Half-closes, then discards what the client still sends until it closes
  // too, kLingerTime passes, or a few bodies' worth have been thrown away.
  void Linger() {
    phase_ = Phase::kLingering;
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    linger_budget_ = std::max<size_t>(4 << 20, 2 * options().max_body_bytes);
    Arm(kLingerTime);
    DrainSome();
  }
  void DrainSome() {
    if (!drain_) drain_ = std::make_unique<std::array<char, 8192>>();
    socket_.async_read_some(asio::buffer(*drain_), [self = shared_from_this()](error_code ec, size_t n) {
      if (ec || n >= self->linger_budget_) return self->Close();
      self->linger_budget_ -= n;
      self->DrainSome();
    });
  }

  void Close() {
    if (phase_ == Phase::kClosed) return;
    phase_ = Phase::kClosed;
    Disarm();
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  tcp::socket socket_;
  asio::steady_timer deadline_;
  uint64_t timer_generation_ = 0;
  bool timed_out_ = false;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> res_;
  std::unique_ptr<std::array<char, 8192>> drain_;
  size_t linger_budget_ = 0;
  Phase phase_ = Phase::kIdle;
  Server::Impl* server_;
  const uint64_t id_;
  std::string peer_;
};

void Server::Impl::DoAccept() {
  acceptor.async_accept(asio::make_strand(ioc), [this](error_code ec, tcp::socket socket) {
    if (!acceptor.is_open() || stopping) return;
    if (ec) {
      // Out of file descriptors (or a transient error): try again shortly
      // rather than spinning; open connections keep being served meanwhile.
      log::Warn("accept failed", {{"error", ec.message()}});
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](error_code wait_ec) {
        if (!wait_ec) DoAccept();
      });
      return;
    }
    error_code ignored;
    size_t open_connections;
    {
      std::lock_guard lock(sessions_mu);
      open_connections = sessions.size();
    }
    if (open_connections >= options.max_connections) {
      socket.close(ignored);
      if (!warned_full) log::Warn("too many connections: closing new ones", {{"limit", options.max_connections}});
      warned_full = true;
      return DoAccept();
    }
    warned_full = false;
    socket.set_option(tcp::no_delay(true), ignored);
    uint64_t id = ++next_session_id;
    auto session = std::make_shared<Session>(std::move(socket), this, id);
    Register(id, session);
    session->Start();
    DoAccept();
  });
}

Server::Server(ServerOptions options, Handler handler, InlineHandler inline_handler,
               RefusalHandler refusal_handler)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(handler), std::move(inline_handler),
                                   std::move(refusal_handler))) {}

Server::~Server() = default;

Status Server::Bind() {
  const auto& o = impl_->options;
  error_code ec;
  tcp::resolver resolver(impl_->ioc);
  auto endpoints = resolver.resolve(o.host, std::to_string(o.port), tcp::resolver::passive, ec);
  if (ec || endpoints.empty()) {
    return Status(errors::kIoError, fmt::format("cannot resolve {}: {}", o.host, ec.message()));
  }
  tcp::endpoint endpoint = endpoints.begin()->endpoint();
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status(errors::kIoError, fmt::format("cannot listen on {}:{}: {}", o.host, o.port, ec.message()));
  }
  impl_->port = acceptor.local_endpoint().port();
  return Status::Ok();
}

int Server::port() const { return impl_->port; }

Status Server::Serve() {
  if (!impl_->acceptor.is_open()) return Status(errors::kIoError, "Serve before Bind");
  asio::post(impl_->acceptor.get_executor(), [impl = impl_.get()] {
    if (!impl->stopping) impl->DoAccept();
  });
  auto run = [impl = impl_.get()] {
    for (;;) {
      try {
        impl->ioc.run();
        return;
      } catch (const std::exception& e) {
        // A handler threw (out of memory building an answer, say): that
        // connection is lost, the server goes on.
        log::Error("HTTP event loop error", {{"error", e.what()}});
      }
    }
  };
  std::vector<std::thread> io_threads;
  for (int i = 1; i < impl_->options.io_threads; ++i) io_threads.emplace_back(run);
  run();
  for (auto& t : io_threads) t.join();
  impl_->pool.Shutdown();
  return Status::Ok();
}

void Server::Stop() {
  Impl* impl = impl_.get();
  if (impl->stopping.exchange(true)) return;
  asio::post(impl->acceptor.get_executor(), [impl] {
    error_code ignored;
    impl->acceptor.close(ignored);
    impl->accept_retry.cancel();
  });
  std::vector<std::shared_ptr<Session>> open;
  {
    std::lock_guard lock(impl->sessions_mu);
    for (auto& [id, weak] : impl->sessions) {
      if (auto s = weak.lock()) open.push_back(std::move(s));
    }
  }
  for (auto& s : open) s->CloseIfNotBusy();
}

}  // namespace strata::api::http
