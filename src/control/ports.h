// Private to control/: the loopback ports of instances whose engine serves
// on one (postgres).
#pragma once

#include <mutex>
#include <optional>
#include <set>

#include "control/context.h"

namespace strata::control {

class Ports {
 public:
  explicit Ports(Context& ctx) : ctx_(ctx) {}

  // The loopback port of a new instance of an engine that serves on one: the
  // one asked for if no other instance has it, else a free one.
  Result<int> Assign(std::optional<int> requested);
  // Starts r's server. A port that Assign picked (not one the caller asked
  // for) can be taken by another process before the server binds it: then r
  // moves to another port, a few times.
  Status StartOnPickedPort(catalog::InstanceRecord& r, engine::Engine& e);

 private:
  Context& ctx_;
  std::mutex mu_;
  std::set<int> picked_;  // under mu_
};

}  // namespace strata::control
