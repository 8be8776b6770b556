#include "control/disk_watch.h"

#include <fmt/format.h>

namespace strata::control {

void DiskWatch::RegisterJobs(scheduler::Scheduler& scheduler) {
  scheduler.EveryPass("disk watch", [this](TimePoint) { Watch(); });
}

bool DiskWatch::Low() const { return ctx_.config.disk && ctx_.config.disk->Low(); }

void DiskWatch::DeferRestore(const catalog::InstanceRecord& r) {
  log::Warn("restore waits for disk space", {{"instance", r.id}});
  std::lock_guard lock(mu_);
  deferred_.push_back(r);
}

void DiskWatch::Watch() {
  if (!ctx_.config.disk) return;
  disk::SpaceState s = ctx_.config.disk->Poll();
  if (!s.low) {
    // Restores a start on a low disk left waiting (Recover).
    std::vector<catalog::InstanceRecord> restores;
    {
      std::lock_guard lock(mu_);
      restores.swap(deferred_);
    }
    for (const auto& r : restores) {
      log::Info("resuming restore", {{"instance", r.id}});
      ctx_.workers->Submit([this, r] { resume_(r); });
    }
  }
  if (s.low == ctx_.disk_paused.load()) return;
  ctx_.disk_paused = s.low;
  const double free_mib = static_cast<double>(s.free_bytes) / (1 << 20);
  const double low_mib = static_cast<double>(ctx_.config.disk->options().low_water_bytes) / (1 << 20);
  std::string message;
  if (s.low) {
    message = fmt::format(
        "Automated backups paused: {:.1f} MiB of disk space free on {}, below the low-water mark of {:.1f} MiB. "
        "New snapshots and restores are refused until space is freed; deleting snapshots and instances works.",
        free_mib, s.where.string(), low_mib);
    log::Warn("disk space low: automatic work paused",
              {{"free_mib", free_mib}, {"path", s.where.string()}, {"low_water_mib", low_mib}});
    // The events below are writes too.
    ctx_.MakeRoom("the low-disk events");
  } else {
    message =
        fmt::format("Automated backups resumed: {:.1f} MiB of disk space free on {}.", free_mib, s.where.string());
    log::Info("disk space back: automatic work resumed", {{"free_mib", free_mib}, {"path", s.where.string()}});
  }
  // RDS reports storage running out per DB instance, in the "low storage" category.
  for (const auto& r : ctx_.catalog->ListInstances())
    ctx_.Event("db-instance", r.id, ctx_.InstanceArn(r.id), message, {"low storage"});
}

}  // namespace strata::control
