#include "repo/workers.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

namespace strata::repo {
namespace {

TEST(WorkersTest, EveryItemRunsOnceAcrossManyCalls) {
  Workers workers(3);
  for (size_t n : {0, 1, 63, 64, 65, 1000, 7}) {
    std::vector<std::atomic<int>> hits(n);
    workers.For(n, [&](size_t b, size_t e) {
      for (size_t i = b; i < e; ++i) hits[i]++;
    });
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "n " << n << " item " << i;
  }
}

TEST(WorkersTest, StripesRunOnTheSameThreadsEveryCall) {
  Workers workers(2);
  std::mutex mu;
  std::set<std::thread::id> first, later;
  workers.For(1000, [&](size_t, size_t) {
    std::lock_guard lock(mu);
    first.insert(std::this_thread::get_id());
  });
  for (int k = 0; k < 20; ++k) {
    workers.For(1000, [&](size_t, size_t) {
      std::lock_guard lock(mu);
      later.insert(std::this_thread::get_id());
    });
  }
  EXPECT_EQ(first.size(), 2u);
  EXPECT_EQ(later, first);  // no thread was started after the first call
  EXPECT_TRUE(first.count(std::this_thread::get_id()));
}

TEST(WorkersTest, LittleWorkStaysOnTheCaller) {
  Workers workers(2);
  std::set<std::thread::id> ids;
  workers.For(10, [&](size_t, size_t) { ids.insert(std::this_thread::get_id()); });
  EXPECT_EQ(ids, std::set<std::thread::id>{std::this_thread::get_id()});
}

}  // namespace
}  // namespace strata::repo
