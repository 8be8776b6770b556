#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "scheduler/work_queue.h"

namespace strata::scheduler {
namespace {

using namespace std::chrono_literals;

TimePoint T0() { return TimePoint(std::chrono::hours(24 * 20000)); }

TEST(SchedulerTest, EveryPassJobsRunOnEachPassInOrder) {
  ManualClock clock(T0());
  Scheduler s(clock);
  std::vector<std::string> ran;
  s.EveryPass("a", [&](TimePoint now) {
    EXPECT_EQ(now, clock.Now());
    ran.push_back("a");
  });
  s.EveryPass("b", [&](TimePoint) { ran.push_back("b"); });
  s.RunOnce();
  s.RunOnce();
  EXPECT_EQ(ran, (std::vector<std::string>{"a", "b", "a", "b"}));
}

TEST(SchedulerTest, PeriodicJobRunsOncePerPeriodOfClockTime) {
  ManualClock clock(T0());
  Scheduler s(clock);
  int runs = 0;
  s.Every("hourly", 1h, T0() + 1h, [&](TimePoint) { ++runs; });
  s.RunOnce();
  EXPECT_EQ(runs, 0);
  clock.Advance(1h);
  s.RunOnce();
  s.RunOnce();
  EXPECT_EQ(runs, 1);
  clock.Advance(5h);  // a jump runs it once, not five times
  s.RunOnce();
  EXPECT_EQ(runs, 2);
  clock.Advance(30min);
  s.RunOnce();
  EXPECT_EQ(runs, 2);
  clock.Advance(30min);
  s.RunOnce();
  EXPECT_EQ(runs, 3);
}

TEST(SchedulerTest, NotifyWakesTheThreadBeforeItsInterval) {
  ManualClock clock(T0());
  Scheduler s(clock, std::chrono::hours(1));
  std::atomic<int> passes{0};
  s.EveryPass("count", [&](TimePoint) { ++passes; });
  s.Start();
  for (int i = 0; i < 200 && passes < 1; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_GE(passes.load(), 1);
  int before = passes;
  s.Notify();
  for (int i = 0; i < 200 && passes <= before; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_GT(passes.load(), before);
  s.Stop();
}

TEST(WorkQueueTest, CoalescesWhileQueuedAndFreesTheKeyWhenStarted) {
  TaskPool pool(1);
  WorkQueue q(pool);
  std::mutex gate;
  std::unique_lock hold(gate);
  std::atomic<int> ran{0};
  // The first task blocks the only worker, so the next ones stay queued.
  ASSERT_TRUE(q.Enqueue("block", [&] { std::lock_guard g(gate); }));
  EXPECT_TRUE(q.Enqueue("gc", [&] { ++ran; }));
  EXPECT_FALSE(q.Enqueue("gc", [&] { ++ran; }));
  EXPECT_TRUE(q.Enqueue("other", [&] { ++ran; }));
  hold.unlock();
  pool.Shutdown();
  EXPECT_EQ(ran.load(), 2);
  EXPECT_FALSE(q.Enqueue("gc", [&] { ++ran; }));  // the pool is shut down
}

}  // namespace
}  // namespace strata::scheduler
