#include "common/sigv4.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace strata::sigv4 {
namespace {

TimePoint At(const char* iso) { return *ParseIso8601(iso); }

const Credentials kCreds{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};

const Scoped kRds{.region = "us-east-1", .service = "rds"};

SecretLookup Lookup() {
  return [](std::string_view id) -> std::optional<std::string> {
    if (id == kCreds.access_key_id) return kCreds.secret_access_key;
    return std::nullopt;
  };
}

// Golden value from Debian's botocore 1.29 (SigV4Auth.add_auth with utcnow
// pinned to 2026-11-24T04:00:00 and the same request), so Strata signs exactly
// as the real clients do.
TEST(SigV4, MatchesBotocore) {
  Request r{"POST", "/", "", {{"Host", "127.0.0.1:5480"},
                              {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}},
            "Action=DescribeDBInstances&Version=2014-10-31"};
  auto headers = Sign(r, kCreds, "us-east-1", "rds", At("2026-11-24T04:00:00Z"));
  std::string auth;
  for (auto& [k, v] : headers)
    if (k == "Authorization") auth = v;
  EXPECT_EQ(auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261124/us-east-1/rds/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, "
            "Signature=67f41c528c9a0efb53388260e5afe68a871fcf75f00aefe151d314604275ade3");
}

TEST(SigV4, SignThenVerifyRoundTrips) {
  TimePoint now = At("2026-11-24T04:00:00Z");
  Request r{"POST", "/", "", {{"Host", "127.0.0.1:5480"},
                              {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}},
            "Action=DescribeDBInstances&Version=2014-10-31"};
  for (auto& h : Sign(r, kCreds, "us-east-1", "rds", now)) r.headers.push_back(h);
  auto id = Verify(r, Lookup(), now + std::chrono::minutes(3), kRds);
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(id->service, "rds");

  Request tampered = r;
  tampered.body = "Action=DeleteDBInstance&Version=2014-10-31";
  EXPECT_TRUE(Verify(tampered, Lookup(), now, kRds).status().Is(errors::kSignatureDoesNotMatch));
  EXPECT_TRUE(Verify(r, Lookup(), now + std::chrono::minutes(16), kRds).status().Is(errors::kRequestExpired));
  auto none = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
  EXPECT_TRUE(Verify(r, none, now, kRds).status().Is(errors::kInvalidClientTokenId));
}

TEST(SigV4, PathsAreEncodedTwiceExceptForS3) {
  TimePoint now = At("2026-11-24T04:00:00Z");
  Request r{"GET", "/tags/arn%3Aaws%3Ards%3Aus-east-1%3A1%3Adb%3Aapp/", "a=1&b=x%20y",
            {{"Host", "h"}}, ""};
  Credentials with_token = kCreds;
  with_token.session_token = "token";
  for (auto& h : Sign(r, with_token, "us-east-1", "backup", now)) r.headers.push_back(h);
  EXPECT_TRUE(Verify(r, Lookup(), now, {.region = "us-east-1", .service = "backup"}).ok());
}

TEST(SigV4, MalformedOrMissingAuthorization) {
  TimePoint now = At("2026-11-24T04:00:00Z");
  Request r{"POST", "/", "", {{"Host", "h"}}, "x"};
  EXPECT_TRUE(Verify(r, Lookup(), now, kRds).status().Is(errors::kMissingAuthenticationToken));
  for (const char* bad : {"AWS4-HMAC-SHA256 garbage", "AWS4-HMAC-SHA256 Credential=a/b, SignedHeaders=host, Signature=00",
                          "Basic dXNlcjpwYXNz", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261124/us-east-1/rds/aws4_request"}) {
    Request m = r;
    m.headers.push_back({"Authorization", bad});
    m.headers.push_back({"X-Amz-Date", "20261124T040000Z"});
    EXPECT_TRUE(Verify(m, Lookup(), now, kRds).status().Is(errors::kIncompleteSignature)) << bad;
  }
}

Request SignedDescribe(TimePoint now, std::string_view region = "us-east-1",
                       std::string_view service = "rds") {
  Request r{"POST", "/", "", {{"Host", "h"}, {"Content-Type", "application/x-www-form-urlencoded"}},
            "Action=DescribeDBInstances&Version=2014-10-31"};
  for (auto& h : Sign(r, kCreds, region, service, now)) r.headers.push_back(h);
  return r;
}

// A captured request replayed with another body and a payload hash header
// that is not among the signed headers must not verify.
TEST(SigV4, TheBodyIsBoundEvenWithAnUnsignedPayloadHeader) {
  TimePoint now = At("2026-11-24T04:00:00Z");
  Request r = SignedDescribe(now);
  Request replay = r;
  std::string evil = "Action=DeleteDBInstance&DBInstanceIdentifier=victim&SkipFinalSnapshot=true";
  replay.body = evil;
  replay.headers.push_back({"x-amz-content-sha256", Sha256Hex(r.body)});
  EXPECT_TRUE(Verify(replay, Lookup(), now, kRds).status().Is(errors::kSignatureDoesNotMatch));
  replay.headers.back().second = "UNSIGNED-PAYLOAD";
  EXPECT_TRUE(Verify(replay, Lookup(), now, kRds).status().Is(errors::kSignatureDoesNotMatch));
  // The unsigned header alone does not spoil a genuine request.
  Request extra = r;
  extra.headers.push_back({"x-amz-content-sha256", "UNSIGNED-PAYLOAD"});
  EXPECT_TRUE(Verify(extra, Lookup(), now, kRds).ok());
}

// Outside s3, a signed UNSIGNED-PAYLOAD is refused, and a signed hash must be the body's.
TEST(SigV4, SignedPayloadHashOutsideS3MustBeTheBodys) {
  TimePoint now = At("2026-11-24T04:00:00Z");
  Request r{"POST", "/", "", {{"Host", "h"}}, "Action=DescribeDBInstances&Version=2014-10-31"};
  for (auto& h : Sign(r, kCreds, "us-east-1", "rds", now, {.s3 = true, .unsigned_payload = true}))
    r.headers.push_back(h);
  auto st = Verify(r, Lookup(), now, kRds).status();
  EXPECT_TRUE(st.Is(errors::kSignatureDoesNotMatch)) << st.ToString();
  EXPECT_NE(st.message().find("UNSIGNED-PAYLOAD"), std::string::npos);
}

TEST(SigV4, S3PayloadHashMustBeSignedAndMatch) {
  TimePoint now = At("2026-11-24T04:00:00Z");
  const Scoped s3{.region = "us-east-1", .service = "s3"};
  Request r{"PUT", "/b/k", "", {{"Host", "h"}}, "data"};
  for (auto& h : Sign(r, kCreds, "us-east-1", "s3", now, {.s3 = true})) r.headers.push_back(h);
  EXPECT_TRUE(Verify(r, Lookup(), now, s3).ok());
  Request other = r;
  other.body = "other";
  EXPECT_TRUE(Verify(other, Lookup(), now, s3).status().Is(errors::kSignatureDoesNotMatch));
  Request unsigned_payload{"PUT", "/b/k", "", {{"Host", "h"}}, "data"};
  for (auto& h : Sign(unsigned_payload, kCreds, "us-east-1", "s3", now, {.s3 = true, .unsigned_payload = true}))
    unsigned_payload.headers.push_back(h);
  EXPECT_TRUE(Verify(unsigned_payload, Lookup(), now, s3).ok());
}

TEST(SigV4, TheScopeMustNameThisRegionAndService) {
  TimePoint now = At("2026-11-24T04:00:00Z");
  for (const char* region : {"eu-west-1", "zz-fake-9"}) {
    auto st = Verify(SignedDescribe(now, region), Lookup(), now, kRds).status();
    EXPECT_TRUE(st.Is(errors::kSignatureDoesNotMatch)) << region;
    EXPECT_EQ(st.message(), fmt::format("Credential should be scoped to a valid region, not '{}'.", region));
  }
  auto st = Verify(SignedDescribe(now, "us-east-1", "rds-data"), Lookup(), now, kRds).status();
  EXPECT_TRUE(st.Is(errors::kSignatureDoesNotMatch));
  EXPECT_EQ(st.code().http_status, 403);
  EXPECT_EQ(st.message(), "Credential should be scoped to correct service: 'rds'.");
  // An unknown key with a wrong scope is refused for the scope, as AWS does.
  auto none = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
  EXPECT_TRUE(Verify(SignedDescribe(now, "eu-west-1"), none, now, kRds).status().Is(errors::kSignatureDoesNotMatch));
  EXPECT_TRUE(Verify(SignedDescribe(now), none, now, kRds).status().Is(errors::kInvalidClientTokenId));
}

TEST(SigV4, CanonicalQuerySortsAndReencodes) {
  EXPECT_EQ(CanonicalQueryString("b=2&a=%7e&a=1&c"), "a=1&a=~&b=2&c=");
  EXPECT_EQ(UriEncode("a b/c", false), "a%20b%2Fc");
  EXPECT_EQ(UriEncode("a b/c", true), "a%20b/c");
}

}  // namespace
}  // namespace strata::sigv4
