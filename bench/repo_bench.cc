// Repository benchmark: full and incremental snapshots (with the changed
// ranges an engine's change log gives, and without) and restores of a
// database-like file, against cp and tar|zstd of the same file in the same
// run. See bench/RESULTS.md for how it is run and what it found.
//
//   repo_bench --dir /tmp/strata-bench --size-mib 1024
//   repo_bench --rss-gib 10        # peak RSS while snapshotting a generated 10 GiB file
//   repo_bench --encrypt ...       # the same with the repository encrypted (random key)
//
// A profile of one phase (full, incremental or restore) with perf:
//   mkfifo /tmp/ctl
//   perf record -g --control=fifo:/tmp/ctl -D -1 -o perf.data build/bin/repo_bench --profile full --perf-ctl /tmp/ctl
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>

#include "common/allocator.h"
#include "repo/repo.h"
#include "storage/storage.h"

namespace fs = std::filesystem;
using namespace strata;

namespace {

constexpr uint32_t kPage = 4096;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

double Run(const std::string& cmd) {
  auto t = std::chrono::steady_clock::now();
  if (std::system(cmd.c_str()) != 0) {
    std::fprintf(stderr, "command failed: %s\n", cmd.c_str());
    std::exit(1);
  }
  return Seconds(t);
}

uint64_t DirBytes(const fs::path& d) {
  uint64_t n = 0;
  for (auto& e : fs::recursive_directory_iterator(d))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

// Page p's contents: even pages text-like (compressible), odd pages random,
// as a database with indexes and blobs holds; `version` changes a page.
void FillPage(uint64_t p, uint32_t version, char* out) {
  std::mt19937_64 rng(p * 1000003 + version);
  if (p % 2 == 0) {
    for (uint32_t i = 0; i < kPage; i += 8) {
      uint64_t v = rng() % 1000;
      std::snprintf(out + i, 9, "r%06llu,", static_cast<unsigned long long>(v));
    }
  } else {
    for (uint32_t i = 0; i < kPage; i += 8) {
      uint64_t v = rng();
      std::memcpy(out + i, &v, 8);
    }
  }
}

repo::FileSource FileOf(const fs::path& path) {
  auto size = fs::file_size(path);
  auto fd = std::make_shared<FILE*>(std::fopen(path.c_str(), "rb"));
  return repo::FileSource{"data.db", size, 0644, [fd](uint64_t off, std::span<std::byte> out) -> Result<size_t> {
                            return static_cast<size_t>(::pread(fileno(*fd), out.data(), out.size(), off));
                          }};
}

// Rewrites a random `fraction` of the pages; returns their byte ranges, as
// an engine's change log would name them.
std::vector<repo::ByteRange> ChangePages(const fs::path& path, uint64_t pages, double fraction, uint32_t version) {
  FILE* f = std::fopen(path.c_str(), "r+b");
  std::mt19937_64 rng(version);
  std::vector<char> page(kPage);
  std::vector<repo::ByteRange> ranges;
  for (uint64_t k = 0; k < static_cast<uint64_t>(pages * fraction); ++k) {
    uint64_t p = rng() % pages;
    FillPage(p, version, page.data());
    ::pwrite(fileno(f), page.data(), kPage, p * kPage);
    ranges.push_back({p * kPage, kPage});
  }
  std::fclose(f);
  return ranges;
}

// CPU seconds this process has used, user and system, over all threads.
std::pair<double, double> CpuSeconds() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return {s(ru.ru_utime), s(ru.ru_stime)};
}

long PeakRssMiB() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

int zstd_level = repo::RepoOptions{}.zstd_level;
uint32_t chunk_kib = repo::RepoOptions{}.chunk_size / 1024;
int threads = repo::RepoOptions{}.threads;

repo::RepoOptions Options(bool encrypt) {
  repo::RepoOptions o;
  o.zstd_level = zstd_level;
  o.chunk_size = chunk_kib * 1024;
  o.threads = threads;
  if (encrypt) {
    std::string key(32, '\0');
    std::random_device rd;
    for (auto& c : key) c = static_cast<char>(rd());
    o.keyring = repo::NewKeyringOfKey(key).value();
  }
  return o;
}

int RssTest(uint64_t gib, const fs::path& dir, bool encrypt) {
  fs::remove_all(dir / "rss-repo");
  auto repository =
      repo::Repository::Open(std::move(storage::OpenPosixStore(dir / "rss-repo")).value(), Options(encrypt)).value();
  uint64_t size = gib << 30;
  repo::FileSource gen{"data.db", size, 0644, [](uint64_t off, std::span<std::byte> out) -> Result<size_t> {
                         for (size_t i = 0; i < out.size(); i += kPage) FillPage((off + i) / kPage, 0, reinterpret_cast<char*>(out.data() + i));
                         return out.size();
                       }};
  auto t = std::chrono::steady_clock::now();
  auto st = repository->CreateSnapshot("rss", {}, {gen});
  if (!st.ok()) return std::fprintf(stderr, "%s\n", st.status().ToString().c_str()), 1;
  std::printf("rss: snapshot of a generated %llu GiB file in %.1f s, peak RSS %ld MiB\n",
              static_cast<unsigned long long>(gib), Seconds(t), PeakRssMiB());
  fs::remove_all(dir / "rss-repo");
  return 0;
}

// Turns `perf record --control=fifo:PATH -D -1` on for the phase named by
// --profile and off after it.
struct PerfPhase {
  PerfPhase(const std::string& ctl, const std::string& wanted, const char* phase) {
    if (ctl.empty() || wanted != phase) return;
    f = std::fopen(ctl.c_str(), "w");
    if (f) std::fputs("enable\n", f), std::fflush(f);
  }
  ~PerfPhase() {
    if (f) std::fputs("disable\n", f), std::fclose(f);
  }
  FILE* f = nullptr;
};

}  // namespace

int main(int argc, char** argv) {
  AskForHugePages(argv);  // as stratad does
  KeepFreedMemoryForReuse();
  std::string dir_s = "/tmp/strata-bench";
  uint64_t size_mib = 1024;
  uint64_t rss_gib = 0;
  int days = 30;
  bool encrypt = false;
  std::string profile, perf_ctl;
  CLI::App app{"repository benchmark"};
  app.add_option("--profile", profile, "full, incremental, restore or restore-direct: the phase perf records (with --perf-ctl)");
  app.add_option("--perf-ctl", perf_ctl, "the fifo of perf record --control");
  app.add_option("--dir", dir_s);
  app.add_option("--size-mib", size_mib);
  app.add_option("--rss-gib", rss_gib);
  app.add_option("--days", days);
  app.add_flag("--encrypt", encrypt, "Encrypt the repository (AES-256-GCM, HMAC chunk ids)");
  app.add_option("--zstd-level", zstd_level, "The chunks' zstd level (default: the repository's)");
  app.add_option("--threads", threads, "A snapshot's threads (a restore's: twice as many)");
  app.add_option("--chunk-kib", chunk_kib, "The chunk size in KiB (default: the repository's)");
  CLI11_PARSE(app, argc, argv);
  fs::path dir = dir_s;
  fs::create_directories(dir);
  if (rss_gib) return RssTest(rss_gib, dir, encrypt);

  fs::path db = dir / "data.db";
  uint64_t pages = (size_mib << 20) / kPage;
  {
    FILE* f = std::fopen(db.c_str(), "wb");
    std::vector<char> buf(kPage * 256);
    for (uint64_t p = 0; p < pages; p += 256) {
      for (uint64_t k = 0; k < 256; ++k) FillPage(p + k, 0, buf.data() + k * kPage);
      std::fwrite(buf.data(), 1, buf.size(), f);
    }
    std::fclose(f);
    Run(fmt::format("sync {}", db.string()));
  }
  double mib = static_cast<double>(size_mib);
  fs::remove_all(dir / "repo");
  fs::remove_all(dir / "restore");
  // Warm the page cache once so every contender reads from memory alike.
  Run(fmt::format("cat {} > /dev/null", db.string()));

  // cp's time swings 2x between runs with the state of the page cache and
  // writeback: the median of three.
  auto cp_once = [&] {
    double s = Run(fmt::format("cp {0} {1}/cp.out && sync {1}/cp.out", db.string(), dir.string()));
    fs::remove(dir / "cp.out");
    return s;
  };
  std::vector<double> cps;
  for (int i = 0; i < 3; ++i) cps.push_back(cp_once());
  std::sort(cps.begin(), cps.end());
  double cp = cps[1];
  double tarz = Run(fmt::format("tar cf - -C {0} data.db | zstd -1 -T0 -q -f -o {0}/tar.zst && sync {0}/tar.zst",
                                dir.string()));
  uint64_t tarz_bytes = fs::file_size(dir / "tar.zst");

  // The first snapshot of a fresh process pays for its working memory:
  // every page of it a fault and a zeroed page, which on a VM whose host
  // took the guest's free memory back costs more than compressing the page.
  // stratad lives on and keeps freed memory (KeepFreedMemoryForReuse), so
  // its later snapshots do not: the second snapshot, into a fresh
  // repository, is the one compared with cp.
  double first_s = 0;
  {
    fs::remove_all(dir / "repo-first");
    auto first_repo =
        repo::Repository::Open(std::move(storage::OpenPosixStore(dir / "repo-first")).value(), Options(encrypt))
            .value();
    auto t = std::chrono::steady_clock::now();
    if (!first_repo->CreateSnapshot("full", {}, {FileOf(db)}).ok()) return 1;
    first_s = Seconds(t);
    fs::remove_all(dir / "repo-first");
  }
  auto repository =
      repo::Repository::Open(std::move(storage::OpenPosixStore(dir / "repo")).value(), Options(encrypt)).value();
  auto t = std::chrono::steady_clock::now();
  const auto cpu_before = CpuSeconds();
  std::optional<PerfPhase> perf_full(std::in_place, perf_ctl, profile, "full");
  auto full = repository->CreateSnapshot("full", {}, {FileOf(db)}).value();
  perf_full.reset();
  double full_s = Seconds(t);
  const auto cpu_after = CpuSeconds();
  const double full_user = cpu_after.first - cpu_before.first, full_sys = cpu_after.second - cpu_before.second;

  auto changed = ChangePages(db, pages, 0.01, 1);
  // Incremental with the changed ranges (what an engine's change log gives):
  // reads those pages and the parent's manifest.
  t = std::chrono::steady_clock::now();
  std::optional<PerfPhase> perf_inc(std::in_place, perf_ctl, profile, "incremental");
  auto inc = repository
                 ->CreateSnapshot("inc", {}, {FileOf(db)}, {.parent_id = "full", .changed = {{"data.db", changed}}})
                 .value();
  perf_inc.reset();
  double inc_s = Seconds(t);
  // The same without ranges: re-reads and re-hashes the whole file (its new
  // chunks are stored already, so only the time is comparable).
  t = std::chrono::steady_clock::now();
  auto reread = repository->CreateSnapshot("inc-reread", {}, {FileOf(db)}).value();
  double reread_s = Seconds(t);
  (void)reread;

  // A restore writes a GiB into the page cache (buffered) and cp does the
  // same; on the VM, pages the host took back cost ten times the others
  // (dd of 1 GiB: 6.1 s, then 0.75 s with the pages its first run freed).
  // So each restore is measured right after a cp of the file whose copy is
  // deleted before it, and that cp right after another: both write into
  // pages just freed, and each restore is compared with the cp before it.
  // cp (copy_file_range) copies from the page cache inside the kernel,
  // while a restore reads its packs from the disk (written around the page
  // cache, as they are long after a backup): so a cp of the file read from
  // the disk too, its cached pages dropped first, is measured beside it.
  struct Cp {
    double warm = 0, cold = 0;
  };
  auto cp_before = [&] {
    Cp c;
    cp_once();
    Run(fmt::format("dd if={} iflag=nocache count=0 status=none", db.string()));
    c.cold = cp_once();
    c.warm = cp_once();
    return c;
  };
  const Cp restore_cp = cp_before();
  t = std::chrono::steady_clock::now();
  std::optional<PerfPhase> perf_restore(std::in_place, perf_ctl, profile, "restore");
  if (!repository->RestoreSnapshot("inc", (dir / "restore").string()).ok()) return 1;
  Run(fmt::format("sync {}/restore/data.db", dir.string()));
  perf_restore.reset();
  double restore_s = Seconds(t);
  if (Run(fmt::format("cmp -s {} {}/restore/data.db", db.string(), dir.string())) < 0) return 1;
  std::filesystem::remove_all(dir / "restore");

  // The same restore written around the page cache (what a postgres
  // instance's restore does).
  const Cp direct_cp = cp_before();
  t = std::chrono::steady_clock::now();
  std::optional<PerfPhase> perf_direct(std::in_place, perf_ctl, profile, "restore-direct");
  if (!repository->RestoreSnapshot("inc", (dir / "restore").string(), nullptr, {.direct = true}).ok()) return 1;
  Run(fmt::format("sync {}/restore/data.db", dir.string()));
  perf_direct.reset();
  double restore_direct_s = Seconds(t);
  if (Run(fmt::format("cmp -s {} {}/restore/data.db", db.string(), dir.string())) < 0) return 1;

  std::printf("file                          %8.0f MiB (half random pages, half text-like)%s\n", mib,
              encrypt ? ", repository encrypted" : "");
  std::printf("cp + fsync (median of 3)      %8.2f s  %7.0f MiB/s   (runs %.2f, %.2f, %.2f s)\n", cp, mib / cp,
              cps[0], cps[1], cps[2]);
  std::printf("tar | zstd -1 -T0             %8.2f s  %7.0f MiB/s  -> %.0f MiB\n", tarz, mib / tarz,
              tarz_bytes / 1048576.0);
  std::printf("strata full snapshot          %8.2f s  %7.0f MiB/s  -> %.0f MiB stored   (%.2fx cp, %.2fx tar|zstd)\n",
              full_s, mib / full_s, full.stored_bytes / 1048576.0, cp / full_s, tarz / full_s);
  std::printf("  its CPU: %.2f s user + %.2f s system = %.2f cores busy (%d threads)\n", full_user, full_sys,
              (full_user + full_sys) / full_s, threads);
  std::printf("  the same, first in a fresh process %5.2f s   (%.2fx cp)\n", first_s, cp / first_s);
  std::printf("strata incremental (1%% pages, changed ranges given) %6.3f s  = %.1f%% of full; read %.2f MiB; "
              "added %.2f MiB = %.2f%% of the file\n",
              inc_s, 100 * inc_s / full_s, inc.read_bytes / 1048576.0, inc.stored_bytes / 1048576.0,
              100.0 * inc.stored_bytes / (size_mib << 20));
  std::printf("strata incremental (same, no ranges: re-reads all) %6.3f s  = %.1f%% of full\n", reread_s,
              100 * reread_s / full_s);
  std::printf("strata restore                %8.2f s  %7.0f MiB/s   (%.2fx the cp just before, %.2f s; "
              "%.2fx cp from the disk, %.2f s)\n",
              restore_s, mib / restore_s, restore_cp.warm / restore_s, restore_cp.warm, restore_cp.cold / restore_s,
              restore_cp.cold);
  std::printf("strata restore, direct writes %8.2f s  %7.0f MiB/s   (%.2fx the cp just before, %.2f s; "
              "%.2fx cp from the disk, %.2f s)\n",
              restore_direct_s, mib / restore_direct_s, direct_cp.warm / restore_direct_s, direct_cp.warm,
              direct_cp.cold / restore_direct_s, direct_cp.cold);

  std::string parent = "inc";
  std::vector<double> daily_s;
  for (int d = 2; d <= days; ++d) {
    auto ranges = ChangePages(db, pages, 0.01, d);
    std::string id = fmt::format("day{}", d);
    t = std::chrono::steady_clock::now();
    if (!repository->CreateSnapshot(id, {}, {FileOf(db)}, {.parent_id = parent, .changed = {{"data.db", ranges}}})
             .ok()) {
      return 1;
    }
    daily_s.push_back(Seconds(t));
    parent = id;
  }
  if (!daily_s.empty()) {
    std::sort(daily_s.begin(), daily_s.end());
    const double median = daily_s[daily_s.size() / 2];
    std::printf("daily incrementals (1%% pages, ranges given), %zu of them: median %.3f s = %.1f%% of full "
                "(fastest %.3f s, slowest %.3f s)\n",
                daily_s.size(), median, 100 * median / full_s, daily_s.front(), daily_s.back());
  }
  if (!repository->RestoreSnapshot(parent, (dir / "restore").string()).ok()) return 1;
  Run(fmt::format("cmp -s {} {}/restore/data.db", db.string(), dir.string()));
  uint64_t repo_bytes = DirBytes(dir / "repo");
  std::printf("%d daily snapshots, 1%% churn   repo %.0f MiB = %.2fx the file\n", days + 1,
              repo_bytes / 1048576.0, static_cast<double>(repo_bytes) / (size_mib << 20));
  std::printf("peak RSS                      %ld MiB\n", PeakRssMiB());
  fs::remove_all(dir);
  return 0;
}
