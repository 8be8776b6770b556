// AWS Signature Version 4: one implementation for both sides, so the server's
// verifier and Strata's own clients (the strata CLI, the S3 storage driver)
// can never disagree.
//
// Spec: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
// Thread safety: free functions, no shared state.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace strata::sigv4 {

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty when none
};

// A request as it travels on the wire. Header names in any case; a name may
// repeat. raw_path and raw_query are exactly as sent (still percent-encoded).
struct Request {
  std::string method;
  std::string raw_path = "/";
  std::string raw_query;  // without the leading '?'
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view body;
};

struct SignOptions {
  // S3 signs the path as sent (no second encoding) and always carries
  // x-amz-content-sha256; every other service double-encodes the path.
  bool s3 = false;
  // With s3: sign "UNSIGNED-PAYLOAD" instead of hashing the body.
  bool unsigned_payload = false;
};

// The headers to add to `req` so that it is signed: X-Amz-Date, Authorization,
// and X-Amz-Security-Token / x-amz-content-sha256 where they apply. `req` must
// already carry the Host header (with :port when not the default).
std::vector<std::pair<std::string, std::string>> Sign(const Request& req,
                                                      const Credentials& creds,
                                                      std::string_view region,
                                                      std::string_view service, TimePoint now,
                                                      const SignOptions& options = {});

// Who signed a request that verified.
struct Identity {
  std::string access_key_id;
  std::string region;
  std::string service;  // the credential scope's service: "rds", "rds-data", "iam", "backup"
};

// Returns the secret key for an access key id, or nullopt if unknown.
using SecretLookup = std::function<std::optional<std::string>(std::string_view access_key_id)>;

// What the endpoint that received the request serves: a signature scoped to
// another region or service was made for another endpoint and is refused, so
// a request captured on its way to one cannot be replayed against another.
struct Scoped {
  std::string_view region;   // e.g. "us-east-1"
  std::string_view service;  // e.g. "rds", "rds-data"
};

// Verifies an Authorization header or a presigned query string (X-Amz-Signature).
// The body is always bound to the signature: for every service but s3 the
// payload hash is computed from the body received (a client's
// x-amz-content-sha256 header is only another signed header, and must equal it);
// s3 alone takes the header's value, which must then be signed, and allows
// UNSIGNED-PAYLOAD.
// Errors, as AWS names them: MissingAuthenticationToken (no auth at all),
// IncompleteSignature (malformed header or query), InvalidClientTokenId (unknown
// key), SignatureDoesNotMatch (a wrong signature, or a credential scope whose
// region, service or date does not match), RequestExpired (X-Amz-Date more than
// 15 minutes from `now`, or a presigned URL past X-Amz-Expires).
Result<Identity> Verify(const Request& req, const SecretLookup& lookup, TimePoint now,
                        const Scoped& expected);


// Building blocks, exposed for tests and for the S3 client.
std::string Sha256Hex(std::string_view data);
std::string HmacSha256(std::string_view key, std::string_view data);  // raw bytes
std::string UriEncode(std::string_view s, bool keep_slash);           // RFC 3986, upper-case hex
std::string CanonicalQueryString(std::string_view raw_query);

}  // namespace strata::sigv4
