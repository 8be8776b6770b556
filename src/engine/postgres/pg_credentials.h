// Private to engine/: the master password of a postgres instance is turned
// into a SCRAM-SHA-256 verifier (RFC 5802/7677, as PostgreSQL stores it) the
// moment the request arrives. Strata keeps only the verifier and hands it to
// the server with ALTER ROLE ... PASSWORD, which takes a verifier as is: the
// password itself is never written anywhere.
#pragma once

#include <string>

#include "common/status.h"

namespace strata::engine::pg {

// "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>" (base64 parts).
Result<std::string> ScramVerifier(const std::string& password, int iterations = 4096);

// RDS's rules for a postgres master user name: a letter then letters, digits
// or underscores, and not a word the engine reserves.
Status ValidateMasterUsername(const std::string& name);

}  // namespace strata::engine::pg
