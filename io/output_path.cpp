#include "io/output_path.hpp"

#include <fcntl.h>  // AT_FDCWD, open
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>  // kill
#include <cstdio>   // rename, renameat2, RENAME_NOREPLACE, RENAME_EXCHANGE
#include <cstring>
#include <ctime>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include "io/error.hpp"
#include "io/input_file.hpp"

namespace ptq {

namespace fs = std::filesystem;

namespace {

// How a path appears in messages: "--json out.json", or just "out.json".
std::string shown(const std::string& what, const fs::path& path) {
  const std::string p = path.empty() ? "\"\"" : path.string();
  return what.empty() ? p : what + " " + p;
}

std::string expected_final(OutputKind kind) {
  return kind == OutputKind::file ? "a regular file or a new path"
                                  : "a new path or an empty folder";
}

// Names the target, so the user sees which file ptq refused to write through.
std::string symlink_name(const fs::path& link) {
  std::error_code ec;
  const fs::path target = fs::read_symlink(link, ec);
  struct stat st {};
  const bool dangling = ::stat(link.c_str(), &st) != 0;
  return std::string(dangling ? "a dangling symbolic link" : "a symbolic link") +
         (ec ? std::string() : " to " + target.string());
}

// Judges the final path itself with lstat, so a symlink there is never
// followed. Returns whether something replaceable is there (a regular file
// for files, an empty real folder for folders); throws on anything else.
bool check_final(const fs::path& path, OutputKind kind, const std::string& what) {
  const std::string where = shown(what, path);
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    throw input_error(where, expected_final(kind), std::strerror(errno));
  }
  if (S_ISLNK(st.st_mode)) throw input_error(where, expected_final(kind), symlink_name(path));
  if (kind == OutputKind::file && S_ISREG(st.st_mode)) return true;
  if (kind == OutputKind::folder && S_ISDIR(st.st_mode)) {
    std::error_code ec;
    if (fs::is_empty(path, ec)) return true;
    throw input_error(where, expected_final(kind), ec ? ec.message() : "a non-empty folder");
  }
  throw input_error(where, expected_final(kind), file_type_name(st.st_mode));
}

// The parent is followed like any path (a symlinked parent folder is fine);
// it must be a folder ptq can create entries in.
void check_parent(const fs::path& path, const std::string& what) {
  const fs::path parent = path.has_parent_path() ? path.parent_path() : fs::path(".");
  const std::string where = shown(what, path);
  struct stat st {};
  if (::stat(parent.c_str(), &st) != 0) {
    const int err = errno;
    throw input_error(
        where, "an existing parent folder",
        parent.string() +
            (err == ENOENT ? " missing" : std::string(" (") + std::strerror(err) + ")"));
  }
  if (!S_ISDIR(st.st_mode)) {
    throw input_error(where, "an existing parent folder",
                      parent.string() + " (" + file_type_name(st.st_mode) + ")");
  }
  if (::access(parent.c_str(), W_OK | X_OK) != 0) {
    throw input_error(where, "a writable parent folder",
                      parent.string() + " not writable (" + std::strerror(errno) + ")");
  }
}

// Folders lose trailing '/'s; a file path ending in '/' names a folder, and a
// last component "." or ".." cannot be renamed onto, so both are refused.
fs::path normalized(const fs::path& path, OutputKind kind, const std::string& what) {
  const std::string expected = kind == OutputKind::file ? "a file path" : "a folder path";
  std::string s = path.string();
  if (s.empty()) throw input_error(shown(what, path), expected, "an empty path");
  if (kind == OutputKind::file && s.back() == '/') {
    throw input_error(shown(what, path), expected, "a path ending in '/' (a folder)");
  }
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  fs::path result(s);
  const std::string name = result.filename().string();
  if (name.empty() || name == "." || name == "..") {
    throw input_error(shown(what, path), expected + " that ends in a name",
                      "'" + (name.empty() ? s : name) + "'");
  }
  return result;
}

std::atomic<unsigned> temp_counter{0};

// The hidden sibling names of `final` start with ".<name>.ptq-"; the name is
// cut so that the whole stays under NAME_MAX (255 bytes).
std::string temp_prefix(const fs::path& final) {
  constexpr std::size_t kMaxName = 200;
  std::string prefix(1, '.');  // appended piecewise: GCC 12's -Wrestrict misjudges "." + string
  prefix += final.filename().string().substr(0, kMaxName);
  return prefix + ".ptq-";
}

// ".<name>.ptq-<pid>-<n>" beside `final`: hidden, so listings of the output
// folder do not show work in progress.
fs::path temp_sibling(const fs::path& final) {
  return final.parent_path() /
         (temp_prefix(final) + std::to_string(::getpid()) + "-" + std::to_string(temp_counter++));
}

// The pid in "<pid>-<n>", or 0 when `suffix` is not of that form.
pid_t suffix_pid(const std::string& suffix) {
  const std::size_t dash = suffix.find('-');
  const auto digits = [](const std::string& s) {
    return !s.empty() && s.size() < 10 && s.find_first_not_of("0123456789") == std::string::npos;
  };
  if (dash == std::string::npos || !digits(suffix.substr(0, dash)) ||
      !digits(suffix.substr(dash + 1))) {
    return 0;
  }
  return static_cast<pid_t>(std::stol(suffix.substr(0, dash)));
}

// Whether the temporary entry `path` (named for `pid`) is a leftover of a
// killed run. Every writer holds an exclusive flock on its entry until it
// commits or removes it, and the kernel drops the lock when the process dies,
// however it dies. A writer locks its entry just after creating it, so an unlocked entry
// also needs a dead pid or a minute of age: a writer between the two steps (in
// this or another pid namespace) is never taken for a leftover. Only regular
// files and folders of our own user are judged; a filesystem without flock
// never yields a leftover.
bool abandoned(const fs::path& path, pid_t pid) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
    return false;
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return false;
  constexpr std::time_t kMinAge = 60;
  const bool dead = ::kill(pid, 0) != 0 && errno == ESRCH;
  const bool result = ::fstat(fd, &st) == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) &&
                      st.st_uid == ::geteuid() && ::flock(fd, LOCK_EX | LOCK_NB) == 0 &&
                      (dead || std::time(nullptr) - st.st_mtime >= kMinAge);
  ::close(fd);  // drops our lock: no writer ever locks an entry it did not create
  return result;
}

// Removes the temporary entries that killed runs left beside `final` (a
// killed quantize of a 70B model leaves a hidden folder of tens of GB). Best
// effort: what cannot be listed or removed stays, and the run goes on.
void remove_leftovers(const fs::path& final) {
  const std::string prefix = temp_prefix(final);
  const fs::path parent = final.has_parent_path() ? final.parent_path() : fs::path(".");
  std::error_code ec;
  std::vector<fs::path> leftovers;
  for (auto it = fs::directory_iterator(parent, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const pid_t pid = suffix_pid(name.substr(prefix.size()));
    if (pid > 0 && abandoned(it->path(), pid)) leftovers.push_back(it->path());
  }
  for (const fs::path& p : leftovers) fs::remove_all(p, ec);
}

// Locks a temporary entry while its writer works on it (see abandoned()):
// `fd` is the file's own descriptor, or -1 to open the folder `temp`.
int lock_temp(const fs::path& temp, int fd) {
  if (fd < 0) fd = ::open(temp.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0)
    ::flock(fd, LOCK_EX | LOCK_NB);  // without flock, the entry is never judged a leftover
  return fd;
}

// Creates the temporary entry exclusively: an existing one (a leftover of a
// crashed run that had the same pid, or a planted symlink) is skipped, never
// reused or followed. Returns it with the descriptor that holds its lock.
std::pair<fs::path, int> create_temp(const fs::path& final, OutputKind kind,
                                     const std::string& what) {
  remove_leftovers(final);
  constexpr int kAttempts = 100;
  for (int i = 0; i < kAttempts; ++i) {
    fs::path temp = temp_sibling(final);
    const int rc = kind == OutputKind::file
                       ? ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666)
                       : ::mkdir(temp.c_str(), 0777);
    if (rc >= 0) {
      const int lock = lock_temp(temp, kind == OutputKind::file ? rc : -1);
      return {std::move(temp), lock};
    }
    if (errno != EEXIST) {
      throw input_error(shown(what, final), "a folder where ptq can create its temporary output",
                        std::strerror(errno));
    }
  }
  throw input_error(shown(what, final), "a free temporary name beside it",
                    std::to_string(kAttempts) + " names taken");
}

void unlock_temp(int& lock) {
  if (lock >= 0) ::close(lock);
  lock = -1;
}

[[noreturn]] void throw_rename_error(const fs::path& final, const std::string& what, int err) {
  throw input_error(shown(what, final), "a path ptq can rename its output onto",
                    std::strerror(err));
}

// done; raced: the final path changed since the check (check again);
// unsupported: the filesystem lacks renameat2's flags (nothing was moved);
// stranded: see replace_regular.
enum class Renamed { done, raced, unsupported, stranded };

bool flags_unsupported(int err) { return err == EINVAL || err == ENOSYS; }

Renamed rename_onto_absent(const fs::path& temp, const fs::path& final, const std::string& what) {
  if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, final.c_str(), RENAME_NOREPLACE) == 0) {
    return Renamed::done;
  }
  if (errno == EEXIST) return Renamed::raced;
  if (flags_unsupported(errno)) return Renamed::unsupported;
  throw_rename_error(final, what, errno);
}

// Swaps `temp` with the regular file at `final`, then deletes what was swapped
// out. If that is no longer a regular file (it changed after the check), it is
// swapped back untouched (raced). If even the swap back fails, our file stays
// at `final` and the stranger at `temp` (stranded: temp is no longer ours).
Renamed replace_regular(const fs::path& temp, const fs::path& final, const std::string& what) {
  const auto exchange = [&] {
    return ::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, final.c_str(), RENAME_EXCHANGE) == 0;
  };
  if (!exchange()) {
    if (errno == ENOENT) return Renamed::raced;  // the old file went away
    if (flags_unsupported(errno)) return Renamed::unsupported;
    throw_rename_error(final, what, errno);
  }
  struct stat st {};
  if (::lstat(temp.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    ::unlink(temp.c_str());  // the replaced file; should this fail, a hidden leftover remains
    return Renamed::done;
  }
  return exchange() ? Renamed::raced : Renamed::stranded;
}

}  // namespace

fs::path check_output_path(const fs::path& path, OutputKind kind, const std::string& what) {
  fs::path result = normalized(path, kind, what);
  check_parent(result, what);
  check_final(result, kind, what);
  return result;
}

OutputFile::OutputFile(const fs::path& final_path, const std::string& what)
    : final_(check_output_path(final_path, OutputKind::file, what)), what_(what) {
  std::tie(temp_, lock_) = create_temp(final_, OutputKind::file, what);
}

OutputFile::~OutputFile() {
  if (!committed_) ::unlink(temp_.c_str());
  unlock_temp(lock_);
}

void OutputFile::commit() {
  PTQ_ASSERT(!committed_);
  // Each pass re-checks (and throws on a special file); a pass only loses when
  // the path changed under it, so a few passes are plenty.
  constexpr int kPasses = 3;
  for (int pass = 0; pass < kPasses; ++pass) {
    const bool replace = check_final(final_, OutputKind::file, what_);
    Renamed r =
        replace ? replace_regular(temp_, final_, what_) : rename_onto_absent(temp_, final_, what_);
    if (r == Renamed::unsupported) {
      if (::rename(temp_.c_str(), final_.c_str()) != 0) throw_rename_error(final_, what_, errno);
      r = Renamed::done;
    }
    if (r == Renamed::done) {
      committed_ = true;
      unlock_temp(lock_);  // no longer a temporary entry: readers may lock it
      return;
    }
    if (r == Renamed::stranded) {
      committed_ = true;  // temp_ now names the stranger: the destructor must not remove it
      throw input_error(
          shown(what_, final_), expected_final(OutputKind::file),
          "a special file appearing during the rename; it was moved to " + temp_.string());
    }
  }
  throw input_error(shown(what_, final_), "a path that holds still while ptq renames onto it",
                    "a path that changed on every attempt");
}

OutputFolder::OutputFolder(const fs::path& final_path, const std::string& what)
    : final_(check_output_path(final_path, OutputKind::folder, what)), what_(what) {
  std::tie(staging_, lock_) = create_temp(final_, OutputKind::folder, what);
}

OutputFolder::~OutputFolder() {
  if (!committed_) {
    std::error_code ignored;  // a destructor cannot report; at worst a hidden folder remains
    fs::remove_all(staging_, ignored);
  }
  unlock_temp(lock_);
}

void OutputFolder::commit() {
  PTQ_ASSERT(!committed_);
  check_final(final_, OutputKind::folder, what_);
  // rename(2) of a folder replaces only an absent path or an empty folder: a
  // symlink, file or non-empty folder that appeared since the check makes it
  // fail, and the second check then names what is there.
  if (::rename(staging_.c_str(), final_.c_str()) != 0) {
    const int err = errno;
    check_final(final_, OutputKind::folder, what_);
    throw_rename_error(final_, what_, err);
  }
  committed_ = true;
  unlock_temp(lock_);
}

}  // namespace ptq
