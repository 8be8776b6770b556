#include "control/validation.h"

#include <gtest/gtest.h>

#include "control/arn.h"

namespace strata::control {
namespace {

TEST(Identifier, FollowsRdsRules) {
  for (const char* ok : {"a", "app", "App-1", "a-b-c"}) {
    EXPECT_TRUE(ValidateIdentifier("DBInstanceIdentifier", ok, 63).ok()) << ok;
  }
  for (const char* bad : {"", "1app", "-app", "app-", "a--b", "app_1", "app.1", "ápp"}) {
    auto st = ValidateIdentifier("DBInstanceIdentifier", bad, 63);
    EXPECT_TRUE(st.Is(errors::kInvalidParameterValue)) << bad;
    EXPECT_NE(st.message().find("DBInstanceIdentifier"), std::string::npos);
  }
  EXPECT_TRUE(ValidateIdentifier("x", std::string(63, 'a'), 63).ok());
  EXPECT_FALSE(ValidateIdentifier("x", std::string(64, 'a'), 63).ok());
  EXPECT_TRUE(ValidateIdentifier("x", std::string(255, 'a'), 255).ok());
}

TEST(Windows, DailyNeedsThirtyMinutes) {
  auto w = ParseDailyWindow("PreferredBackupWindow", "03:00-03:30", 30);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->Length(), 30);
  EXPECT_TRUE(ParseDailyWindow("P", "23:45-00:15", 30).ok());  // wraps midnight
  EXPECT_FALSE(ParseDailyWindow("P", "03:00-03:29", 30).ok());
  for (const char* bad : {"3:00-03:30", "03:00", "24:00-00:30", "03:60-04:30", "ab:cd-ef:gh"}) {
    EXPECT_FALSE(ParseDailyWindow("P", bad, 30).ok()) << bad;
  }
}

TEST(Windows, WeeklyAndOverlap) {
  auto m = ParseWeeklyWindow("M", "sun:05:00-sun:05:30");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(FormatWeeklyWindow(*m), "sun:05:00-sun:05:30");
  EXPECT_FALSE(ParseWeeklyWindow("M", "xyz:05:00-sun:05:30").ok());
  EXPECT_TRUE(Overlaps(*ParseDailyWindow("B", "05:15-05:45", 30), *m));
  EXPECT_TRUE(Overlaps(*ParseDailyWindow("B", "04:45-05:15", 30), *m));
  EXPECT_FALSE(Overlaps(*ParseDailyWindow("B", "03:00-03:30", 30), *m));
  // Wrap across the week's end: Sunday 23:50 to Monday 00:20.
  auto wrap = ParseWeeklyWindow("M", "sun:23:50-mon:00:20");
  ASSERT_TRUE(wrap.ok());
  EXPECT_TRUE(Overlaps(*ParseDailyWindow("B", "00:00-00:30", 30), *wrap));
}

TEST(Tags, RdsRules) {
  EXPECT_TRUE(ValidateTag("team", "db ops").ok());
  EXPECT_FALSE(ValidateTag("", "v").ok());
  EXPECT_FALSE(ValidateTag("aws:x", "v").ok());
  EXPECT_FALSE(ValidateTag("RDS:x", "v").ok());
  EXPECT_FALSE(ValidateTag(std::string(129, 'k'), "v").ok());
  EXPECT_FALSE(ValidateTag("k", std::string(257, 'v')).ok());
  EXPECT_FALSE(ValidateTag("k<", "v").ok());
}

TEST(Arns, RoundTrip) {
  auto a = ParseArn(FormatArn("us-east-1", "123456789012", "snapshot", "rds:app-2026-11-23-09-00"));
  ASSERT_TRUE(a);
  EXPECT_EQ(a->resource_type, "snapshot");
  EXPECT_EQ(a->resource_id, "rds:app-2026-11-23-09-00");
  EXPECT_FALSE(ParseArn("not-an-arn"));
  EXPECT_FALSE(ParseArn("arn:aws:rds:us-east-1:1:db:"));
}

TEST(Arn, OnlyThisServersArnsAreOwn) {
  const ArnOwner owner{"us-east-1", "123456789012"};
  auto own = ParseOwnArn("arn:aws:rds:us-east-1:123456789012:db:App", owner, "db");
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  EXPECT_EQ(own->resource_id, "app");
  EXPECT_EQ(own->Text(), "arn:aws:rds:us-east-1:123456789012:db:app");
  for (const char* foreign : {"arn:aws:rds:us-west-2:123456789012:db:app", "arn:aws:rds:us-east-1:111111111111:db:app",
                              "arn:aws:ec2:us-east-1:123456789012:db:app", "arn:aws-cn:rds:us-east-1:123456789012:db:app",
                              "arn:aws:rds:us-east-1:123456789012:snapshot:app", "arn:aws:rds:us-east-1:123456789012:db:",
                              "app", "arn:aws:rds"}) {
    auto st = ParseOwnArn(foreign, owner, "db").status();
    EXPECT_TRUE(st.Is(errors::kInvalidParameterValue)) << foreign;
  }
}

}  // namespace
}  // namespace strata::control
