// The registration table: one row per service the server routes to. Adding a
// service is its folder (a Service and a factory) and one row here.
#include "api/rds/rds_query.h"
#include "api/rds_data/rds_data.h"
#include "api/service.h"

namespace strata::api {

std::vector<ServiceRegistration> RegisteredServices() {
  return {
      // SigV4 name  protocol             factory
      {"rds", Protocol::kQuery, NewRdsService},  // first: the default route
      {"rds-data", Protocol::kRestJson, NewRdsDataService},
  };
}

}  // namespace strata::api
