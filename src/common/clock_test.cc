#include "common/clock.h"

#include <gtest/gtest.h>

namespace strata {
namespace {

TEST(Iso8601, FormatsUtcWithMilliseconds) {
  auto t = ParseIso8601("2026-11-23T09:00:00.123Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(FormatIso8601(*t), "2026-11-23T09:00:00.123Z");
  EXPECT_EQ(FormatIso8601Seconds(*t), "2026-11-23T09:00:00Z");
}

TEST(Iso8601, AcceptsTheFormsBotocoreAndTheDocsUse) {
  auto z = ParseIso8601("2026-11-23T09:00:00Z");
  ASSERT_TRUE(z);
  EXPECT_EQ(ParseIso8601("2026-11-23T09:00Z"), z);
  EXPECT_EQ(ParseIso8601("2026-11-23T11:00:00+02:00"), z);
  EXPECT_EQ(ParseIso8601("2026-11-23T11:00:00.000000+02:00"), z);
  auto micro = ParseIso8601("2026-11-23T09:00:00.000001Z");
  ASSERT_TRUE(micro);
  EXPECT_EQ((*micro - *z).count(), 1);
}

TEST(Iso8601, RejectsWhatIsNotATime) {
  for (const char* bad : {"", "yesterday", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
                          "2026-11-23T25:00:00Z", "2026-11-23T09:00:00", "2026-11-23T09:00:00Zjunk",
                          "2026-11-23T09:00:00.Z", "99999999999999999999"}) {
    EXPECT_FALSE(ParseIso8601(bad)) << bad;
  }
}

TEST(ManualClock, MovesOnlyWhenTold) {
  ManualClock clock(*ParseIso8601("2026-01-01T00:00:00Z"));
  auto t0 = clock.Now();
  EXPECT_EQ(clock.Now(), t0);
  clock.Advance(std::chrono::hours(24 * 40));
  EXPECT_EQ(FormatIso8601Seconds(clock.Now()), "2026-02-10T00:00:00Z");
}

}  // namespace
}  // namespace strata
