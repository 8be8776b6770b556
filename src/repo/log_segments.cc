// The change-log segment store: append, list, read, retention and
// compaction of the segments of each stream (log/<stream>/...).
#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "common/task_pool.h"
#include "repo/repo_internal.h"

namespace strata::repo {
namespace {

std::string LogPrefix(const std::string& stream) { return "log/" + stream + "/"; }

// A time in a segment's key: its microseconds since the epoch offset by 2^62
// to stay non-negative (the format on disk; TimePoint only in memory).
uint64_t TimeInKey(TimePoint t) { return static_cast<uint64_t>(t.time_since_epoch().count()) + (1ull << 62); }
TimePoint TimeFromKey(const std::string& digits) {
  return TimePoint(std::chrono::microseconds(static_cast<int64_t>(std::stoull(digits) - (1ull << 62))));
}

std::optional<LogSegment> ParseLogKey(const std::string& stream, const storage::ObjectInfo& obj) {
  // log/<stream>/<seq:020>-<first:020>-<last:020>[-<last seq:020>], times
  // offset by 2^62 to stay non-negative; the last seq only on a merged segment.
  std::string name = obj.key.substr(LogPrefix(stream).size());
  if ((name.size() != 62 && name.size() != 83) || name[20] != '-' || name[41] != '-') return std::nullopt;
  if (name.size() == 83 && name[62] != '-') return std::nullopt;
  try {
    LogSegment s;
    s.stream = stream;
    s.seq = std::stoull(name.substr(0, 20));
    s.first_time = TimeFromKey(name.substr(21, 20));
    s.last_time = TimeFromKey(name.substr(42, 20));
    s.stored_bytes = obj.size;
    if (name.size() == 83) {
      s.last_seq = std::stoull(name.substr(63, 20));
      if (s.last_seq <= s.seq) return std::nullopt;
    }
    return s;
  } catch (...) {
    return std::nullopt;
  }
}

std::string LogKey(const LogSegment& s) {
  std::string key = fmt::format("{}{:020}-{:020}-{:020}", LogPrefix(s.stream), s.seq,
                                TimeInKey(s.first_time), TimeInKey(s.last_time));
  if (s.LastSeq() > s.seq) key += fmt::format("-{:020}", s.LastSeq());
  return key;
}

// Every segment of the stream stored, in order of seq (the widest first
// among those that start at the same seq).
Result<std::vector<LogSegment>> StoredLogSegments(storage::ObjectStore& store, const std::string& stream) {
  ASSIGN_OR_RETURN(auto objs, store.List(LogPrefix(stream)));
  std::vector<LogSegment> out;
  for (const auto& o : objs) {
    if (auto s = ParseLogKey(stream, o)) out.push_back(*s);
  }
  std::sort(out.begin(), out.end(), [](const LogSegment& a, const LogSegment& b) {
    return a.seq != b.seq ? a.seq < b.seq : a.LastSeq() > b.LastSeq();
  });
  return out;
}

// Splits stored segments into those a reader sees and those a merged
// segment already holds (left behind by a crash before their deletion).
// Only a merged segment covers others: two segments stored under one seq
// (a put that failed after storing, then its retry with more records) both
// stay visible, and readers drop the records they hold twice.
void SplitCovered(std::vector<LogSegment> stored, std::vector<LogSegment>& visible, std::vector<LogSegment>* covered) {
  uint64_t through = 0;  // the highest seq a merged segment listed so far holds
  for (auto& s : stored) {
    if (s.LastSeq() <= through) {
      if (covered) covered->push_back(std::move(s));
      continue;
    }
    if (s.LastSeq() > s.seq) through = s.LastSeq();
    visible.push_back(std::move(s));
  }
}

bool ValidStream(const std::string& s) { return ValidSnapshotId(s) && s.find(':') == std::string::npos; }

}  // namespace

Result<LogSegment> Repository::AppendLogSegment(const std::string& stream, TimePoint first_time,
                                                TimePoint last_time, std::span<const std::string_view> pieces) {
  if (!ValidStream(stream)) return Status(errors::kInvalidParameterValue, "bad log stream " + stream);
  if (last_time < first_time) return Status(errors::kInvalidParameterValue, "segment ends before it starts");
  std::lock_guard lock(impl_->log_mu);
  auto& next = impl_->next_seq[stream];
  if (next == 0) {
    ASSIGN_OR_RETURN(auto existing, StoredLogSegments(*impl_->store, stream));
    next = 1;
    for (const auto& s : existing) next = std::max(next, s.LastSeq() + 1);
  }
  LogSegment seg{stream, next, first_time, last_time, 0};
  // The number is used up even by a failed put, which may have stored the
  // object after all: the caller's retry must not share its seq.
  ++next;
  RETURN_IF_ERROR(impl_->PutStreamed(
      LogKey(seg), [&](const Impl::Sink& sink) { return EncodeLogSegmentTo(pieces, sink); }, &seg.stored_bytes));
  return seg;
}

Result<std::vector<LogSegment>> Repository::ListLogSegments(const std::string& stream, TimePoint from,
                                                            TimePoint to) {
  if (!ValidStream(stream)) return Status(errors::kInvalidParameterValue, "bad log stream " + stream);
  std::vector<LogSegment> visible, out;
  for (int attempt = 0; attempt < 2; ++attempt) {
    ASSIGN_OR_RETURN(auto stored, StoredLogSegments(*impl_->store, stream));
    visible.clear();
    SplitCovered(std::move(stored), visible, nullptr);
    // A listing taken while compaction swaps members for their merged
    // segment may miss both (a directory walk is not atomic): a gap in
    // the numbers is listed once more.
    bool gap = false;
    for (size_t k = 1; k < visible.size(); ++k) gap = gap || visible[k].seq > visible[k - 1].LastSeq() + 1;
    if (!gap) break;
  }
  for (auto& s : visible) {
    if (s.last_time >= from && s.first_time <= to) out.push_back(std::move(s));
  }
  return out;
}

Result<std::string> Repository::ReadLogSegment(const LogSegment& segment) {
  auto bytes = impl_->store->Get(LogKey(segment));
  if (!bytes.ok() && bytes.status().Is(errors::kObjectNotFound) && ValidStream(segment.stream)) {
    // Merged away since it was listed: the merged segment holds its records.
    ASSIGN_OR_RETURN(auto stored, StoredLogSegments(*impl_->store, segment.stream));
    std::vector<LogSegment> visible;
    SplitCovered(std::move(stored), visible, nullptr);
    for (const auto& s : visible) {
      if (s.seq <= segment.seq && segment.LastSeq() <= s.LastSeq() && LogKey(s) != LogKey(segment)) {
        return ReadLogSegment(s);
      }
    }
  }
  if (!bytes.ok()) return bytes.status().WithContext(LogKey(segment));
  auto plain = impl_->OpenObject(LogKey(segment), std::move(*bytes));
  auto payload = plain.ok() ? DecodeLogSegment(*plain) : Result<std::string>(plain.status());
  if (!payload.ok()) return payload.status().WithContext(LogKey(segment));
  return payload;
}

Result<uint64_t> Repository::DeleteLogSegmentsBefore(const std::string& stream, TimePoint time) {
  if (!ValidStream(stream)) return Status(errors::kInvalidParameterValue, "bad log stream " + stream);
  ++impl_->log_rewrite_waiting;
  std::lock_guard rewrite(impl_->log_rewrite_mu);
  --impl_->log_rewrite_waiting;
  // Merged segments' leftovers too: they are past retention as well.
  ASSIGN_OR_RETURN(auto all, StoredLogSegments(*impl_->store, stream));
  std::vector<std::string> keys;
  for (const auto& s : all)
    if (s.last_time < time) keys.push_back(LogKey(s));
  RETURN_IF_ERROR(impl_->store->DeleteMany(keys));
  return static_cast<uint64_t>(keys.size());
}

Result<LogCompactionStats> Repository::CompactLog(const std::string& stream, const LogCompactionOptions& options) {
  if (!ValidStream(stream)) return Status(errors::kInvalidParameterValue, "bad log stream " + stream);
  std::lock_guard rewrite(impl_->log_rewrite_mu);
  // Compaction may run at idle priority (stratad runs it so): once
  // retention waits for it, it finishes at normal priority.
  std::optional<ScopedNormalPriority> lifted;
  auto lift_if_waited_for = [&] {
    if (!lifted && impl_->log_rewrite_waiting.load() > 0) lifted.emplace();
  };
  ASSIGN_OR_RETURN(auto stored, StoredLogSegments(*impl_->store, stream));
  std::vector<LogSegment> visible, covered;
  SplitCovered(std::move(stored), visible, &covered);
  LogCompactionStats stats;
  std::vector<std::string> leftovers;
  for (const auto& s : covered) leftovers.push_back(LogKey(s));
  RETURN_IF_ERROR(impl_->store->DeleteMany(leftovers));

  // A group: consecutive eligible segments, their stored objects (opened)
  // read one by one.
  struct Member {
    std::string object;
    size_t frames_at = 0, frames_size = 0;  // its zstd frames, within object
    uint64_t raw_bytes = 0;
    bool keep_frames = false;  // copied as they are, not compressed again
    std::string_view Frames() const { return std::string_view(object).substr(frames_at, frames_size); }
  };
  std::vector<LogSegment> group;
  std::vector<Member> members;
  uint64_t group_stored = 0, group_raw = 0;
  std::string scratch;  // a kept member's frames decoded, to check them
  auto write_group = [&]() -> Status {
    lift_if_waited_for();
    if (group.size() >= 2) {
      // Merged segments exist only in repositories that say so.
      RETURN_IF_ERROR(impl_->RaiseFormat());
      LogSegment merged{stream, group.front().seq, TimePoint::max(), TimePoint::min(), 0, group.back().LastSeq()};
      for (const auto& g : group) {
        merged.first_time = std::min(merged.first_time, g.first_time);
        merged.last_time = std::max(merged.last_time, g.last_time);
      }
      // Kept members' frames as they are; each run of other members as one
      // new frame at options.zstd_level. Concatenated frames decode to the
      // concatenated payloads, so the merged segment reads as one.
      std::vector<std::string> runs;
      runs.reserve(members.size());  // never reallocated: `frames` points into them
      std::vector<std::string_view> frames;
      std::string pending;
      auto close_run = [&]() -> Status {
        if (pending.empty()) return Status::Ok();
        runs.emplace_back();
        RETURN_IF_ERROR(CompressLogFrame(pending, options.zstd_level, runs.back()));
        frames.push_back(runs.back());
        pending.clear();
        return Status::Ok();
      };
      for (const auto& m : members) {
        if (!m.keep_frames) {
          RETURN_IF_ERROR(DecodeLogFramesTo(m.Frames(), m.raw_bytes, pending));
          continue;
        }
        RETURN_IF_ERROR(close_run());
        // Checked before its neighbours' records are tied to it: frames
        // that do not decode must not take a merged segment down with them.
        scratch.clear();
        RETURN_IF_ERROR(DecodeLogFramesTo(m.Frames(), m.raw_bytes, scratch));
        frames.push_back(m.Frames());
      }
      RETURN_IF_ERROR(close_run());
      RETURN_IF_ERROR(impl_->PutStreamed(
          LogKey(merged), [&](const Impl::Sink& sink) { return EncodeLogFramesTo(group_raw, frames, sink); },
          &merged.stored_bytes));
      std::vector<std::string> keys;
      for (const auto& g : group) keys.push_back(LogKey(g));
      // Durable first, deleted after: a crash between leaves covered members.
      RETURN_IF_ERROR(impl_->store->DeleteMany(keys));
      stats.segments_merged += group.size();
      ++stats.segments_written;
      stats.bytes_before += group_stored;
      stats.bytes_after += merged.stored_bytes;
    }
    group.clear();
    members.clear();
    group_stored = group_raw = 0;
    return Status::Ok();
  };
  for (const auto& s : visible) {
    lift_if_waited_for();
    const bool live_large = options.merge_large && s.LastSeq() == s.seq && s.stored_bytes >= options.small_stored_bytes;
    const bool eligible = (s.stored_bytes < options.small_stored_bytes || live_large) &&
                          s.last_time < options.before && s.last_time - s.first_time < options.max_span;
    if (!group.empty() && (!eligible || s.seq != group.back().LastSeq() + 1 ||
                           s.last_time - group.front().first_time >= options.max_span)) {
      RETURN_IF_ERROR(write_group());
    }
    if (!eligible) continue;
    auto bytes = impl_->store->Get(LogKey(s));
    auto plain = bytes.ok() ? impl_->OpenObject(LogKey(s), std::move(*bytes)) : Result<std::string>(bytes.status());
    if (!plain.ok()) return plain.status().WithContext(LogKey(s));
    auto frames = LogSegmentFramesOf(*plain);
    if (!frames.ok()) return frames.status().WithContext(LogKey(s));
    if (!group.empty() && group_raw + frames->raw_bytes > kMaxLogSegmentRawBytes) RETURN_IF_ERROR(write_group());
    Member m;
    m.frames_at = static_cast<size_t>(frames->frames.data() - plain->data());
    m.frames_size = frames->frames.size();
    m.raw_bytes = frames->raw_bytes;
    // A large live segment is at the live level (merge_large), and small
    // frames compress far better together.
    m.keep_frames = !live_large && m.raw_bytes >= options.keep_frames_raw_bytes &&
                    m.frames_size * options.keep_frames_ratio <= m.raw_bytes;
    m.object = std::move(*plain);
    members.push_back(std::move(m));
    group.push_back(s);
    group_stored += s.stored_bytes;
    group_raw += members.back().raw_bytes;
    // A group is written once it reaches the targets with two members at
    // least (large segments are merged in pairs).
    if (group.size() >= 2 &&
        (group_stored >= options.target_stored_bytes || group_raw >= options.target_raw_bytes)) {
      RETURN_IF_ERROR(write_group());
      // Bounded passes: retention waits for a running one, and a long
      // backlog (a first pass after an upgrade) is taken over several.
      if (stats.segments_written >= options.max_segments_written) {
        stats.more = true;
        return stats;
      }
    }
  }
  RETURN_IF_ERROR(write_group());
  return stats;
}

}  // namespace strata::repo
