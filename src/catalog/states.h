// The states of catalog records, as types. Text exists only at the edges:
// the catalog's rows (catalog.cc) and the RDS wire (api/); both use the names
// below, which are AWS's, so neither a stored catalog nor a client sees a change.
#pragma once

#include <iosfwd>
#include <string_view>

#include "common/status.h"

namespace strata::catalog {

// DBInstanceStatus.
enum class InstanceStatus { kCreating, kAvailable, kModifying, kBackingUp, kRebooting, kDeleting, kFailed };
// A DB snapshot's Status. kDeleted is never stored: DeleteDBSnapshot answers with it.
enum class SnapshotStatus { kCreating, kAvailable, kFailed, kDeleting, kDeleted };
// SnapshotType.
enum class SnapshotType { kManual, kAutomated };
// A DBInstanceAutomatedBackup's Status. Stored: kActive (the instance exists)
// and kRetained (it was deleted, its backups kept). kCreating (no restore
// window yet) and kDeleting are reported, not stored.
enum class AutomatedBackupStatus { kActive, kRetained, kCreating, kDeleting };

// The wire and catalog names: "creating", "available", "backing-up", ...
std::string_view ToString(InstanceStatus s);
std::string_view ToString(SnapshotStatus s);
std::string_view ToString(SnapshotType t);
std::string_view ToString(AutomatedBackupStatus s);

// The reverse, for the edges: a name this build does not know is
// InvalidParameterValue (the caller rewords it where that is not the right code).
Result<InstanceStatus> ParseInstanceStatus(std::string_view text);
Result<SnapshotStatus> ParseSnapshotStatus(std::string_view text);
Result<SnapshotType> ParseSnapshotType(std::string_view text);
Result<AutomatedBackupStatus> ParseAutomatedBackupStatus(std::string_view text);

// For logs and test failure messages.
std::ostream& operator<<(std::ostream& os, InstanceStatus s);
std::ostream& operator<<(std::ostream& os, SnapshotStatus s);
std::ostream& operator<<(std::ostream& os, SnapshotType t);
std::ostream& operator<<(std::ostream& os, AutomatedBackupStatus s);

}  // namespace strata::catalog
