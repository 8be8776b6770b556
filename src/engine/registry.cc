#include "engine/engine.h"

#include <atomic>

#include "engine/postgres_engine.h"
#include "engine/sqlite_engine.h"

namespace strata::engine {

namespace {

std::atomic<Engine*> test_engine{nullptr};

}  // namespace

Engine* FindEngine(const std::string& name) {
  static SqliteEngine sqlite_engine;
  static PostgresEngine postgres_engine;
  if (name == "sqlite") return &sqlite_engine;
  if (name == "postgres") return &postgres_engine;
  if (Engine* e = test_engine.load(); e && e->Name() == name) return e;
  return nullptr;
}

void TEST_RegisterEngine(Engine* engine) { test_engine.store(engine); }

std::vector<std::string> EngineNames() { return {"sqlite", "postgres"}; }

}  // namespace strata::engine
