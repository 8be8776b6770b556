#include "control/changelog/incremental_base.h"

#include <fmt/format.h>

#include "common/error_codes.h"
#include "common/log.h"
#include "control/changelog/reader.h"

namespace strata::control {

// Why an incremental snapshot is the same as a full one. The parent holds
// the database after some transaction k with parent.log_seq_before <= k <=
// parent.log_seq_after; the new view holds it after some m with
// snap.log_seq_before <= m <= snap.log_seq_after (the marks are read right
// before and after the view is opened). Every byte that differs between the
// two was changed by a transaction between k and m, all of which lie in
// parent.log_seq_before+1 .. snap.log_seq_after; the engine turns exactly
// those transactions into file ranges (ChangedRanges: for sqlite, every page
// they wrote, and everything past the smallest size they left the file at).
// Pages the view reads from the WAL need no special case: they were
// committed before the after-mark, so they are among those transactions.
// What would break it, and is checked here, each falling back to a full read:
//  - the log loses commits: a breaking gap since the parent's before-mark;
//    or a seq missing in the segments (retention deleted them, a crash);
//  - a different log epoch (backups turned off and on: seqs start again at
//    1 while the parent's marks are from before): the record at the
//    parent's before-mark must be there and stamped no later than the mark;
//    so a parent taken before any transaction (seq 0) is not used.
//  - the engine cannot tell (postgres), or the log to read is larger than
//    the database (a full read is then cheaper).
IncrementalBase IncrementalBaseFor(catalog::Catalog& catalog, BackupStore& backups, const catalog::InstanceRecord& inst,
                                   const catalog::SnapshotRecord& snap, const engine::Engine& eng,
                                   InstanceCapture& capture, const std::vector<engine::FileSource>& files) {
  auto full = [&](const std::string& why) {
    log::Info("snapshot reads every file", {{"snapshot", snap.id}, {"reason", why}});
    return IncrementalBase{};
  };
  if (snap.log_seq_before < 0 || snap.log_seq_after < snap.log_seq_before) return full("no change-log position");
  std::optional<catalog::SnapshotRecord> parent;
  for (const auto& s : catalog.ListSnapshots()) {
    if (s.id == snap.id || s.instance_resource_id != inst.resource_id || s.status != catalog::SnapshotStatus::kAvailable ||
        s.engine != inst.engine) {
      continue;
    }
    if (s.log_seq_before < 1 || s.log_seq_after < s.log_seq_before) continue;
    if (s.log_seq_before > snap.log_seq_before || s.log_seq_after > snap.log_seq_after ||
        s.log_time_before > snap.log_time_before) {
      continue;
    }
    if (!parent || s.log_seq_before > parent->log_seq_before) parent = s;
  }
  if (!parent) return full("no earlier snapshot with a change-log position");
  auto ab = catalog.GetAutomatedBackup(inst.resource_id);
  if (!ab.ok()) return full("no automated-backups record");
  for (const auto& g : ab->gaps) {
    if (g.breaks && g.to >= parent->log_time_before) return full("the change log breaks after " + parent->id);
  }
  if (Status st = capture.Flush(); !st.ok()) return full("cannot ship the change log: " + st.ToString());
  auto reader = ChangeLogReader::Open(backups, inst.resource_id);
  if (!reader.ok()) return full(reader.status().ToString());
  // Records after the parent's before-mark are stamped after it.
  reader->StartNear(parent->log_time_before);
  uint64_t db_bytes = 0;
  for (const auto& f : files) db_bytes += f.size;
  if (reader->StoredBytes() > db_bytes) return full("the change log since the parent is larger than the database");

  engine::FileRanges changed;
  bool covered = false;
  std::vector<std::string> redo;
  size_t redo_bytes = 0;
  // Adds what the engine says `redo` changed; false: unknown.
  auto absorb = [&]() -> bool {
    auto ranges = eng.ChangedRanges(redo);
    redo.clear();
    redo_bytes = 0;
    if (!ranges.ok() || !ranges->has_value()) return false;
    if (covered) {
      // The files answered for must be the same for every stretch.
      if ((*ranges)->size() != changed.size()) return false;
      for (const auto& [path, r] : **ranges) {
        if (!changed.count(path)) return false;
      }
    }
    covered = true;
    for (auto& [path, r] : **ranges) changed[path].insert(changed[path].end(), r.begin(), r.end());
    return true;
  };
  const Status unknown(errors::kInternalFailure, "the engine cannot tell what its log changed");
  const Status restarted(errors::kInternalFailure, "the change log was restarted after " + parent->id);
  // From the mark's own record: it proves the epoch.
  auto read = reader->Read(
      ChangeLogRange{parent->log_seq_before, snap.log_seq_after},
      [&](LogRecord& rec) -> Status {
        if (rec.seq == parent->log_seq_before) return rec.time > parent->log_time_before ? restarted : Status::Ok();
        redo_bytes += rec.redo.size();
        redo.push_back(std::move(rec.redo));
        return Status::Ok();
      },
      [&]() -> Status { return redo_bytes >= (64u << 20) && !absorb() ? unknown : Status::Ok(); });
  if (!read.ok()) return full(read.status().message());
  if (*read != snap.log_seq_after) {
    return full(fmt::format("the change log does not hold transactions {} to {}", *read + 1, snap.log_seq_after));
  }
  if (!absorb()) return full("the engine cannot tell what its log changed");
  return IncrementalBase{parent->repo_snapshot_id, std::move(changed)};
}

}  // namespace strata::control
