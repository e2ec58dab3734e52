#include "support/test_support.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>

extern char** environ;

namespace crmstream::testing {

namespace fs = std::filesystem;

std::optional<fs::path> DataDir() {
  if (const char* env = std::getenv("CRMSTREAM_DATA_DIR"); env && *env) {
    if (fs::is_directory(env)) return fs::path(env);
    return std::nullopt;
  }
  fs::path def = CRMSTREAM_DEFAULT_DATA_DIR;
  if (fs::is_directory(def)) return fs::canonical(def);
  return std::nullopt;
}

std::string DataDirError() {
  const char* env = std::getenv("CRMSTREAM_DATA_DIR");
  if (env == nullptr || *env == '\0' || fs::is_directory(env)) return "";
  return std::string("CRMSTREAM_DATA_DIR=") + env + " is not a directory";
}

fs::path SourceDir() { return CRMSTREAM_SOURCE_DIR_STR; }

ScratchDir::ScratchDir() {
  static std::atomic<int> counter{0};
  std::random_device rd;
  path_ = fs::temp_directory_path() / ("crmstream-test-" + std::to_string(::getpid()) + "-" +
                                       std::to_string(counter++) + "-" + std::to_string(rd()));
  fs::create_directories(path_);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string ReadWholeFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Child::Child(const std::vector<std::string>& argv, const std::vector<std::string>& env,
             const fs::path& log) {
  // The environment: ours, with `env` replacing variables of the same name.
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    vars[entry.substr(0, entry.find('='))] = entry;
  }
  for (const std::string& entry : env) vars[entry.substr(0, entry.find('='))] = entry;
  std::vector<char*> envp;
  for (auto& [name, entry] : vars) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argp;
  for (std::string& a : args) argp.push_back(a.data());
  argp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argp[0], &actions, nullptr, argp.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc == 0) pid_ = pid;
}

Child::~Child() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
}

void Child::Signal(int signal) const {
  if (pid_ > 0 && !reaped_) kill(pid_, signal);
}

ChildExit Child::Wait(std::chrono::seconds timeout) {
  ChildExit result;
  if (pid_ <= 0 || reaped_) return result;
  result.started = true;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  struct rusage usage {};
  while (true) {
    // wait4: the child's own resource use (its peak resident set), not that
    // of every child this process reaped so far.
    const pid_t done = wait4(pid_, &status, WNOHANG, &usage);
    if (done == pid_) break;
    if (done < 0) return result;
    if (std::chrono::steady_clock::now() >= deadline) {
      result.timed_out = true;
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      reaped_ = true;
      return result;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  reaped_ = true;
  result.peak_resident_kb = usage.ru_maxrss;
  if (WIFEXITED(status)) result.exit_status = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

ChildExit RunChild(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                   const fs::path& log, std::chrono::seconds timeout) {
  Child child(argv, env, log);
  return child.Wait(timeout);
}

namespace {

// Test cases that skipped (by name: a test case with sections runs again
// for each of them).
std::set<std::string>& Skipped() {
  static std::set<std::string> skipped;
  return skipped;
}

constexpr const char* kNamespaceRerunVariable = "CRMSTREAM_TEST_IN_USER_NAMESPACE";

// Catch2's test-spec syntax gives meaning to commas, brackets, quotes and
// more: escape everything but letters and digits (as catch_discover_tests).
std::string EscapeTestName(const std::string& name) {
  std::string out;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

void MarkSkipped() { Skipped().insert(Catch::getResultCapture().getCurrentTestName()); }

int SkippedTestCases() { return static_cast<int>(Skipped().size()); }

bool Required(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && std::string_view(v) == "1";
}

bool InUserNamespaceRerun() { return Required(kNamespaceRerunVariable); }

NamespaceRun RerunInUserNamespace(std::string* log) {
  if (InUserNamespaceRerun()) return NamespaceRun::kUnavailable;
  ScratchDir dir;
  const fs::path out = dir.path() / "child.log";
  // First whether this machine allows it at all (a container's seccomp
  // profile or a sysctl may not).
  const std::vector<std::string> probe{"/usr/bin/unshare", "--user", "--map-root-user", "--mount",
                                       "/bin/true"};
  if (!RunChild(probe, {}, out, std::chrono::seconds(30)).exited(0)) {
    *log = ReadWholeFile(out);
    return NamespaceRun::kUnavailable;
  }
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const std::string name = Catch::getResultCapture().getCurrentTestName();
  const std::vector<std::string> argv{"/usr/bin/unshare", "--user", "--map-root-user",
                                      "--mount",          self,     EscapeTestName(name),
                                      "--warn",           "NoTests"};
  const ChildExit child =
      RunChild(argv, {std::string(kNamespaceRerunVariable) + "=1"}, out, std::chrono::seconds(300));
  *log = ReadWholeFile(out);
  if (child.exited(0)) return NamespaceRun::kPassed;
  if (child.exited(kSkipExitStatus)) return NamespaceRun::kSkipped;
  return NamespaceRun::kFailed;
}

}  // namespace crmstream::testing
