#include "control/changelog/reader.h"

#include <gtest/gtest.h>

#include "control/test_bed.h"

namespace strata::control {
namespace {

using namespace std::chrono_literals;

class ChangeLogReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_bed::NewTestDir("reader_test");
    store_ = test_bed::OpenTestStore(dir_);
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  TimePoint At(int second) const { return TimePoint(std::chrono::hours(24 * 20000)) + std::chrono::seconds(second); }
  // One segment of records (seq, stamped at second seq).
  void Put(std::vector<int64_t> seqs) {
    std::vector<LogRecord> records;
    for (int64_t seq : seqs) records.push_back(LogRecord{seq, At(static_cast<int>(seq)), "redo" + std::to_string(seq)});
    std::string headers;
    auto pieces = LogRecordPieces(records, headers);
    ASSERT_TRUE(store_->PutLogSegment("db-TEST", records.front().time, records.back().time, pieces).ok());
  }
  // The seqs Read hands over for `range`, or its error.
  Result<std::vector<int64_t>> Seqs(ChangeLogRange range) {
    ASSIGN_OR_RETURN(auto reader, ChangeLogReader::Open(*store_, "db-TEST"));
    std::vector<int64_t> seqs;
    ASSIGN_OR_RETURN(int64_t last, reader.Read(range, [&](LogRecord& r) {
      EXPECT_EQ(r.redo, "redo" + std::to_string(r.seq));
      seqs.push_back(r.seq);
      return Status::Ok();
    }));
    EXPECT_EQ(last, seqs.empty() ? range.first_seq - 1 : seqs.back());
    return seqs;
  }

  std::filesystem::path dir_;
  std::unique_ptr<BackupStore> store_;
};

TEST_F(ChangeLogReaderTest, ReadsARangeOnceInOrderAcrossSegments) {
  Put({1, 2, 3});
  Put({3, 4, 5});  // 3 stored twice, as after a crash
  Put({6, 7});
  EXPECT_EQ(Seqs({1}).value(), (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(Seqs({3, 6}).value(), (std::vector<int64_t>{3, 4, 5, 6}));
  EXPECT_EQ(Seqs({2, ChangeLogRange{}.last_seq, At(4)}).value(), (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(Seqs({8}).value(), std::vector<int64_t>{});
}

TEST_F(ChangeLogReaderTest, AMissingTransactionIsAnError) {
  Put({1, 2});
  Put({5, 6});
  auto seqs = Seqs({1});
  ASSERT_FALSE(seqs.ok());
  EXPECT_TRUE(seqs.status().Is(errors::kCorruption)) << seqs.status().ToString();
  EXPECT_EQ(Seqs({5}).value(), (std::vector<int64_t>{5, 6}));
}

TEST_F(ChangeLogReaderTest, StartsNearATimeAndCountsWhatIsLeft) {
  Put({1, 2});
  Put({3, 4});
  Put({5, 6});
  auto reader = ChangeLogReader::Open(*store_, "db-TEST").value();
  uint64_t all = reader.StoredBytes();
  reader.StartNear(At(5));  // the segment ending before it (3-4) is kept: it may hold the mark's record
  EXPECT_LT(reader.StoredBytes(), all);
  std::vector<int64_t> seqs;
  ASSERT_TRUE(reader.Read({4}, [&](LogRecord& r) {
                      seqs.push_back(r.seq);
                      return Status::Ok();
                    }).ok());
  EXPECT_EQ(seqs, (std::vector<int64_t>{4, 5, 6}));
}

}  // namespace
}  // namespace strata::control
