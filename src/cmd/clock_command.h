// `strata clock get|set|advance`: moves the manual clock of a stratad started
// with --clock manual (tests only), over its /strata/clock endpoint.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "cmd/client.h"

namespace strata::cli {

// A duration as people write one: a whole number and a unit, s, m, h or d
// ("90s", "15m", "6h", "40d"). nullopt if not one (no unit, a sign, overflow).
std::optional<std::chrono::seconds> ParseDuration(std::string_view text);

struct ClockArgs {
  enum Op { kGet, kSet, kAdvance } op = kGet;
  std::string time;      // set: ISO 8601
  std::string duration;  // advance: e.g. 40d
  std::string step;      // advance: one step at a time (e.g. 1d); empty: at once
};

// Prints the clock's time after the operation; 0 on success.
int ClockCommand(Client& client, const ClockArgs& args);

}  // namespace strata::cli
