// strata: the operator CLI. The aws CLI is the API client; this is for people
// at a terminal: server status, an SQL shell into an instance, file paths; and
// for tests, the manual clock.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "cmd/client.h"
#include "cmd/clock_command.h"
#include "cmd/repo_key.h"
#include "repo/repo.h"
#include "storage/storage.h"

#include <chrono>
#include <thread>

using namespace strata;
using nlohmann::json;

namespace {

const char* EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : fallback;
}

int Die(const Status& st) {
  std::fprintf(stderr, "strata: %s\n", st.message().c_str());
  return 1;
}

Result<std::string> InstanceArn(cli::Client& c, const std::string& id) {
  ASSIGN_OR_RETURN(auto doc, c.Rds("DescribeDBInstances", {{"DBInstanceIdentifier", id}}));
  auto inst = doc.select_node("//DBInstance").node();
  return std::string(inst.child_value("DBInstanceArn"));
}

std::string FieldText(const json& f) {
  if (f.contains("isNull")) return "NULL";
  if (f.contains("stringValue")) return f["stringValue"].get<std::string>();
  if (f.contains("longValue")) return std::to_string(f["longValue"].get<int64_t>());
  if (f.contains("doubleValue")) return fmt::format("{}", f["doubleValue"].get<double>());
  if (f.contains("booleanValue")) return f["booleanValue"].get<bool>() ? "true" : "false";
  if (f.contains("blobValue")) return "\\x(base64)" + f["blobValue"].get<std::string>();
  return f.dump();
}

void PrintTable(const json& result) {
  if (!result.contains("columnMetadata")) {
    std::printf("%lld row(s) affected\n", result.value("numberOfRecordsUpdated", 0LL));
    return;
  }
  std::vector<std::string> header;
  for (const auto& c : result["columnMetadata"]) header.push_back(c.value("name", ""));
  std::vector<std::vector<std::string>> rows;
  for (const auto& r : result.value("records", json::array())) {
    std::vector<std::string> row;
    for (const auto& f : r) row.push_back(FieldText(f));
    rows.push_back(std::move(row));
  }
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); ++i) {
    width[i] = header[i].size();
    for (const auto& r : rows) width[i] = std::max(width[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string out;
    for (size_t i = 0; i < cells.size(); ++i) {
      if (i) out += " | ";
      out += fmt::format("{:<{}}", cells[i], width[i]);
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    std::printf("%s\n", out.c_str());
  };
  line(header);
  std::string rule;
  for (size_t i = 0; i < header.size(); ++i) rule += (i ? "-+-" : "") + std::string(width[i], '-');
  std::printf("%s\n", rule.c_str());
  for (const auto& r : rows) line(r);
  std::printf("(%zu row%s)\n", rows.size(), rows.size() == 1 ? "" : "s");
}

// Runs one statement; BEGIN/COMMIT/ROLLBACK map to Data API transactions so a
// shell session behaves like a connection.
Status RunSql(cli::Client& c, const std::string& arn, std::string sql, std::string& tx) {
  while (!sql.empty() && (std::isspace(static_cast<unsigned char>(sql.back())) || sql.back() == ';'))
    sql.pop_back();
  std::string word;
  for (char ch : sql.substr(0, 12)) word.push_back(static_cast<char>(std::toupper(ch)));
  json base = {{"resourceArn", arn}, {"secretArn", "arn:aws:secretsmanager:strata:local"}};
  if (word.rfind("BEGIN", 0) == 0) {
    ASSIGN_OR_RETURN(auto r, c.Data("/BeginTransaction", base));
    tx = r.value("transactionId", "");
    std::printf("BEGIN\n");
    return Status::Ok();
  }
  if (!tx.empty() && (word.rfind("COMMIT", 0) == 0 || word.rfind("END", 0) == 0 ||
                      word.rfind("ROLLBACK", 0) == 0)) {
    bool commit = word.rfind("ROLLBACK", 0) != 0;
    base["transactionId"] = tx;
    tx.clear();
    RETURN_IF_ERROR(c.Data(commit ? "/CommitTransaction" : "/RollbackTransaction", base).status());
    std::printf("%s\n", commit ? "COMMIT" : "ROLLBACK");
    return Status::Ok();
  }
  json req = base;
  req["sql"] = sql;
  req["includeResultMetadata"] = true;
  if (!tx.empty()) req["transactionId"] = tx;
  ASSIGN_OR_RETURN(auto r, c.Data("/Execute", req));
  PrintTable(r);
  return Status::Ok();
}

int SqlShell(cli::Client& c, const std::string& id, const std::string& command) {
  auto arn = InstanceArn(c, id);
  if (!arn.ok()) return Die(arn.status());
  std::string tx;
  if (!command.empty()) {
    Status st = RunSql(c, *arn, command, tx);
    if (!st.ok()) return Die(st);
    return 0;
  }
  bool tty = isatty(STDIN_FILENO);
  int failures = 0;
  std::string buffer, line;
  while (true) {
    if (tty) std::printf("%s", buffer.empty() ? (id + "=> ").c_str() : (id + "-> ").c_str());
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    buffer += line + "\n";
    size_t end = line.find_last_not_of(" \t\r");
    if (end == std::string::npos || line[end] != ';') continue;
    Status st = RunSql(c, *arn, buffer, tx);
    buffer.clear();
    if (!st.ok()) {
      std::fprintf(stderr, "ERROR: %s\n", st.message().c_str());
      ++failures;
    }
  }
  if (buffer.find_first_not_of(" \t\r\n") != std::string::npos) {
    Status st = RunSql(c, *arn, buffer, tx);
    if (!st.ok()) {
      std::fprintf(stderr, "ERROR: %s\n", st.message().c_str());
      ++failures;
    }
  }
  return failures ? 1 : 0;
}

int Status_(cli::Client& c) {
  auto health = c.Health();
  if (!health.ok()) return Die(health.status());
  std::printf("server     %s (%s)\n", c.endpoint().c_str(),
              health->status == 200 ? "healthy" : "unhealthy");
  auto doc = c.Rds("DescribeDBInstances", {});
  if (!doc.ok()) return Die(doc.status());
  auto nodes = doc->select_nodes("//DBInstances/DBInstance");
  std::printf("instances  %zu\n", nodes.size());
  for (const auto& n : nodes) {
    auto i = n.node();
    std::printf("  %-24s %-8s %-12s %s\n", i.child_value("DBInstanceIdentifier"),
                i.child_value("Engine"), i.child_value("DBInstanceStatus"),
                i.child("Endpoint").child_value("Address"));
  }
  return 0;
}

int InstancePath(cli::Client& c, const std::string& id) {
  auto doc = c.Rds("DescribeDBInstances", {{"DBInstanceIdentifier", id}});
  if (!doc.ok()) return Die(doc.status());
  auto inst = doc->select_node("//DBInstance").node();
  std::printf("%s\n", inst.child("Endpoint").child_value("Address"));
  return 0;
}

// Progress: a bar on a terminal, a plain line per change otherwise.
void ShowProgress(const std::string& label, int percent, const std::string& status, bool tty) {
  static std::string last;
  std::string line = fmt::format("{} {} {}%", label, status, percent);
  if (line == last) return;
  last = line;
  if (tty) {
    int filled = percent * 30 / 100;
    std::fprintf(stderr, "\r%-24s [%s%s] %3d%% %-10s", label.c_str(), std::string(filled, '#').c_str(),
                 std::string(30 - filled, '.').c_str(), percent, status.c_str());
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

// Polls until the snapshot leaves `creating`; 0 if it became available.
int WaitSnapshot(cli::Client& c, const std::string& id) {
  bool tty = isatty(STDERR_FILENO);
  for (;;) {
    auto doc = c.Rds("DescribeDBSnapshots", {{"DBSnapshotIdentifier", id}});
    if (!doc.ok()) return Die(doc.status());
    auto s = doc->select_node("//DBSnapshot").node();
    std::string status = s.child_value("Status");
    ShowProgress(id, std::atoi(s.child_value("PercentProgress")), status, tty);
    if (status != "creating") {
      if (tty) std::fprintf(stderr, "\n");
      return status == "available" ? 0 : 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));  // a person watching, not a test
  }
}

int WaitInstance(cli::Client& c, const std::string& id) {
  bool tty = isatty(STDERR_FILENO);
  for (;;) {
    auto doc = c.Rds("DescribeDBInstances", {{"DBInstanceIdentifier", id}});
    if (!doc.ok()) return Die(doc.status());
    std::string status = doc->select_node("//DBInstance").node().child_value("DBInstanceStatus");
    ShowProgress(id, status == "available" ? 100 : 0, status, tty);
    if (status != "creating") {
      if (tty) std::fprintf(stderr, "\n");
      return status == "available" ? 0 : 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

int SnapshotCreate(cli::Client& c, const std::string& instance, const std::string& id, bool wait) {
  auto doc = c.Rds("CreateDBSnapshot", {{"DBInstanceIdentifier", instance}, {"DBSnapshotIdentifier", id}});
  if (!doc.ok()) return Die(doc.status());
  std::printf("%s\n", id.c_str());
  return wait ? WaitSnapshot(c, id) : 0;
}

int SnapshotList(cli::Client& c, const std::string& instance) {
  std::map<std::string, std::string> params;
  if (!instance.empty()) params["DBInstanceIdentifier"] = instance;
  std::printf("%-40s %-20s %-10s %-10s %5s %s\n", "SNAPSHOT", "INSTANCE", "TYPE", "STATUS", "PCT", "CREATED");
  for (std::string marker;;) {
    if (!marker.empty()) params["Marker"] = marker;
    auto doc = c.Rds("DescribeDBSnapshots", params);
    if (!doc.ok()) return Die(doc.status());
    for (const auto& n : doc->select_nodes("//DBSnapshots/DBSnapshot")) {
      auto s = n.node();
      std::printf("%-40s %-20s %-10s %-10s %4s%% %s\n", s.child_value("DBSnapshotIdentifier"),
                  s.child_value("DBInstanceIdentifier"), s.child_value("SnapshotType"), s.child_value("Status"),
                  s.child_value("PercentProgress"), s.child_value("SnapshotCreateTime"));
    }
    marker = doc->select_node("//Marker").node().child_value();
    if (marker.empty()) return 0;
  }
}

int SnapshotRestore(cli::Client& c, const std::string& snapshot, const std::string& instance, bool wait) {
  auto doc = c.Rds("RestoreDBInstanceFromDBSnapshot",
                   {{"DBSnapshotIdentifier", snapshot}, {"DBInstanceIdentifier", instance}});
  if (!doc.ok()) return Die(doc.status());
  std::printf("%s\n", instance.c_str());
  return wait ? WaitInstance(c, instance) : 0;
}

struct RepoKeyFlags {
  std::string key_file;  // empty: the one stratad recorded, if any
  std::string key_id;
};

// The repository DATA/repository names, opened directly (read-only use),
// with the key given or the one stratad recorded in DATA/repository-key.
Result<std::unique_ptr<repo::Repository>> OpenRepository(const std::string& data_dir, const RepoKeyFlags& key) {
  repo::RepoOptions options;
  ASSIGN_OR_RETURN(options.keyring, cli::RepoKeyring(data_dir, key.key_file, key.key_id));
  ASSIGN_OR_RETURN(auto store, storage::OpenRepoOfDataDir(std::filesystem::path(data_dir)));
  return repo::Repository::Open(std::move(store), options);
}

std::string Mib(uint64_t bytes) { return fmt::format("{:.1f} MiB", bytes / 1048576.0); }

int RepoStats(const std::string& data_dir, const RepoKeyFlags& key) {
  auto repository = OpenRepository(data_dir, key);
  if (!repository.ok()) return Die(repository.status());
  auto totals = (*repository)->Stats();
  if (!totals.ok()) return Die(totals.status());
  auto sizes = (*repository)->SnapshotSizes();
  if (!sizes.ok()) return Die(sizes.status());
  uint64_t logical = 0;
  for (const auto& s : *sizes) logical += s.logical_bytes;
  std::printf("%llu snapshots (%s logical) in %llu packs: %s stored; %llu change-log segments: %s\n",
              static_cast<unsigned long long>(totals->snapshots), Mib(logical).c_str(),
              static_cast<unsigned long long>(totals->packs), Mib(totals->stored_bytes).c_str(),
              static_cast<unsigned long long>(totals->log_segments), Mib(totals->log_bytes).c_str());
  std::printf("%-38s %14s %14s %14s\n", "repository snapshot", "logical", "referenced", "unique");
  for (const auto& s : *sizes) {
    std::printf("%-38s %14s %14s %14s\n", s.id.c_str(), Mib(s.logical_bytes).c_str(),
                Mib(s.referenced_bytes).c_str(), Mib(s.unique_bytes).c_str());
  }
  return 0;
}

int RepoVerify(const std::string& data_dir, bool quick, const RepoKeyFlags& key) {
  auto repository = OpenRepository(data_dir, key);
  if (!repository.ok()) return Die(repository.status());
  auto report = (*repository)->Verify(quick);
  if (!report.ok()) return Die(report.status());
  std::printf("%s verify: %llu snapshots, %llu chunks re-hashed, %zu problems\n", quick ? "quick" : "full",
              static_cast<unsigned long long>(report->snapshots),
              static_cast<unsigned long long>(report->chunks_checked), report->problems.size());
  for (const auto& p : report->problems) {
    std::string snaps;
    for (const auto& s : p.snapshots) snaps += (snaps.empty() ? "" : ", ") + s;
    std::printf("  %s %s%s%s\n", p.what.c_str(), p.object.c_str(), snaps.empty() ? "" : " affects: ",
                snaps.c_str());
  }
  return report->ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"strata: operate a Strata server (status, SQL shell, instance files)"};
  cli::ClientConfig cfg;
  cfg.data_dir = EnvOr("STRATA_DATA_DIR", "./strata-data");
  cfg.endpoint_url = EnvOr("STRATA_ENDPOINT", "");
  app.add_option("--data-dir", cfg.data_dir, "stratad's data directory (env STRATA_DATA_DIR)")
      ->capture_default_str();
  app.add_option("--endpoint-url", cfg.endpoint_url, "Server URL (env STRATA_ENDPOINT); default: DATA/endpoint");
  app.add_option("--region", cfg.region, "Region to sign for");
  app.require_subcommand(1);

  auto* status = app.add_subcommand("status", "Show the server and its instances");
  std::string sql_id, sql_command;
  auto* sql = app.add_subcommand("sql", "SQL shell into an instance (reads statements from stdin)");
  sql->add_option("instance", sql_id, "DB instance identifier")->required();
  sql->add_option("-c,--command", sql_command, "Run one statement and exit (non-zero on error)");
  auto* instance = app.add_subcommand("instance", "Instance helpers");
  instance->require_subcommand(1);
  std::string path_id;
  auto* path = instance->add_subcommand("path", "Print the absolute path of a sqlite instance's database file");
  path->add_option("instance", path_id, "DB instance identifier")->required();

  auto* snapshot = app.add_subcommand("snapshot", "Manual DB snapshots");
  snapshot->require_subcommand(1);
  std::string snap_instance, snap_id;
  bool snap_wait = false;
  auto* snap_create = snapshot->add_subcommand("create", "Take a snapshot of an instance");
  snap_create->add_option("instance", snap_instance, "DB instance identifier")->required();
  snap_create->add_option("snapshot", snap_id, "DB snapshot identifier")->required();
  snap_create->add_flag("--wait", snap_wait, "Wait until it is available, showing progress");
  auto* snap_list = snapshot->add_subcommand("list", "List snapshots");
  snap_list->add_option("instance", snap_instance, "Only this instance's");
  auto* snap_restore = snapshot->add_subcommand("restore", "Restore a snapshot into a new instance");
  snap_restore->add_option("snapshot", snap_id, "DB snapshot identifier")->required();
  snap_restore->add_option("instance", snap_instance, "The new DB instance identifier")->required();
  snap_restore->add_flag("--wait", snap_wait, "Wait until the instance is available");
  auto* repo_cmd = app.add_subcommand("repo", "The backup repository");
  repo_cmd->require_subcommand(1);
  RepoKeyFlags repo_key;
  auto add_key_flags = [&repo_key](CLI::App* cmd) {
    auto* file = cmd->add_option(
        "--repo-key-file", repo_key.key_file,
        "Key file of an encrypted repository (default: the one stratad recorded in DATA/repository-key)");
    cmd->add_option("--repo-key-id", repo_key.key_id, "The key's id (default: derived from the key)")->needs(file);
  };
  bool quick = false;
  auto* verify = repo_cmd->add_subcommand("verify", "Check every snapshot's data; exit 1 on any problem");
  verify->add_flag("--quick", quick, "Only check that every chunk exists (no re-reading)");
  add_key_flags(verify);
  auto* stats = repo_cmd->add_subcommand(
      "stats", "Repository totals and each snapshot's logical, referenced and unique stored bytes");
  add_key_flags(stats);

  auto* clock = app.add_subcommand("clock", "The manual clock of a stratad started with --clock manual (tests only)");
  clock->require_subcommand(1);
  cli::ClockArgs clock_args;
  auto* clock_get = clock->add_subcommand("get", "Print the server's time");
  auto* clock_set = clock->add_subcommand("set", "Move the clock forward to a time; runs a scheduler pass");
  clock_set->add_option("time", clock_args.time, "ISO 8601 UTC, e.g. 2026-11-23T03:10:00Z")->required();
  auto* clock_advance = clock->add_subcommand("advance", "Move the clock forward; runs a scheduler pass");
  clock_advance->add_option("duration", clock_args.duration, "How far: 90s, 15m, 6h, 1d, 40d")->required();
  clock_advance->add_option("--step", clock_args.step,
                            "Move this far at a time (e.g. 1d), a scheduler pass each, waiting between steps for "
                            "the automated snapshots each started");

  CLI11_PARSE(app, argc, argv);

  if (*verify) return RepoVerify(cfg.data_dir, quick, repo_key);
  if (*stats) return RepoStats(cfg.data_dir, repo_key);
  auto client = cli::Client::Create(cfg);
  if (!client.ok()) return Die(client.status());
  if (*status) return Status_(*client);
  if (*sql) return SqlShell(*client, sql_id, sql_command);
  if (*path) return InstancePath(*client, path_id);
  if (*snap_create) return SnapshotCreate(*client, snap_instance, snap_id, snap_wait);
  if (*snap_list) return SnapshotList(*client, snap_instance);
  if (*snap_restore) return SnapshotRestore(*client, snap_id, snap_instance, snap_wait);
  if (*clock) {
    clock_args.op = *clock_set ? cli::ClockArgs::kSet : *clock_advance ? cli::ClockArgs::kAdvance : cli::ClockArgs::kGet;
    (void)clock_get;  // the default op
    return cli::ClockCommand(*client, clock_args);
  }
  return 2;
}
