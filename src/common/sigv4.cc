#include "common/sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <map>

#include <fmt/format.h>

namespace strata::sigv4 {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
constexpr auto kMaxSkew = std::chrono::minutes(15);
constexpr int64_t kMaxPresignExpires = 7 * 24 * 3600;

std::string Hex(const unsigned char* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = d[p[i] >> 4];
    out[2 * i + 1] = d[p[i] & 15];
  }
  return out;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Header values are trimmed and inner runs of spaces folded to one.
std::string CanonicalHeaderValue(std::string_view v) {
  v = Trim(v);
  std::string out;
  bool space = false;
  for (char c : v) {
    if (c == ' ' || c == '\t') {
      space = true;
      continue;
    }
    if (space && !out.empty()) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding for query components; '+' stays '+' (SigV4 does not treat it as a space
// unless the client encoded a space that way, and botocore never does). Malformed: as is.
std::string PercentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = HexDigit(s[i + 1]), lo = HexDigit(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> SplitQuery(std::string_view raw) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t start = 0;
  while (start < raw.size()) {
    size_t amp = raw.find('&', start);
    if (amp == std::string_view::npos) amp = raw.size();
    std::string_view pair = raw.substr(start, amp - start);
    start = amp + 1;
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    out.emplace_back(PercentDecode(pair.substr(0, eq)),
                     eq == std::string_view::npos ? "" : PercentDecode(pair.substr(eq + 1)));
  }
  return out;
}

// Removes "." and ".." segments and empty segments, as non-S3 services normalize.
std::string NormalizePath(std::string_view path) {
  std::vector<std::string_view> segs;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view seg = path.substr(start, slash - start);
    start = slash + 1;
    if (seg.empty() || seg == ".") continue;
    if (seg == "..") {
      if (!segs.empty()) segs.pop_back();
      continue;
    }
    segs.push_back(seg);
  }
  std::string out;
  for (auto s : segs) {
    out += "/";
    out += s;
  }
  if (out.empty() || (path.size() > 1 && path.back() == '/')) out += "/";
  return out;
}

std::string CanonicalUri(std::string_view raw_path, bool s3) {
  if (raw_path.empty()) return "/";
  if (s3) return std::string(raw_path);
  return UriEncode(NormalizePath(raw_path), true);
}

struct Scope {
  std::string date;  // yyyymmdd
  std::string region;
  std::string service;
  std::string Text() const { return fmt::format("{}/{}/{}/aws4_request", date, region, service); }
};

std::string SigningKey(std::string_view secret, const Scope& scope) {
  std::string k = HmacSha256("AWS4" + std::string(secret), scope.date);
  k = HmacSha256(k, scope.region);
  k = HmacSha256(k, scope.service);
  return HmacSha256(k, "aws4_request");
}

std::string HeaderValues(const Request& req, std::string_view lower_name) {
  std::string out;
  bool first = true;
  for (const auto& [k, v] : req.headers) {
    if (Lower(k) != lower_name) continue;
    if (!first) out += ",";
    out += CanonicalHeaderValue(v);
    first = false;
  }
  return out;
}

bool HasHeader(const Request& req, std::string_view lower_name) {
  for (const auto& [k, v] : req.headers)
    if (Lower(k) == lower_name) return true;
  return false;
}

std::string CanonicalRequest(const Request& req, const std::vector<std::string>& signed_headers,
                             std::string_view canonical_query, std::string_view payload_hash, bool s3) {
  std::string headers;
  std::string names;
  for (const auto& h : signed_headers) {
    headers += h + ":" + HeaderValues(req, h) + "\n";
    if (!names.empty()) names += ";";
    names += h;
  }
  return fmt::format("{}\n{}\n{}\n{}\n{}\n{}", req.method, CanonicalUri(req.raw_path, s3),
                     canonical_query, headers, names, payload_hash);
}

std::string StringToSign(std::string_view amz_date, const Scope& scope, std::string_view canonical) {
  return fmt::format("{}\n{}\n{}\n{}", kAlgorithm, amz_date, scope.Text(), Sha256Hex(canonical));
}

std::optional<TimePoint> ParseAmzDate(std::string_view d) {
  // yyyymmddThhmmssZ
  if (d.size() != 16 || d[8] != 'T' || d[15] != 'Z') return std::nullopt;
  std::string iso = fmt::format("{}-{}-{}T{}:{}:{}Z", d.substr(0, 4), d.substr(4, 2), d.substr(6, 2),
                                d.substr(9, 2), d.substr(11, 2), d.substr(13, 2));
  return ParseIso8601(iso);
}

std::string FormatAmzDate(TimePoint t) {
  std::string iso = FormatIso8601Seconds(t);  // 2026-11-24T04:00:00Z
  std::string out;
  for (char c : iso)
    if (c != '-' && c != ':') out.push_back(c);
  return out;
}

Status Incomplete(std::string msg) { return Status(errors::kIncompleteSignature, std::move(msg)); }

Result<Scope> ParseCredential(std::string_view credential, std::string& akid) {
  // AKID/yyyymmdd/region/service/aws4_request
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t slash = credential.find('/', start);
    parts.push_back(credential.substr(start, slash == std::string_view::npos ? std::string_view::npos
                                                                           : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (parts.size() != 5 || parts[0].empty() || parts[1].size() != 8 || parts[2].empty() ||
      parts[3].empty() || parts[4] != "aws4_request") {
    return Incomplete(fmt::format("Credential should be scoped to a valid region: '{}'", credential));
  }
  akid = std::string(parts[0]);
  return Scope{std::string(parts[1]), std::string(parts[2]), std::string(parts[3])};
}

std::vector<std::string> SplitSignedHeaders(std::string_view s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t semi = s.find(';', start);
    if (semi == std::string_view::npos) semi = s.size();
    if (semi > start) out.push_back(Lower(s.substr(start, semi - start)));
    start = semi + 1;
  }
  return out;
}

bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

struct ParsedAuth {
  std::string akid;
  Scope scope;
  std::vector<std::string> signed_headers;
  std::string signature;
  std::string amz_date;
  bool presigned = false;
  int64_t expires = 0;
};

Result<ParsedAuth> ParseAuthorizationHeader(const Request& req, std::string_view header) {
  ParsedAuth p;
  header = Trim(header);
  if (header.substr(0, kAlgorithm.size()) != kAlgorithm) {
    return Incomplete("Authorization header requires the AWS4-HMAC-SHA256 algorithm");
  }
  std::string_view rest = header.substr(kAlgorithm.size());
  std::map<std::string, std::string> fields;
  size_t start = 0;
  while (start < rest.size()) {
    size_t comma = rest.find(',', start);
    if (comma == std::string_view::npos) comma = rest.size();
    std::string_view item = Trim(rest.substr(start, comma - start));
    start = comma + 1;
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return Incomplete(fmt::format("Authorization header requires key=value pairs, got '{}'", item));
    }
    fields[std::string(Trim(item.substr(0, eq)))] = std::string(Trim(item.substr(eq + 1)));
  }
  for (const char* need : {"Credential", "SignedHeaders", "Signature"}) {
    if (!fields.count(need) || fields[need].empty()) {
      return Incomplete(fmt::format("Authorization header requires '{}' parameter", need));
    }
  }
  ASSIGN_OR_RETURN(p.scope, ParseCredential(fields["Credential"], p.akid));
  p.signed_headers = SplitSignedHeaders(fields["SignedHeaders"]);
  p.signature = fields["Signature"];
  p.amz_date = HeaderValues(req, "x-amz-date");
  if (p.amz_date.empty()) {
    return Incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header");
  }
  return p;
}

// The payload line of the canonical request. Only s3 signs a hash the client
// declares (and UNSIGNED-PAYLOAD); everywhere else the body received is hashed,
// so a signature never covers a body other than the one it came with.
Result<std::string> PayloadHash(const Request& req, const ParsedAuth& p, bool s3) {
  std::string declared = HeaderValues(req, "x-amz-content-sha256");
  bool declared_signed = std::find(p.signed_headers.begin(), p.signed_headers.end(),
                                   "x-amz-content-sha256") != p.signed_headers.end();
  std::string actual = Sha256Hex(req.body);
  if (s3) {
    if (declared.empty()) {
      if (p.presigned) return std::string("UNSIGNED-PAYLOAD");
      return Status(errors::kIncompleteSignature, "Missing required header for this request: x-amz-content-sha256");
    }
    if (!declared_signed) return Incomplete("The x-amz-content-sha256 header must be signed");
    if (declared != "UNSIGNED-PAYLOAD" && declared != actual) {
      return Status(errors::kSignatureDoesNotMatch,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.");
    }
    return declared;
  }
  if (!declared.empty() && declared_signed && declared != actual) {
    return Status(errors::kSignatureDoesNotMatch,
                  declared == "UNSIGNED-PAYLOAD"
                      ? std::string("UNSIGNED-PAYLOAD is accepted only by s3; sign the request body")
                      : std::string("The provided 'x-amz-content-sha256' header does not match the request body"));
  }
  return actual;
}

}  // namespace

std::string Sha256Hex(std::string_view data) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), md);
  return Hex(md, sizeof md);
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
  return std::string(reinterpret_cast<char*>(md), len);
}

std::string UriEncode(std::string_view s, bool keep_slash) {
  static const char* d = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(d[c >> 4]);
      out.push_back(d[c & 15]);
    }
  }
  return out;
}

std::string CanonicalQueryString(std::string_view raw_query) {
  auto pairs = SplitQuery(raw_query);
  std::vector<std::pair<std::string, std::string>> enc;
  for (auto& [k, v] : pairs) enc.emplace_back(UriEncode(k, false), UriEncode(v, false));
  std::sort(enc.begin(), enc.end());
  std::string out;
  for (const auto& [k, v] : enc) {
    if (!out.empty()) out += "&";
    out += k + "=" + v;
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> Sign(const Request& req_in, const Credentials& creds,
                                                      std::string_view region,
                                                      std::string_view service, TimePoint now,
                                                      const SignOptions& options) {
  Request req = req_in;
  std::vector<std::pair<std::string, std::string>> added;
  std::string amz_date = FormatAmzDate(now);
  added.emplace_back("X-Amz-Date", amz_date);
  if (!creds.session_token.empty()) added.emplace_back("X-Amz-Security-Token", creds.session_token);
  std::string payload_hash = options.unsigned_payload ? "UNSIGNED-PAYLOAD" : Sha256Hex(req.body);
  if (options.s3) added.emplace_back("x-amz-content-sha256", payload_hash);
  for (const auto& h : added) req.headers.push_back(h);

  std::vector<std::string> names;
  for (const auto& [k, v] : req.headers) {
    std::string n = Lower(k);
    if (n == "host" || n == "content-type" || n == "content-md5" || n.rfind("x-amz-", 0) == 0) {
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    }
  }
  std::sort(names.begin(), names.end());
  Scope scope{amz_date.substr(0, 8), std::string(region), std::string(service)};
  std::string canonical =
      CanonicalRequest(req, names, CanonicalQueryString(req.raw_query), payload_hash, options.s3);
  std::string signature = Hex(
      reinterpret_cast<const unsigned char*>(
          HmacSha256(SigningKey(creds.secret_access_key, scope), StringToSign(amz_date, scope, canonical)).data()),
      32);
  std::string joined;
  for (const auto& n : names) joined += (joined.empty() ? "" : ";") + n;
  added.emplace_back("Authorization",
                     fmt::format("{} Credential={}/{}, SignedHeaders={}, Signature={}", kAlgorithm,
                                 creds.access_key_id, scope.Text(), joined, signature));
  return added;
}

Result<Identity> Verify(const Request& req, const SecretLookup& lookup, TimePoint now,
                        const Scoped& expected) {
  ParsedAuth p;
  std::string auth = HeaderValues(req, "authorization");
  std::string query_for_signing = std::string(req.raw_query);
  if (!auth.empty()) {
    ASSIGN_OR_RETURN(p, ParseAuthorizationHeader(req, auth));
  } else {
    std::map<std::string, std::string> q;
    for (const auto& [k, v] : SplitQuery(req.raw_query)) q.emplace(k, v);
    if (!q.count("X-Amz-Signature") && !q.count("X-Amz-Credential")) {
      return Status(errors::kMissingAuthenticationToken,
                    "Request is missing Authentication Token");
    }
    for (const char* need : {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date",
                             "X-Amz-SignedHeaders", "X-Amz-Signature"}) {
      if (!q.count(need) || q[need].empty()) {
        return Incomplete(fmt::format("AWS query-string parameters must include '{}'", need));
      }
    }
    if (q["X-Amz-Algorithm"] != kAlgorithm) return Incomplete("X-Amz-Algorithm must be AWS4-HMAC-SHA256");
    ASSIGN_OR_RETURN(p.scope, ParseCredential(q["X-Amz-Credential"], p.akid));
    p.signed_headers = SplitSignedHeaders(q["X-Amz-SignedHeaders"]);
    p.signature = q["X-Amz-Signature"];
    p.amz_date = q["X-Amz-Date"];
    p.presigned = true;
    p.expires = 900;
    if (q.count("X-Amz-Expires")) {
      try {
        p.expires = std::stoll(q["X-Amz-Expires"]);
      } catch (...) {
        return Incomplete("X-Amz-Expires must be a number of seconds");
      }
      if (p.expires < 0 || p.expires > kMaxPresignExpires) {
        return Incomplete("X-Amz-Expires must be from 0 to 604800 seconds");
      }
    }
    // The signature covers every query parameter but itself.
    std::string rebuilt;
    size_t start = 0;
    std::string_view raw = req.raw_query;
    while (start < raw.size()) {
      size_t amp = raw.find('&', start);
      if (amp == std::string_view::npos) amp = raw.size();
      std::string_view pair = raw.substr(start, amp - start);
      start = amp + 1;
      if (pair.rfind("X-Amz-Signature=", 0) == 0 || pair.empty()) continue;
      if (!rebuilt.empty()) rebuilt += "&";
      rebuilt += pair;
    }
    query_for_signing = rebuilt;
  }

  auto when = ParseAmzDate(p.amz_date);
  if (!when) return Incomplete(fmt::format("X-Amz-Date '{}' is not yyyymmddThhmmssZ", p.amz_date));
  if (p.amz_date.substr(0, 8) != p.scope.date) {
    return Status(errors::kSignatureDoesNotMatch,
                  "The credential scope's date does not match X-Amz-Date");
  }
  if (p.presigned) {
    if (now > *when + std::chrono::seconds(p.expires) || *when > now + kMaxSkew) {
      return Status(errors::kRequestExpired, "Request has expired");
    }
  } else if (*when > now + kMaxSkew || *when < now - kMaxSkew) {
    return Status(errors::kRequestExpired,
                  fmt::format("Signature expired: {} is now earlier than {} or later than {}",
                              p.amz_date, FormatAmzDate(now - kMaxSkew), FormatAmzDate(now + kMaxSkew)));
  }
  if (std::find(p.signed_headers.begin(), p.signed_headers.end(), "host") == p.signed_headers.end()) {
    return Incomplete("The host header must be signed");
  }
  for (const auto& h : p.signed_headers) {
    if (!HasHeader(req, h)) return Incomplete(fmt::format("Signed header '{}' is missing", h));
  }

  // AWS checks the scope before the key: a signature for another region or
  // service is refused whoever made it.
  if (p.scope.region != expected.region) {
    return Status(errors::kSignatureDoesNotMatch,
                  fmt::format("Credential should be scoped to a valid region, not '{}'.", p.scope.region));
  }
  if (p.scope.service != expected.service) {
    return Status(errors::kSignatureDoesNotMatch,
                  fmt::format("Credential should be scoped to correct service: '{}'.", expected.service));
  }

  auto secret = lookup(p.akid);
  if (!secret) {
    return Status(errors::kInvalidClientTokenId,
                  "The security token included in the request is invalid.");
  }

  bool s3 = p.scope.service == "s3";
  ASSIGN_OR_RETURN(std::string payload_hash, PayloadHash(req, p, s3));
  std::string canonical = CanonicalRequest(req, p.signed_headers,
                                           CanonicalQueryString(query_for_signing), payload_hash, s3);
  std::string computed_raw =
      HmacSha256(SigningKey(*secret, p.scope), StringToSign(p.amz_date, p.scope, canonical));
  std::string computed = Hex(reinterpret_cast<const unsigned char*>(computed_raw.data()), computed_raw.size());
  if (!ConstantTimeEqual(computed, Lower(p.signature))) {
    return Status(errors::kSignatureDoesNotMatch,
                  "The request signature we calculated does not match the signature you provided. "
                  "Check your AWS Secret Access Key and signing method.");
  }
  return Identity{p.akid, p.scope.region, p.scope.service};
}

}  // namespace strata::sigv4
