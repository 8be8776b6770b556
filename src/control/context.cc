#include "control/context.h"

#include <algorithm>

#include "common/ids.h"

namespace strata::control {

bool Matches(const std::vector<std::string>& any_of, std::string_view v) {
  return any_of.empty() || std::find(any_of.begin(), any_of.end(), v) != any_of.end();
}

engine::InstanceSpec SpecOf(const catalog::InstanceRecord& r) {
  engine::InstanceSpec spec;
  spec.id = r.id;
  spec.resource_id = r.resource_id;
  spec.data_dir = r.data_path;
  spec.db_name = r.db_name;
  spec.master_username = r.master_username;
  spec.port = r.port;
  spec.engine_state = r.engine_state;
  return spec;
}

void WarnIfFailed(const Status& st, std::string_view doing, const std::string& resource) {
  if (!st.ok())
    log::Warn(std::string(doing) + " failed", {{"resource", resource}, {"error", st.ToString()}});
}

std::string Context::AutomatedBackupArn(const std::string& resource_id) const {
  std::string suffix =
      ToLower(resource_id.rfind("db-", 0) == 0 ? resource_id.substr(3) : resource_id);
  return FormatArn(config.region, account_id, "auto-backup", "ab-" + suffix);
}

Result<std::string> Context::IdFrom(const std::string& id_or_arn,
                                    std::string_view resource_type) const {
  if (id_or_arn.rfind("arn:", 0) != 0) return id_or_arn;
  ASSIGN_OR_RETURN(auto arn, ParseOwnArn(id_or_arn, Owner(), resource_type));
  return arn.resource_id;
}

void Context::Event(const std::string& source_type, const std::string& id, const std::string& arn,
                    const std::string& message, std::vector<std::string> categories) {
  catalog::EventRecord e;
  e.time = Now();
  e.source_type = source_type;
  e.source_id = id;
  e.source_arn = arn;
  e.message = message;
  e.categories = std::move(categories);
  Status st = catalog->AddEvent(e);
  if (!st.ok()) log::Warn("event not recorded", {{"error", st.ToString()}});
}

void Context::StartInstanceRecord(catalog::InstanceRecord& r) const {
  r.status = InstanceStatus::kCreating;
  r.create_time = Now();
  r.resource_id = "db-" + RandomAlnumUpper(26);
  r.data_path = (config.data_dir / "instances" / r.resource_id).string();
}

Status Context::SetStatus(const std::string& id, InstanceStatus status,
                          const std::string& reason) {
  return catalog->InTransaction([&]() -> Status {
    ASSIGN_OR_RETURN(auto r, catalog->GetInstance(id));
    r.status = status;
    r.status_reason = reason;
    return catalog->UpdateInstance(r);
  });
}

void Context::SetStatusOrLog(const std::string& id, InstanceStatus status,
                             const std::string& reason) {
  if (Status st = SetStatus(id, status, reason); !st.ok()) {
    log::Error("instance status update failed",
               {{"instance", id}, {"status", std::string(ToString(status))}, {"error", st.ToString()}});
  }
}

void Context::MakeRoom(std::string_view why) {
  if (!config.disk) return;
  // Whether it released anything matters not here: the write that follows
  // fails on its own, and says so, if there is still no room.
  (void)config.disk->MakeRoom(why);
}

void Context::ScheduleGarbageCollection() {
  queue->Enqueue("garbage-collection", [this] {
    Status st = backups->CollectGarbage();
    if (!st.ok()) log::Warn("garbage collection failed", {{"error", st.ToString()}});
  });
}

}  // namespace strata::control
