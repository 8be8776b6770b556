#include "cmd/clock_command.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <thread>

namespace strata::cli {
namespace {

using nlohmann::json;

int Die(const Status& st) {
  std::fprintf(stderr, "strata: %s\n", st.message().c_str());
  return 1;
}

// True once no automated snapshot is being taken: the work one step started
// is done before the next step, as it would be on a real clock.
Result<bool> Settled(Client& c) {
  ASSIGN_OR_RETURN(auto instances, c.Rds("DescribeDBInstances", {}));
  for (const auto& n : instances.select_nodes("//DBInstances/DBInstance")) {
    if (std::string_view(n.node().child_value("DBInstanceStatus")) == "backing-up") return false;
  }
  ASSIGN_OR_RETURN(auto snapshots, c.Rds("DescribeDBSnapshots", {{"SnapshotType", "automated"}}));
  for (const auto& n : snapshots.select_nodes("//DBSnapshots/DBSnapshot")) {
    if (std::string_view(n.node().child_value("Status")) == "creating") return false;
  }
  return true;
}

Status WaitSettled(Client& c) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  for (;;) {
    ASSIGN_OR_RETURN(bool settled, Settled(c));
    if (settled) return Status::Ok();
    if (std::chrono::steady_clock::now() > deadline) {
      return Status(Client::kClientError, "automated snapshots still running after 5 minutes");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling with a deadline
  }
}

}  // namespace

std::optional<std::chrono::seconds> ParseDuration(std::string_view text) {
  if (text.size() < 2 || text.size() > 12) return std::nullopt;
  int64_t unit = 0;
  switch (text.back()) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    default: return std::nullopt;
  }
  int64_t n = 0;
  for (char ch : text.substr(0, text.size() - 1)) {
    if (ch < '0' || ch > '9') return std::nullopt;
    n = n * 10 + (ch - '0');  // at most 11 digits: no overflow
  }
  return std::chrono::seconds(n * unit);
}

int ClockCommand(Client& client, const ClockArgs& args) {
  Result<json> now = Status(Client::kClientError, "no operation");
  if (args.op == ClockArgs::kGet) {
    now = client.Strata("GET", "/strata/clock", json());
  } else if (args.op == ClockArgs::kSet) {
    now = client.Strata("POST", "/strata/clock/set", {{"time", args.time}});
  } else {
    auto total = ParseDuration(args.duration);
    if (!total) return Die(Status(Client::kClientError, "not a duration (90s, 15m, 6h, 1d): " + args.duration));
    auto step = args.step.empty() ? total : ParseDuration(args.step);
    if (!step || step->count() <= 0) {
      return Die(Status(Client::kClientError, "not a positive duration (90s, 15m, 6h, 1d): " + args.step));
    }
    for (auto left = *total; ; left -= *step) {
      auto move = std::min(left, *step);
      now = client.Strata("POST", "/strata/clock/advance", {{"seconds", move.count()}});
      if (!now.ok() || left <= *step) break;
      if (Status st = WaitSettled(client); !st.ok()) return Die(st);
    }
  }
  if (!now.ok()) return Die(now.status());
  std::printf("%s\n", now->value("now", "").c_str());
  return 0;
}

}  // namespace strata::cli
