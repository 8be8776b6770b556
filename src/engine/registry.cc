#include "engine/engine.h"
#include "engine/postgres_engine.h"
#include "engine/sqlite_engine.h"

namespace strata::engine {

Engine* FindEngine(const std::string& name) {
  static SqliteEngine sqlite_engine;
  static PostgresEngine postgres_engine;
  if (name == "sqlite") return &sqlite_engine;
  if (name == "postgres") return &postgres_engine;
  return nullptr;
}

std::vector<std::string> EngineNames() { return {"sqlite", "postgres"}; }

}  // namespace strata::engine
