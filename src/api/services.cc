// The registration table: one row per service the server routes to. Adding a
// service is its folder (a Service, a factory, a CMakeLists.txt adding its
// sources to strata_api) and one row here (with the #include of its header).
// A service served only in some configurations (a test-only one, such as
// Strata's own "strata" service for a manual clock, kJson, signed like the
// rest) has a factory that returns null unless context.config enables it.
#include "api/rds/rds_query.h"
#include "api/rds_data/rds_data.h"
#include "api/service.h"
#include "api/strata/clock_service.h"

namespace strata::api {

std::vector<ServiceRegistration> RegisteredServices() {
  return {
      // {SigV4 service name, protocol, factory}
      {"rds", Protocol::kQuery, NewRdsService},  // first: the default route
      {"rds-data", Protocol::kRestJson, NewRdsDataService},
      {"strata", Protocol::kRestJson, NewStrataService},  // only with --clock manual
  };
}

}  // namespace strata::api
