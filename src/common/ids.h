// Random identifiers from OpenSSL's CSPRNG: request ids, resource ids, keys.
#pragma once

#include <string>

namespace strata {

std::string RandomHex(size_t bytes);
// RFC 4122 version 4, lower-case, as AWS request ids look.
std::string RandomUuid();
// Upper-case letters and digits, as in a DbiResourceId ("db-" + 26 of them).
std::string RandomAlnumUpper(size_t n);
// Letters and digits of both cases, for secret keys.
std::string RandomAlnum(size_t n);

}  // namespace strata
