// Structured logs: one JSON object a line on stderr, e.g.
//   {"ts":"2026-11-24T04:00:00.000Z","level":"info","msg":"request","request_id":"...","action":"CreateDBInstance"}
// Secrets never go through here (DESIGN invariant 7): callers log identifiers,
// never passwords or keys.
//
// Thread safety: Log() may be called from any thread; lines never interleave.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

namespace strata::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// "debug", "info", "warn", "error"; false if unknown.
bool SetLevel(std::string_view name);
bool Enabled(Level level);
void Log(Level level, std::string_view msg, nlohmann::json fields = nlohmann::json::object());

inline void Debug(std::string_view m, nlohmann::json f = nlohmann::json::object()) {
  if (Enabled(Level::kDebug)) Log(Level::kDebug, m, std::move(f));
}
inline void Info(std::string_view m, nlohmann::json f = nlohmann::json::object()) {
  Log(Level::kInfo, m, std::move(f));
}
inline void Warn(std::string_view m, nlohmann::json f = nlohmann::json::object()) {
  Log(Level::kWarn, m, std::move(f));
}
inline void Error(std::string_view m, nlohmann::json f = nlohmann::json::object()) {
  Log(Level::kError, m, std::move(f));
}

}  // namespace strata::log
