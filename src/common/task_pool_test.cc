#include "common/task_pool.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <thread>

namespace strata {
namespace {

TEST(RunAtBackgroundPriority, RunsAtIdlePriorityAndSoDoThreadsItStarts) {
  int outer = -1, inner = -1;
  RunAtBackgroundPriority([&] {
    outer = ::sched_getscheduler(0);
    std::thread t([&] { inner = ::sched_getscheduler(0); });
    t.join();
  });
  EXPECT_EQ(outer, SCHED_IDLE);
  EXPECT_EQ(inner, SCHED_IDLE);
  EXPECT_NE(::sched_getscheduler(0), SCHED_IDLE) << "the caller keeps its own priority";
}

TEST(ScopedNormalPriority, LiftsAnIdleThreadForTheScopeOnly) {
  int during = -1, after = -1;
  RunAtBackgroundPriority([&] {
    {
      ScopedNormalPriority lifted;
      during = ::sched_getscheduler(0);
    }
    after = ::sched_getscheduler(0);
  });
  if (::geteuid() == 0) {
    EXPECT_EQ(during, SCHED_OTHER);  // unprivileged, RLIMIT_NICE decides
  }
  EXPECT_EQ(after, SCHED_IDLE);
  {
    ScopedNormalPriority untouched;  // a thread at normal priority stays as it is
    EXPECT_EQ(::sched_getscheduler(0), SCHED_OTHER);
  }
}

TEST(TaskPool, RunsEveryQueuedTaskBeforeShutdownReturns) {
  std::atomic<int> ran{0};
  TaskPool pool(2);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(pool.Submit([&] { ++ran; }));
  pool.Shutdown();
  EXPECT_EQ(ran.load(), 100);
  EXPECT_FALSE(pool.Submit([] {}));
}

}  // namespace
}  // namespace strata
