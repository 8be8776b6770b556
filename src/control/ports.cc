#include "control/ports.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace strata::control {

Result<int> Ports::Assign(std::optional<int> requested) {
  std::lock_guard lock(mu_);
  std::set<int> taken;
  for (const auto& r : ctx_.catalog->ListInstances()) {
    if (r.port > 0) taken.insert(r.port);
  }
  if (requested) {
    if (taken.count(*requested)) {
      return InvalidValue(
          fmt::format("Port {} is used by another DB instance on this host.", *requested));
    }
    return *requested;
  }
  for (int attempt = 0; attempt < 100; ++attempt) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) break;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    int port = 0;
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port = ntohs(addr.sin_port);
    }
    close(fd);
    if (port > 0 && !taken.count(port)) {
      picked_.insert(port);
      return port;
    }
  }
  return Status(errors::kInternalFailure, "no free loopback port for the DB instance");
}

Status Ports::StartOnPickedPort(catalog::InstanceRecord& r, engine::Engine& e) {
  for (int attempt = 1;; ++attempt) {
    Status st = e.Start(SpecOf(r));
    bool picked = false;
    {
      std::lock_guard lock(mu_);
      picked = picked_.count(r.port) > 0;
    }
    if (!st.Is(errors::kPortInUse) || !picked || attempt == 5) return st;
    ASSIGN_OR_RETURN(int port, Assign(std::nullopt));
    log::Warn("another process took the port picked for the server: moving it",
              {{"instance", r.id}, {"from", r.port}, {"to", port}});
    RETURN_IF_ERROR(ctx_.catalog->InTransaction([&]() -> Status {
      ASSIGN_OR_RETURN(auto cur, ctx_.catalog->GetInstance(r.id));
      cur.port = port;
      return ctx_.catalog->UpdateInstance(cur);
    }));
    r.port = port;
  }
}

}  // namespace strata::control
