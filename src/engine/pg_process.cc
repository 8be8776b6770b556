#include "engine/pg_process.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace strata::engine::pg {
namespace {

Status Errno(const std::string& what) {
  return Status(errors::kIoError, fmt::format("{}: {}", what, std::strerror(errno)));
}

}  // namespace

Result<std::optional<OsUser>> ServerUser() {
  if (geteuid() != 0) return std::optional<OsUser>();
  const char* name = std::getenv("STRATA_POSTGRES_USER");
  if (!name || !*name) name = "postgres";
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (getpwnam_r(name, &pw, buf.data(), buf.size(), &found) != 0 || !found) {
    return Status(errors::kInternalFailure,
                  fmt::format("stratad runs as root and PostgreSQL refuses to: it runs its servers as the OS "
                              "user '{}', which does not exist (install Debian's postgresql package, or set "
                              "STRATA_POSTGRES_USER)",
                              name));
  }
  return std::optional<OsUser>(OsUser{pw.pw_uid, pw.pw_gid, pw.pw_name});
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

Result<ProcessOutput> Run(const std::vector<std::string>& argv, const std::optional<OsUser>& user) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return Errno("pipe");
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) return Errno("open /dev/null");
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
    if (user) {
      gid_t gid = user->gid;
      if (setgroups(1, &gid) != 0 || setgid(user->gid) != 0 || setuid(user->uid) != 0) _exit(126);
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
  std::filesystem::path abs = std::filesystem::absolute(path).parent_path();
  for (std::filesystem::path p = abs; !p.empty() && p != p.root_path(); p = p.parent_path()) {
    struct stat st {};
    if (stat(p.c_str(), &st) != 0) return Errno("stat " + p.string());
    if ((st.st_mode & S_IXOTH) == 0 && chmod(p.c_str(), (st.st_mode & 07777) | S_IXOTH) != 0) {
      return Errno("chmod " + p.string());
    }
  }
  return Status::Ok();
}

}  // namespace strata::engine::pg
