#include "common/allocator.h"

#include <gtest/gtest.h>

namespace strata {
namespace {

TEST(AllocatorTest, HugePagesAreAskedForBesideTheTunablesAlreadySet) {
  EXPECT_EQ(TunablesAskingForHugePages(nullptr), "glibc.malloc.hugetlb=1");
  EXPECT_EQ(TunablesAskingForHugePages(""), "glibc.malloc.hugetlb=1");
  EXPECT_EQ(TunablesAskingForHugePages("glibc.malloc.tcache_count=0"),
            "glibc.malloc.tcache_count=0:glibc.malloc.hugetlb=1");
}

TEST(AllocatorTest, AnOperatorsOwnHugePageSettingIsLeftAlone) {
  EXPECT_EQ(TunablesAskingForHugePages("glibc.malloc.hugetlb=0"), std::nullopt);
  EXPECT_EQ(TunablesAskingForHugePages("glibc.malloc.check=0:glibc.malloc.hugetlb=2"), std::nullopt);
}

}  // namespace
}  // namespace strata
