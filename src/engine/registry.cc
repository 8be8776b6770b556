#include <atomic>
#include <span>

#include "engine/engine.h"
#include "engine/postgres/postgres_engine.h"
#include "engine/sqlite/sqlite_engine.h"

namespace strata::engine {

namespace {

// Every engine this build knows, in the order EngineNames lists them. Each
// lives in its own folder (engine/<name>/); a new engine is that folder plus
// one line here (and its add_subdirectory in engine/CMakeLists.txt).
std::span<Engine* const> BuiltInEngines() {
  static SqliteEngine sqlite_engine;
  static PostgresEngine postgres_engine;
  static Engine* const kEngines[] = {
      &sqlite_engine,
      &postgres_engine,
  };
  return kEngines;
}

std::atomic<Engine*> test_engine{nullptr};

}  // namespace

Engine* FindEngine(const std::string& name) {
  for (Engine* e : BuiltInEngines()) {
    if (e->Name() == name) return e;
  }
  if (Engine* e = test_engine.load(); e && e->Name() == name) return e;
  return nullptr;
}

void TEST_RegisterEngine(Engine* engine) { test_engine.store(engine); }

std::vector<std::string> EngineNames() {
  std::vector<std::string> names;
  for (const Engine* e : BuiltInEngines()) names.push_back(e->Name());
  return names;
}

}  // namespace strata::engine
