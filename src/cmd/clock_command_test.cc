#include "cmd/clock_command.h"

#include <gtest/gtest.h>

namespace strata::cli {
namespace {

using namespace std::chrono_literals;

TEST(ClockDuration, ANumberAndAUnit) {
  EXPECT_EQ(ParseDuration("90s"), 90s);
  EXPECT_EQ(ParseDuration("15m"), 15min);
  EXPECT_EQ(ParseDuration("6h"), 6h);
  EXPECT_EQ(ParseDuration("1d"), 24h);
  EXPECT_EQ(ParseDuration("40d"), 40 * 24h);
  EXPECT_EQ(ParseDuration("0s"), 0s);
}

TEST(ClockDuration, RefusesWhatIsNotOne) {
  for (const char* bad : {"", "s", "10", "-1d", "+1d", "1.5h", "1w", "d1", "1 d", "999999999999d"}) {
    EXPECT_FALSE(ParseDuration(bad)) << bad;
  }
}

}  // namespace
}  // namespace strata::cli
