#include "common/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

#include "common/clock.h"

namespace strata::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::mutex g_mu;
constexpr const char* kNames[] = {"debug", "info", "warn", "error"};
}  // namespace

bool SetLevel(std::string_view name) {
  for (int i = 0; i < 4; ++i) {
    if (name == kNames[i]) {
      g_level = i;
      return true;
    }
  }
  return false;
}

bool Enabled(Level level) { return static_cast<int>(level) >= g_level.load(); }

void Log(Level level, std::string_view msg, nlohmann::json fields) {
  if (!Enabled(level)) return;
  nlohmann::json line = nlohmann::json::object();
  // Log lines carry wall time even under a test clock: they are for people.
  line["ts"] = FormatIso8601(SystemClock().Now());
  line["level"] = kNames[static_cast<int>(level)];
  line["msg"] = msg;
  if (fields.is_object()) line.update(fields);
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::lock_guard lock(g_mu);
  std::fprintf(stderr, "%s\n", text.c_str());
  std::fflush(stderr);
}

}  // namespace strata::log
