#include "engine/postgres/pg_process.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "common/log.h"

namespace strata::engine::pg {
namespace {

Status Errno(const std::string& what) {
  return Status(errors::kIoError, fmt::format("{}: {}", what, std::strerror(errno)));
}

// Looks a user up by name; nullopt when there is none.
std::optional<OsUser> FindUser(const std::string& name) {
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || !found) return std::nullopt;
  return OsUser{pw.pw_uid, pw.pw_gid, pw.pw_name, {}};
}

std::optional<gid_t> FindGroup(const std::string& name) {
  struct group gr {};
  struct group* found = nullptr;
  std::vector<char> buf(16384);
  if (getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || !found) return std::nullopt;
  return gr.gr_gid;
}

// useradd and groupadd lock /etc/passwd and refuse a second one at once:
// stratad makes its accounts one at a time.
std::mutex& AccountsMutex() {
  static std::mutex mu;
  return mu;
}

Status RunAccountTool(const std::vector<std::string>& argv, std::initializer_list<int> also_fine = {}) {
  // 1 and 10: /etc/passwd or /etc/group could not be locked or updated,
  // which another process (another stratad, an administrator) holding the
  // lock causes: tried again for a few seconds.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  ProcessOutput out;
  for (auto pause = std::chrono::milliseconds(20);; pause = std::min(pause * 2, std::chrono::milliseconds(500))) {
    ASSIGN_OR_RETURN(out, Run(argv, std::nullopt));
    bool locked = out.exit_code == 1 || out.exit_code == 10;
    if (!locked || std::chrono::steady_clock::now() + pause > deadline) break;
    std::this_thread::sleep_for(pause);
  }
  if (out.exit_code == 0) return Status::Ok();
  for (int code : also_fine) {
    if (out.exit_code == code) return Status::Ok();
  }
  std::string msg = out.output;
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return Status(errors::kInternalFailure, fmt::format("{} failed ({}): {}", argv[0], out.exit_code, msg));
}

Result<gid_t> ServerGroup() {
  if (auto gid = FindGroup(kServerGroup)) return *gid;
  // 9: the group exists (made by another process meanwhile).
  RETURN_IF_ERROR(RunAccountTool({"/usr/sbin/groupadd", "--system", kServerGroup}, {9}));
  if (auto gid = FindGroup(kServerGroup)) return *gid;
  return Status(errors::kInternalFailure, fmt::format("groupadd made no group {}", kServerGroup));
}

}  // namespace

std::string ServerUserName(const InstanceSpec& spec) {
  std::string source = !spec.resource_id.empty() ? spec.resource_id : spec.id;
  if (source.rfind("db-", 0) == 0) source = source.substr(3);
  std::string name = "strata-pg-";
  for (char c : source) {
    if (name.size() >= 32) break;
    if (std::isalnum(static_cast<unsigned char>(c))) name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return name;
}

Result<std::optional<OsUser>> ServerUser(const InstanceSpec& spec) {
  if (geteuid() != 0) {
    static std::once_flag warned;
    std::call_once(warned, [] {
      log::Warn("stratad is not root: every PostgreSQL server runs as stratad's own OS user, so instances are "
                "not isolated from each other or from stratad's files at the OS level (run stratad as root for "
                "one OS user per instance)");
    });
    return std::optional<OsUser>();
  }
  std::lock_guard lock(AccountsMutex());
  ASSIGN_OR_RETURN(gid_t group, ServerGroup());
  std::string name = ServerUserName(spec);
  auto user = FindUser(name);
  if (!user) {
    // 9: the user exists (made by another process meanwhile). No colon in
    // the comment: it is a field of /etc/passwd.
    RETURN_IF_ERROR(RunAccountTool({"/usr/sbin/useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                                    "--shell", "/usr/sbin/nologin", "--user-group", "--groups", kServerGroup,
                                    "--comment", "Strata PostgreSQL server of " + spec.id, name},
                                   {9}));
    user = FindUser(name);
    if (!user) return Status(errors::kInternalFailure, "useradd made no user " + name);
  }
  user->groups = {group};
  return user;
}

Status RemoveServerUser(const InstanceSpec& spec) {
  if (geteuid() != 0) return Status::Ok();
  std::lock_guard lock(AccountsMutex());
  std::string name = ServerUserName(spec);
  if (!FindUser(name)) return Status::Ok();
  // 6: no such user (removed meanwhile).
  return RunAccountTool({"/usr/sbin/userdel", name}, {6});
}

Result<OsUser> OwnerOf(const std::filesystem::path& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return Errno("stat " + path.string());
  OsUser owner{st.st_uid, st.st_gid, std::to_string(st.st_uid), {}};
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (getpwuid_r(st.st_uid, &pw, buf.data(), buf.size(), &found) == 0 && found) {
    owner.gid = pw.pw_gid;
    owner.name = pw.pw_name;
  }
  return owner;
}

Result<std::filesystem::path> BinDir() {
  if (const char* env = std::getenv("STRATA_POSTGRES_BIN"); env && *env) return std::filesystem::path(env);
  std::error_code ec;
  std::filesystem::path best;
  int best_major = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    int major = std::atoi(entry.path().filename().c_str());
    if (major > best_major && std::filesystem::exists(entry.path() / "bin" / "initdb", ec)) {
      best_major = major;
      best = entry.path() / "bin";
    }
  }
  if (best.empty()) {
    return Status(errors::kInternalFailure,
                  "PostgreSQL's server programs were not found under /usr/lib/postgresql (install Debian's "
                  "postgresql package, or set STRATA_POSTGRES_BIN)");
  }
  return best;
}

Result<std::filesystem::path> GuardModule() {
  if (const char* env = std::getenv("STRATA_PG_GUARD"); env && *env) return std::filesystem::path(env);
  std::error_code ec;
  auto exe_dir = std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  for (const auto& candidate : {exe_dir / "strata_pg_guard.so", exe_dir / ".." / "lib" / "strata" / "strata_pg_guard.so"}) {
    if (!ec && std::filesystem::exists(candidate, ec)) return candidate;
  }
  return Status(errors::kInternalFailure,
                fmt::format("strata_pg_guard.so, the server module that keeps a master user from the server's "
                            "programs and files, is not beside stratad in {} (build the strata_pg_guard target, or "
                            "set STRATA_PG_GUARD)",
                            exe_dir.string()));
}

Result<ProcessOutput> Run(const std::vector<std::string>& argv, const std::optional<OsUser>& user) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return Errno("pipe");
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) return Errno("open /dev/null");
  std::vector<gid_t> groups;
  if (user) {
    groups.push_back(user->gid);
    groups.insert(groups.end(), user->groups.begin(), user->groups.end());
  }
  // Everything the child needs is prepared before fork: between fork and
  // exec only async-signal-safe calls are allowed in a threaded program.
  pid_t pid = fork();
  if (pid < 0) {
    close(pipefd[0]);
    close(pipefd[1]);
    close(devnull);
    return Errno("fork");
  }
  if (pid == 0) {
    dup2(devnull, 0);
    dup2(pipefd[1], 1);
    dup2(pipefd[1], 2);
    if (user && (setgroups(groups.size(), groups.data()) != 0 || setgid(user->gid) != 0 ||
                 setuid(user->uid) != 0)) {
      _exit(126);
    }
    if (chdir("/") != 0) _exit(126);
    // Servers started from here must not hold stratad's sockets or files.
    close_range(3, ~0U, 0);
    execv(args[0], args.data());
    _exit(127);
  }
  close(pipefd[1]);
  close(devnull);
  ProcessOutput out;
  char buf[4096];
  for (;;) {
    ssize_t n = read(pipefd[0], buf, sizeof buf);
    if (n > 0) {
      out.output.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(pipefd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Errno("waitpid");
  }
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (out.exit_code == 127) out.output += fmt::format("\ncould not run {}", argv[0]);
  if (out.exit_code == 126) out.output += fmt::format("\ncould not switch to user {}", user ? user->name : "");
  return out;
}

Status Chown(const std::filesystem::path& path, const std::optional<OsUser>& user, bool recursive) {
  if (!user) return Status::Ok();
  if (lchown(path.c_str(), user->uid, user->gid) != 0) return Errno("chown " + path.string());
  if (!recursive) return Status::Ok();
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(path, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (lchown(it->path().c_str(), user->uid, user->gid) != 0) return Errno("chown " + it->path().string());
  }
  if (ec) return Status(errors::kIoError, fmt::format("chown {}: {}", path.string(), ec.message()));
  return Status::Ok();
}

Status MakeReachable(const std::filesystem::path& path, const std::optional<OsUser>& user) {
  if (!user) return Status::Ok();
  std::optional<gid_t> group;
  if (!user->groups.empty()) group = user->groups.front();
  std::filesystem::path abs = std::filesystem::absolute(path).parent_path();
  for (std::filesystem::path p = abs; !p.empty() && p != p.root_path(); p = p.parent_path()) {
    struct stat st {};
    if (stat(p.c_str(), &st) != 0) return Errno("stat " + p.string());
    mode_t mode = st.st_mode & 07777;
    bool passes = (mode & S_IXOTH) || (st.st_uid == user->uid && (mode & S_IXUSR)) ||
                  (group && st.st_gid == *group && (mode & S_IXGRP));
    if (passes) continue;
    if (group && st.st_uid == geteuid() && (mode & S_IRWXG) == 0) {
      // Ours and private (the data dir): only the servers' group may pass.
      if (chown(p.c_str(), static_cast<uid_t>(-1), *group) != 0) return Errno("chgrp " + p.string());
      if (chmod(p.c_str(), mode | S_IXGRP) != 0) return Errno("chmod " + p.string());
    } else if (chmod(p.c_str(), mode | S_IXOTH) != 0) {
      return Errno("chmod " + p.string());
    }
  }
  return Status::Ok();
}

}  // namespace strata::engine::pg
