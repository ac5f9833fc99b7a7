#include "io/output_path.hpp"

#include <fcntl.h>  // AT_FDCWD, open
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>  // rename, renameat2, RENAME_NOREPLACE, RENAME_EXCHANGE
#include <cstring>
#include <system_error>

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

// ".<name>.ptq-<pid>-<n>" beside `final`: hidden, so listings of the output
// folder do not show work in progress; the name is cut so that the whole
// stays under NAME_MAX (255 bytes).
fs::path temp_sibling(const fs::path& final) {
  constexpr std::size_t kMaxName = 200;
  const std::string name = final.filename().string().substr(0, kMaxName);
  return final.parent_path() /
         ("." + name + ".ptq-" + std::to_string(::getpid()) + "-" + std::to_string(temp_counter++));
}

// Creates the temporary entry exclusively: an existing one (a leftover of a
// crashed run that had the same pid, or a planted symlink) is skipped, never
// reused or followed.
fs::path create_temp(const fs::path& final, OutputKind kind, const std::string& what) {
  constexpr int kAttempts = 100;
  for (int i = 0; i < kAttempts; ++i) {
    fs::path temp = temp_sibling(final);
    const int rc = kind == OutputKind::file
                       ? ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666)
                       : ::mkdir(temp.c_str(), 0777);
    if (rc >= 0) {
      if (kind == OutputKind::file) ::close(rc);
      return temp;
    }
    if (errno != EEXIST) {
      throw input_error(shown(what, final), "a folder where ptq can create its temporary output",
                        std::strerror(errno));
    }
  }
  throw input_error(shown(what, final), "a free temporary name beside it",
                    std::to_string(kAttempts) + " names taken");
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
    : final_(check_output_path(final_path, OutputKind::file, what)),
      temp_(create_temp(final_, OutputKind::file, what)),
      what_(what) {}

OutputFile::~OutputFile() {
  if (!committed_) ::unlink(temp_.c_str());
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
    : final_(check_output_path(final_path, OutputKind::folder, what)),
      staging_(create_temp(final_, OutputKind::folder, what)),
      what_(what) {}

OutputFolder::~OutputFolder() {
  if (committed_) return;
  std::error_code ignored;  // a destructor cannot report; at worst a hidden folder remains
  fs::remove_all(staging_, ignored);
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
}

}  // namespace ptq
