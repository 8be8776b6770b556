// Private to control/: what a new snapshot may take from an earlier one
// instead of reading it, told by the change log between the two.
#pragma once

#include <vector>

#include "catalog/catalog.h"
#include "control/backup_store.h"
#include "control/changelog/instance_capture.h"
#include "engine/engine.h"

namespace strata::control {

// For snapshot `snap` of `inst`, its log marks just read: the newest
// earlier snapshot of the instance that the change log connects it to,
// and the file ranges the log says changed since (engine.ChangedRanges
// over transactions parent.log_seq_before+1 .. snap.log_seq_after). A
// full snapshot ({}) whenever that cannot be shown: see the .cc.
IncrementalBase IncrementalBaseFor(catalog::Catalog& catalog, BackupStore& backups,
                                   const catalog::InstanceRecord& inst,
                                   const catalog::SnapshotRecord& snap, const engine::Engine& eng,
                                   InstanceCapture& capture,
                                   const std::vector<engine::FileSource>& files);

}  // namespace strata::control
