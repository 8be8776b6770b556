// stratad: the Strata server. One process, one port, every API.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>

#include "api/api.h"
#include "cmd/repo_key.h"
#include "catalog/catalog.h"
#include "common/allocator.h"
#include "common/atomic_file.h"
#include "common/clock.h"
#include "common/credentials.h"
#include "common/disk_space.h"
#include "common/log.h"
#include "common/private_files.h"
#include "control/control.h"
#include "control/repo_backup_store.h"
#include "repo/repo.h"
#include "storage/storage.h"

namespace fs = std::filesystem;
using namespace strata;

namespace {

struct Options {
  std::string data_dir = "./strata-data";
  std::string listen = "127.0.0.1:5480";
  std::string region = "us-east-1";
  std::string log_level = "info";
  int manual_snapshot_quota = 100;
  std::string repo;  // empty: DATA/repo on this disk; s3://BUCKET[/PREFIX]
  std::string s3_endpoint;
  std::string s3_region = "us-east-1";
  bool s3_path_style = false;
  int s3_stall_timeout = 30;
  int repo_memory_mib = 256;
  int repo_threads = 0;  // 0: one per core
  int repo_zstd_level = repo::RepoOptions{}.zstd_level;
  uint32_t repo_chunk_kib = control::kMinChunkSize / 1024;
  std::string repo_key_file;  // empty: an unencrypted repository
  std::string repo_key_id;
  double data_api_statement_timeout = 45;  // seconds, as the Data API's own call timeout
  double data_api_lock_timeout = 5;        // seconds
  int http_workers = 0;  // 0: max(8, 4 per core)
  int http_queue = -1;   // -1: 4 per worker
  int http_header_timeout = 10;
  int http_body_timeout = 30;
  int http_idle_timeout = 60;
  int disk_reserve_mib = 64;
  int disk_low_water_mib = 256;
  std::string clock = "system";  // or "manual", for tests only
  std::string clock_start;       // the manual clock's first time; empty: now
};

// The repository's byte store: the posix directory under the data dir, or an
// S3 bucket with stratad's own credentials (never an API caller's).
Result<std::unique_ptr<storage::ObjectStore>> OpenRepoStore(const Options& opt, const fs::path& data_dir) {
  if (opt.repo.empty()) {
    RETURN_IF_ERROR(storage::SaveRepoLocation(data_dir, std::nullopt));
    return storage::OpenPosixStore(data_dir / "repo");
  }
  ASSIGN_OR_RETURN(auto cfg, storage::ParseS3Url(opt.repo));
  cfg.endpoint = opt.s3_endpoint;
  cfg.region = opt.s3_region;
  cfg.path_style = opt.s3_path_style;
  cfg.stall_timeout_seconds = opt.s3_stall_timeout;
  auto creds = ResolveClientCredentials(std::nullopt);
  if (creds) cfg.credentials = *creds;
  ASSIGN_OR_RETURN(auto store, storage::OpenS3Store(cfg));
  RETURN_IF_ERROR(storage::SaveRepoLocation(data_dir, cfg));
  return store;
}

// The manual clock of `--clock manual`, or null for the system clock; a
// usage error (exit 2) is said on stderr.
std::optional<std::unique_ptr<ManualClock>> ManualClockOf(const Options& opt) {
  if (opt.clock != "system" && opt.clock != "manual") {
    std::fprintf(stderr, "stratad: --clock must be system or manual (manual is for tests only), got %s\n",
                 opt.clock.c_str());
    return std::nullopt;
  }
  if (opt.clock == "system") {
    if (opt.clock_start.empty()) return std::unique_ptr<ManualClock>();
    std::fprintf(stderr, "stratad: --clock-start needs --clock manual\n");
    return std::nullopt;
  }
  TimePoint start = SystemClock().Now();
  if (!opt.clock_start.empty()) {
    auto parsed = ParseIso8601(opt.clock_start);
    if (!parsed) {
      std::fprintf(stderr, "stratad: --clock-start must be an ISO 8601 time with a zone, got %s\n",
                   opt.clock_start.c_str());
      return std::nullopt;
    }
    start = *parsed;
  }
  return std::make_unique<ManualClock>(start);
}

bool SplitHostPort(const std::string& listen, std::string& host, int& port) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return false;
  host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  try {
    port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    return false;
  }
  return port >= 0 && port <= 65535 && !host.empty();
}

int Fail(const Status& st) {
  log::Error("stratad cannot start", {{"error", st.ToString()}});
  std::fprintf(stderr, "stratad: %s\n", st.ToString().c_str());
  return 1;
}

// Only one stratad may own a data dir; the lock goes away with the process.
bool LockDataDir(const fs::path& dir) {
  int fd = ::open((dir / "stratad.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  return fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) == 0;
}

// The cores this process may run on (taskset, a cpuset): a machine's whole
// count would start more snapshot threads than can run at once.
int UsableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

void AddFlags(CLI::App& app, Options& opt) {
  app.set_config("--config", "", "Read these settings from a TOML/INI file");
  app.add_option("--data-dir", opt.data_dir, "Data directory")->capture_default_str();
  app.add_option("--listen", opt.listen, "HOST:PORT to serve on (port 0: any free port)")
      ->capture_default_str();
  app.add_option("--region", opt.region, "AWS region name to report")->capture_default_str();
  app.add_option("--log-level", opt.log_level, "debug, info, warn or error")->capture_default_str();
  app.add_option("--manual-snapshot-quota", opt.manual_snapshot_quota,
                 "Most manual snapshots kept at once (RDS: 100)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--repo", opt.repo, "Backup repository: s3://BUCKET[/PREFIX] (default: DATA/repo)");
  app.add_option("--s3-endpoint", opt.s3_endpoint, "S3 endpoint URL for an s3:// repo");
  app.add_option("--s3-region", opt.s3_region, "S3 region for signing")->capture_default_str();
  app.add_flag("--s3-path-style", opt.s3_path_style, "Put the bucket in the path, not the host name (RGW, MinIO)");
  app.add_option("--repo-memory-mib", opt.repo_memory_mib,
                 "Working memory of one snapshot or restore, whatever the database's size")
      ->capture_default_str()
      ->check(CLI::Range(16, 65536));
  app.add_option("--repo-threads", opt.repo_threads,
                 "Threads of one snapshot (a restore runs on twice as many); 0: one per core. Either way no more "
                 "than --repo-memory-mib allows, 32 MiB each; the log says how many")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  app.add_option("--repo-zstd-level", opt.repo_zstd_level,
                 "zstd level of new chunks (-7 fastest to 19 smallest); existing chunks keep theirs")
      ->capture_default_str()
      ->check(CLI::Range(-7, 19));
  app.add_option("--repo-chunk-kib", opt.repo_chunk_kib,
                 "Least chunk size of new snapshots in KiB (a power of two, 4 to 1024); an engine with larger "
                 "pages chunks at its page size")
      ->capture_default_str()
      ->check(CLI::IsMember({4, 8, 16, 32, 64, 128, 256, 512, 1024}));
  auto* key_file = app.add_option("--repo-key-file", opt.repo_key_file,
                                  "Encrypt the backup repository at rest with the 256-bit key in this file (32 raw "
                                  "bytes or 64 hex digits, mode 0600); chosen when the repository is created");
  app.add_option("--repo-key-id", opt.repo_key_id, "The key's id in the repository (default: derived from the key)")
      ->needs(key_file);
  app.add_option("--data-api-statement-timeout", opt.data_api_statement_timeout,
                 "Seconds a Data API call's SQL may run before it is cancelled (StatementTimeoutException)")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 86400.0));
  app.add_option("--data-api-lock-timeout", opt.data_api_lock_timeout,
                 "Seconds a Data API writer waits for an instance's write lock before it is answered busy")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--s3-stall-timeout", opt.s3_stall_timeout,
                 "Seconds an S3 transfer may stall (under 1 KiB/s) before it is cut and retried")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  app.add_option("--http-workers", opt.http_workers,
                 "Threads that run API requests; 0: max(8, 4 per core) (requests mostly wait on disk and locks, "
                 "not the CPU)")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  app.add_option("--http-queue", opt.http_queue,
                 "Requests that may wait for a worker; more are answered at once with Throttling "
                 "(ThrottlingException on the Data API), which the SDKs retry with backoff; -1: 4 per worker")
      ->capture_default_str()
      ->check(CLI::Range(-1, 1 << 20));
  app.add_option("--http-header-timeout", opt.http_header_timeout,
                 "Seconds a client has to send a request's head, from its first byte")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  app.add_option("--http-body-timeout", opt.http_body_timeout, "Seconds a client has to send a request's body")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  app.add_option("--http-idle-timeout", opt.http_idle_timeout,
                 "Seconds an idle keep-alive connection stays open")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  app.add_option("--disk-reserve-mib", opt.disk_reserve_mib,
                 "Disk space held in DATA/.reserve and given back, an eighth at a time, when the disk is full, so that "
                 "deletes and a restart still work (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--disk-low-water-mib", opt.disk_low_water_mib,
                 "Below this much free space on the data dir's (or local repository's) file system, automated "
                 "backups pause and new snapshots, restores and instances are refused; deletes go on")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 24));
  app.add_option("--clock", opt.clock,
                 "system, or manual: FOR TESTS ONLY, time then moves only when told (strata clock set|advance, "
                 "over the /strata/clock endpoint that exists only in this mode)")
      ->capture_default_str();
  app.add_option("--clock-start", opt.clock_start,
                 "With --clock manual: its first time, ISO 8601 UTC (default: the real now)");
}

disk::GuardOptions DiskOptionsOf(const Options& opt, const fs::path& data_dir) {
  std::error_code ec;
  disk::GuardOptions disk_options;
  disk_options.watched = {data_dir};
  if (opt.repo.empty()) {
    fs::create_directories(data_dir / "repo", ec);
    if (!ec) disk_options.watched.push_back(data_dir / "repo");
  }
  disk_options.reserve_file = data_dir / ".reserve";
  disk_options.reserve_bytes = static_cast<uint64_t>(opt.disk_reserve_mib) << 20;
  disk_options.low_water_bytes = static_cast<uint64_t>(opt.disk_low_water_mib) << 20;
  return disk_options;
}

// The root credentials (made on the first start): access key id -> secret.
Result<std::map<std::string, std::string>> LoadSecrets(const fs::path& cred_path) {
  if (!fs::exists(cred_path)) {
    auto created = CreateRootCredentials(cred_path);
    if (!created.ok()) return created.status();
    log::Info("created root credentials", {{"file", cred_path.string()},
                                           {"access_key_id", created->access_key_id}});
  }
  auto creds = LoadCredentialsFile(cred_path);
  if (!creds.ok()) return creds.status();
  std::map<std::string, std::string> secrets;
  for (const auto& [profile, c] : *creds) secrets[c.access_key_id] = c.secret_access_key;
  return secrets;
}

Result<std::shared_ptr<repo::Repository>> OpenRepository(const Options& opt, const fs::path& data_dir) {
  auto store = OpenRepoStore(opt, data_dir);
  if (!store.ok()) return store.status();
  const int cpus = opt.repo_threads > 0 ? opt.repo_threads : UsableCpus();
  auto repo_options = repo::RepoOptions::ForMemoryBudget(static_cast<uint64_t>(opt.repo_memory_mib) << 20, cpus);
  log::Info("backup repository", {{"store", (*store)->Describe()},
                                  {"snapshot_threads", std::to_string(repo_options.threads)},
                                  {"restore_threads", std::to_string(repo_options.restore_threads)}});
  repo_options.zstd_level = opt.repo_zstd_level;
  if (!opt.repo_key_file.empty()) {
    auto keyring = cli::RepoKeyring(data_dir, opt.repo_key_file, opt.repo_key_id);
    if (!keyring.ok()) return keyring.status();
    repo_options.keyring = *keyring;
  }
  auto repository = repo::Repository::Open(std::move(*store), repo_options);
  if (!repository.ok()) return repository.status();
  if (!(*repository)->key_id().empty()) log::Info("repository encrypted", {{"key_id", (*repository)->key_id()}});
  if (Status st = cli::RecordRepoKeyFile(data_dir, opt.repo_key_file, opt.repo_key_id); !st.ok()) return st;
  return std::shared_ptr<repo::Repository>(std::move(*repository));
}

void PrintHowToConnect(const std::string& url, const fs::path& data_dir, const fs::path& cred_path,
                       const std::string& region) {
  std::printf(
      "stratad is serving on %s (data dir %s)\n"
      "Point the aws CLI and SDKs at it:\n"
      "  export AWS_SHARED_CREDENTIALS_FILE=%s\n"
      "  export AWS_DEFAULT_REGION=%s\n"
      "  export AWS_ENDPOINT_URL=%s   # read by aws CLI >= 2.13 and boto3 >= 1.28 only\n"
      "  aws --endpoint-url %s rds describe-db-instances   # Debian 12's aws and boto3 need it given\n",
      url.c_str(), data_dir.c_str(), cred_path.c_str(), region.c_str(), url.c_str(),
      url.c_str());
  std::fflush(stdout);
}

control::Config ControlConfigOf(const Options& opt, const fs::path& data_dir, const Clock& clock,
                                bool backups_encrypted, disk::DiskGuard& disk_guard) {
  control::Config cfg;
  cfg.data_dir = data_dir;
  cfg.backups_encrypted = backups_encrypted;
  cfg.region = opt.region;
  cfg.clock = &clock;
  cfg.manual_snapshot_quota = opt.manual_snapshot_quota;
  auto millis = [](double seconds) { return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)); };
  cfg.data_api_limits.statement_timeout = millis(opt.data_api_statement_timeout);
  cfg.data_api_limits.lock_timeout = millis(opt.data_api_lock_timeout);
  cfg.disk = &disk_guard;
  return cfg;
}

// The transport's settings (the clocks and credentials are the caller's).
api::ServerConfig ServerConfigOf(const Options& opt, const std::string& host, int port) {
  api::ServerConfig scfg;
  scfg.host = host;
  scfg.port = port;
  scfg.region = opt.region;
  scfg.workers = opt.http_workers > 0 ? opt.http_workers : std::max(8, 4 * UsableCpus());
  scfg.queue_limit = static_cast<size_t>(opt.http_queue >= 0 ? opt.http_queue : 4 * scfg.workers);
  scfg.header_timeout = std::chrono::seconds(opt.http_header_timeout);
  scfg.body_timeout = std::chrono::seconds(opt.http_body_timeout);
  scfg.idle_timeout = std::chrono::seconds(opt.http_idle_timeout);
  log::Info("http", {{"workers", scfg.workers}, {"queue", scfg.queue_limit},
                     {"max_body_bytes", scfg.max_body_bytes}});
  return scfg;
}

}  // namespace

int main(int argc, char** argv) {
  strata::UsePrivateUmask();
  strata::AskForHugePages(argv);
  strata::KeepFreedMemoryForReuse();
  Options opt;
  CLI::App app{"stratad: the Strata server (Amazon RDS-compatible backup and restore)"};
  AddFlags(app, opt);
  CLI11_PARSE(app, argc, argv);

  if (!log::SetLevel(opt.log_level)) {
    std::fprintf(stderr, "stratad: unknown --log-level %s\n", opt.log_level.c_str());
    return 2;
  }
  auto manual_clock = ManualClockOf(opt);
  if (!manual_clock) return 2;
  std::string host;
  int port = 0;
  if (!SplitHostPort(opt.listen, host, port)) {
    std::fprintf(stderr, "stratad: --listen must be HOST:PORT, got %s\n", opt.listen.c_str());
    return 2;
  }

  // Block the stop signals before any thread starts, so only the waiter sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::error_code ec;
  fs::path data_dir = fs::absolute(opt.data_dir);
  fs::create_directories(data_dir, ec);
  if (ec) return Fail(Status(errors::kIoError, "cannot create " + data_dir.string() + ": " + ec.message()));
  if (!LockDataDir(data_dir)) {
    return Fail(Status(errors::kIoError, "another stratad is using " + data_dir.string()));
  }
  if (Status st = PrivatizeDataDir(data_dir); !st.ok()) return Fail(st);

  // Before anything else writes: on a full disk the reserve gives the
  // start's writes (the catalog, the endpoint file) their room.
  disk::DiskGuard disk_guard(DiskOptionsOf(opt, data_dir));
  disk::SpaceState space = disk_guard.Poll();
  (void)disk_guard.MakeRoom("the start");
  disk::InstallProcessGuard(&disk_guard);
  if (space.low) {
    log::Warn("disk space low at start: automatic work waits",
              {{"free_mib", static_cast<double>(space.free_bytes) / (1 << 20)}, {"path", space.where.string()}});
  }

  fs::path cred_path = data_dir / "credentials";
  auto secrets = LoadSecrets(cred_path);
  if (!secrets.ok()) return Fail(secrets.status());

  auto catalog = catalog::Catalog::Open(data_dir / "catalog.db");
  if (!catalog.ok()) return Fail(catalog.status());

  auto repository = OpenRepository(opt, data_dir);
  if (!repository.ok()) return Fail(repository.status());
  std::shared_ptr<repo::Repository> shared_repo = std::move(*repository);

  SystemClock system_clock;
  if (*manual_clock) {
    log::Warn("MANUAL CLOCK: time moves only when told; for tests only",
              {{"now", FormatIso8601((*manual_clock)->Now())}, {"endpoint", "/strata/clock"}});
  }
  const Clock& clock = *manual_clock ? static_cast<const Clock&>(**manual_clock) : system_clock;
  control::Config cfg = ControlConfigOf(opt, data_dir, clock, !shared_repo->key_id().empty(), disk_guard);
  auto control = control::ControlPlane::Open(cfg, std::move(*catalog),
                                             control::NewRepoBackupStore(shared_repo, opt.repo_chunk_kib * 1024));
  if (!control.ok()) return Fail(control.status());

  api::ServerConfig scfg = ServerConfigOf(opt, host, port);
  scfg.clock = &system_clock;  // SigV4 checks a signature against the signer's real time
  scfg.manual_clock = manual_clock->get();
  scfg.secrets = [secrets = std::move(*secrets)](std::string_view akid) -> std::optional<std::string> {
    auto it = secrets.find(std::string(akid));
    if (it == secrets.end()) return std::nullopt;
    return it->second;
  };
  api::Server server(scfg, control->get());
  if (Status st = server.Bind(); !st.ok()) return Fail(st);

  std::string url = fmt::format("http://{}:{}", host.find(':') != std::string::npos ? "[" + host + "]" : host,
                                server.port());
  (void)disk_guard.MakeRoom("the endpoint file");
  if (Status st = WriteFileAtomically(data_dir / "endpoint", url + "\n"); st.Is(errors::kNoSpace)) {
    // Serving matters more on a full disk: the API is how space is freed.
    log::Error("endpoint file not written: the strata CLI needs --endpoint-url", {{"error", st.ToString()}});
  } else if (!st.ok()) {
    return Fail(st);
  }

  PrintHowToConnect(url, data_dir, cred_path, opt.region);
  log::Info("stratad ready", {{"endpoint", url}, {"data_dir", data_dir.string()}});

  std::thread signal_waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    log::Info("stopping", {{"signal", sig}});
    server.Stop();
  });

  Status served = server.Serve();
  // Serve returns after Stop (signal) or a listen error; either way wind down.
  if (!served.ok()) {
    log::Error("server stopped", {{"error", served.ToString()}});
    kill(getpid(), SIGTERM);  // release the signal waiter
  }
  signal_waiter.join();
  (*control)->Shutdown();
  disk::InstallProcessGuard(nullptr);
  log::Info("stratad stopped");
  return served.ok() ? 0 : 1;
}
