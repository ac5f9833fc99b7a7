// Hostile output paths: symlinks, FIFOs, sockets, devices, odd spellings and
// paths that change between the check and the rename. Nothing here may touch
// anything outside test::temp_dir() except reading /dev/null's type.
#include "io/output_path.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <ctime>
#include <functional>
#include <stdexcept>

#include "io/hdf5.hpp"
#include "io/ids_file.hpp"
#include "io/safetensors.hpp"
#include "io/text_file.hpp"
#include "io_test_util.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;

constexpr char kFileExpected[] = "expected a regular file or a new path";
constexpr char kFolderExpected[] = "expected a new path or an empty folder";

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

void make_fifo(const fs::path& p) { ASSERT_EQ(::mkfifo(p.c_str(), 0600), 0) << p; }

void make_socket(const fs::path& p) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(p.string().size(), sizeof addr.sun_path) << p;
  std::strcpy(addr.sun_path, p.c_str());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0) << p;
  ::close(fd);  // the socket file stays
}

void expect_dev_null_intact() {
  struct stat st {};
  ASSERT_EQ(::lstat("/dev/null", &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode)) << "/dev/null is no longer a character device";
  for (const auto& e : fs::directory_iterator("/dev")) {
    EXPECT_NE(e.path().filename().string().rfind(".null.ptq-", 0), 0u) << e.path();
  }
}

// Every io/ writer, so each refusal is checked for all of them.
const std::vector<std::pair<std::string, std::function<void(const fs::path&)>>>& writers() {
  static const std::vector<std::byte> bytes(4);
  static const std::vector<std::pair<std::string, std::function<void(const fs::path&)>>> all = {
      {"write_text_atomic", [](const fs::path& p) { write_text_atomic(p, "new"); }},
      {"write_ids",
       [](const fs::path& p) {
         write_ids(p, std::vector<std::int32_t>{1, 2});
       }},
      {"write_safetensors",
       [](const fs::path& p) {
         const std::vector<TensorToWrite> one{{"x", DType::F32, {1}, bytes}};
         write_safetensors(p, one);
       }},
      {"H5Writer",
       [](const fs::path& p) {
         H5Writer w(p);
         w.set_attribute("/", "x", std::int64_t{1});
         w.commit();
       }},
  };
  return all;
}

// The path is refused, with `found`, by the check, by OutputFile and by every writer.
void expect_file_refused(const fs::path& path, const std::string& found) {
  test::expect_input_error([&] { check_output_path(path, OutputKind::file, "--json"); },
                           {"--json " + path.string() + ": " + kFileExpected, found});
  test::expect_input_error([&] { OutputFile f(path, "--json"); },
                           {"--json " + path.string(), kFileExpected, found});
  for (const auto& [name, write] : writers()) {
    SCOPED_TRACE(name);
    test::expect_input_error([&] { write(path); }, {path.string(), kFileExpected, found});
  }
}

void expect_folder_refused(const fs::path& path, const std::string& found) {
  test::expect_input_error([&] { check_output_path(path, OutputKind::folder, "--out"); },
                           {"--out " + path.string() + ": " + kFolderExpected, found});
  test::expect_input_error([&] { OutputFolder f(path, "--out"); },
                           {"--out " + path.string(), kFolderExpected, found});
}

// ------------------------------------------------------------------ files

TEST(OutputFileHostile, SymlinkToFileIsRefusedAndTargetKept) {
  const auto dir = test::temp_dir("o");
  test::write_text(dir / "target.txt", "keep");
  fs::create_symlink("target.txt", dir / "out.json");
  expect_file_refused(dir / "out.json", "found a symbolic link to target.txt");
  EXPECT_TRUE(fs::is_symlink(dir / "out.json"));
  EXPECT_EQ(test::read_bytes(dir / "target.txt"), "keep");
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"out.json", "target.txt"}));
}

TEST(OutputFileHostile, SymlinkToFolderIsRefused) {
  const auto dir = test::temp_dir("o");
  fs::create_directory(dir / "real");
  fs::create_symlink(dir / "real", dir / "out.json");
  expect_file_refused(dir / "out.json", "found a symbolic link to " + (dir / "real").string());
  EXPECT_TRUE(fs::is_symlink(dir / "out.json"));
  EXPECT_TRUE(fs::is_empty(dir / "real"));
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"out.json", "real"}));
}

TEST(OutputFileHostile, DanglingSymlinkIsRefusedAndNotCreated) {
  const auto dir = test::temp_dir("o");
  fs::create_symlink("nowhere", dir / "out.json");
  expect_file_refused(dir / "out.json", "found a dangling symbolic link to nowhere");
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"out.json"}));  // no "nowhere"
}

TEST(OutputFileHostile, FifoIsRefusedWithoutOpeningIt) {
  const auto dir = test::temp_dir("o");
  make_fifo(dir / "pipe");
  expect_file_refused(dir / "pipe", "found a FIFO (named pipe)");  // opening it would block
  EXPECT_TRUE(fs::is_fifo(fs::symlink_status(dir / "pipe")));
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"pipe"}));
}

TEST(OutputFileHostile, SocketIsRefused) {
  const auto dir = test::temp_dir("o");
  make_socket(dir / "sock");
  expect_file_refused(dir / "sock", "found a socket");
  EXPECT_TRUE(fs::is_socket(fs::symlink_status(dir / "sock")));
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"sock"}));
}

TEST(OutputFileHostile, DevNullIsRefusedAndStaysADevice) {
  try {
    check_output_path("/dev/null", OutputKind::file, "--json");
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_STREQ(e.what(),
                 "--json /dev/null: expected a regular file or a new path, found a character "
                 "device");
  }
  expect_file_refused("/dev/null", "found a character device");
  expect_dev_null_intact();
}

TEST(OutputFileHostile, EmptyPathIsRefused) {
  test::expect_input_error([] { check_output_path("", OutputKind::file, "--json"); },
                           {"--json \"\": expected a file path, found an empty path"});
  test::expect_input_error([] { write_text_atomic("", "x"); },
                           {"\"\": expected a file path, found an empty path"});
}

TEST(OutputFileHostile, TrailingSlashAndDotNamesAreRefused) {
  const auto dir = test::temp_dir("o");
  const std::string slashed = (dir / "out.json").string() + "/";
  const std::string message = slashed + ": expected a file path, found a path ending in '/'";
  test::expect_input_error([&] { check_output_path(slashed, OutputKind::file, "--json"); },
                           {"--json " + message});
  for (const auto& [name, write] : writers()) {
    SCOPED_TRACE(name);
    test::expect_input_error([&] { write(slashed); }, {message});
  }
  test::expect_input_error([&] { check_output_path(dir / "..", OutputKind::file, "--json"); },
                           {(dir / "..").string(), "that ends in a name", "found '..'"});
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST(OutputFileHostile, MissingParentIsRefused) {
  const auto dir = test::temp_dir("o");
  const auto path = dir / "missing" / "out.json";
  test::expect_input_error(
      [&] { OutputFile f(path, "--json"); },
      {"--json " + path.string() + ": expected an existing parent folder, found " +
       (dir / "missing").string() + " missing"});
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST(OutputFileHostile, ParentThatIsAFileIsRefused) {
  const auto dir = test::temp_dir("o");
  test::write_text(dir / "f", "keep");
  const auto path = dir / "f" / "out.json";
  test::expect_input_error([&] { write_text_atomic(path, "x"); },
                           {path.string() + ": expected an existing parent folder, found " +
                            (dir / "f").string() + " (a regular file)"});
  EXPECT_EQ(test::read_bytes(dir / "f"), "keep");
}

TEST(OutputFileHostile, ExistingFolderIsRefused) {
  const auto dir = test::temp_dir("o");
  fs::create_directory(dir / "out.json");
  expect_file_refused(dir / "out.json", "found a folder");
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(dir / "out.json")));
}

TEST(OutputFileHostile, RegularFileIsReplacedAndHardLinkKeepsOldContents) {
  const auto dir = test::temp_dir("o");
  test::write_text(dir / "out.txt", "old");
  fs::create_hard_link(dir / "out.txt", dir / "other");
  write_text_atomic(dir / "out.txt", "new");
  EXPECT_EQ(test::read_bytes(dir / "out.txt"), "new");
  EXPECT_EQ(test::read_bytes(dir / "other"), "old");  // replaced, never written through
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"other", "out.txt"}));
}

TEST(OutputFileHostile, CommitWithoutWritingGivesAnEmptyFile) {
  const auto dir = test::temp_dir("o");
  OutputFile f(dir / "out.json", "--json");
  f.commit();
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(dir / "out.json")));
  EXPECT_EQ(fs::file_size(dir / "out.json"), 0u);
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"out.json"}));
}

TEST(OutputFileHostile, TemporaryNamesAreHiddenUniqueSiblings) {
  const auto dir = test::temp_dir("o");
  {
    OutputFile a(dir / "out.json", "--json");
    OutputFile b(dir / "out.json", "--json");
    EXPECT_NE(a.temp_path(), b.temp_path());
    for (const auto* f : {&a, &b}) {
      EXPECT_EQ(f->temp_path().parent_path(), dir);
      EXPECT_EQ(f->temp_path().filename().string().rfind(".out.json.ptq-", 0), 0u);
      EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(f->temp_path())));
    }
  }
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST(OutputFileHostile, DestructorRemovesTemporaryOnException) {
  const auto dir = test::temp_dir("o");
  EXPECT_THROW(
      {
        OutputFile f(dir / "out.json", "--json");
        test::write_text(f.temp_path(), "half");
        throw std::runtime_error("interrupted");
      },
      std::runtime_error);
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST(OutputFileHostile, SymlinkAppearingBeforeCommitIsRefused) {
  const auto dir = test::temp_dir("o");
  test::write_text(dir / "target.txt", "keep");
  {
    OutputFile f(dir / "out.json", "--json");
    test::write_text(f.temp_path(), "new");
    fs::create_symlink("target.txt", dir / "out.json");
    test::expect_input_error([&] { f.commit(); }, {"--json " + (dir / "out.json").string(),
                                                   kFileExpected, "a symbolic link to target.txt"});
  }
  EXPECT_TRUE(fs::is_symlink(dir / "out.json"));
  EXPECT_EQ(test::read_bytes(dir / "target.txt"), "keep");
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"out.json", "target.txt"}));
}

TEST(OutputFileHostile, FifoReplacingTheFileBeforeCommitIsRefused) {
  const auto dir = test::temp_dir("o");
  test::write_text(dir / "out.json", "old");
  {
    OutputFile f(dir / "out.json", "--json");
    fs::remove(dir / "out.json");
    make_fifo(dir / "out.json");
    test::expect_input_error([&] { f.commit(); },
                             {(dir / "out.json").string(), kFileExpected, "a FIFO"});
  }
  EXPECT_TRUE(fs::is_fifo(fs::symlink_status(dir / "out.json")));
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"out.json"}));
}

TEST(OutputFileHostile, SymlinkedParentFolderIsFollowed) {
  const auto dir = test::temp_dir("o");
  fs::create_directory(dir / "real");
  fs::create_symlink("real", dir / "link");
  write_text_atomic(dir / "link" / "out.json", "{}");
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(dir / "real" / "out.json")));
  EXPECT_EQ(names_in(dir / "real"), (std::vector<std::string>{"out.json"}));
}

// ---------------------------------------------------------------- folders

TEST(OutputFolderHostile, SymlinkToEmptyFolderIsRefusedWithOrWithoutSlash) {
  const auto dir = test::temp_dir("o");
  fs::create_directory(dir / "real");
  fs::create_symlink("real", dir / "out");
  expect_folder_refused(dir / "out", "found a symbolic link to real");
  // "out/" would make lstat follow the link; the slash is stripped first.
  test::expect_input_error(
      [&] { OutputFolder f(dir.string() + "/out/", "--out"); },
      {"--out " + (dir / "out").string(), kFolderExpected, "a symbolic link to real"});
  EXPECT_TRUE(fs::is_symlink(dir / "out"));
  EXPECT_TRUE(fs::is_empty(dir / "real"));
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"out", "real"}));
}

TEST(OutputFolderHostile, SymlinkToFileAndDanglingSymlinkAreRefused) {
  const auto dir = test::temp_dir("o");
  test::write_text(dir / "target.txt", "keep");
  fs::create_symlink("target.txt", dir / "out");
  fs::create_symlink("nowhere", dir / "gone");
  expect_folder_refused(dir / "out", "found a symbolic link to target.txt");
  expect_folder_refused(dir / "gone", "found a dangling symbolic link to nowhere");
  EXPECT_EQ(test::read_bytes(dir / "target.txt"), "keep");
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"gone", "out", "target.txt"}));
}

TEST(OutputFolderHostile, FifoSocketAndRegularFileAreRefused) {
  const auto dir = test::temp_dir("o");
  make_fifo(dir / "pipe");
  make_socket(dir / "sock");
  test::write_text(dir / "file", "keep");
  expect_folder_refused(dir / "pipe", "found a FIFO (named pipe)");
  expect_folder_refused(dir / "sock", "found a socket");
  expect_folder_refused(dir / "file", "found a regular file");
  EXPECT_EQ(test::read_bytes(dir / "file"), "keep");
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"file", "pipe", "sock"}));
}

TEST(OutputFolderHostile, DevNullIsRefusedAndStaysADevice) {
  expect_folder_refused("/dev/null", "found a character device");
  expect_dev_null_intact();
}

TEST(OutputFolderHostile, EmptyRootAndDotNamesAreRefused) {
  test::expect_input_error([] { OutputFolder f("", "--out"); },
                           {"--out \"\": expected a folder path, found an empty path"});
  test::expect_input_error([] { check_output_path("/", OutputKind::folder, "--out"); },
                           {"--out /: expected a folder path that ends in a name, found '/'"});
  const auto dir = test::temp_dir("o");
  test::expect_input_error([&] { OutputFolder f(dir / ".", "--out"); },
                           {(dir / ".").string(), "found '.'"});
  test::expect_input_error([&] { OutputFolder f(dir.string() + "/../", "--out"); },
                           {dir.string() + "/../", "found '..'"});
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST(OutputFolderHostile, TrailingSlashesAreAcceptedAndStripped) {
  const auto dir = test::temp_dir("o");
  EXPECT_EQ(check_output_path(dir.string() + "/out//", OutputKind::folder, "--out"), dir / "out");
  OutputFolder f(dir.string() + "/out/", "--out");
  EXPECT_EQ(f.final_path(), dir / "out");
  test::write_text(f.staging() / "model.safetensors", "weights");
  f.commit();
  EXPECT_EQ(test::read_bytes(dir / "out" / "model.safetensors"), "weights");
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"out"}));  // no hidden partial folder
}

TEST(OutputFolderHostile, MissingParentAndFileParentAreRefused) {
  const auto dir = test::temp_dir("o");
  test::write_text(dir / "f", "keep");
  test::expect_input_error(
      [&] { OutputFolder o(dir / "missing" / "out", "--out"); },
      {"--out " + (dir / "missing" / "out").string() + ": expected an existing parent folder",
       "found " + (dir / "missing").string() + " missing"});
  test::expect_input_error([&] { OutputFolder o(dir / "f" / "out/", "--out"); },
                           {"--out " + (dir / "f" / "out").string(),
                            "found " + (dir / "f").string() + " (a regular file)"});
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"f"}));
}

TEST(OutputFolderHostile, NonEmptyFolderIsRefusedAndKept) {
  const auto dir = test::temp_dir("o");
  fs::create_directory(dir / "out");
  test::write_text(dir / "out" / "mine.txt", "keep");
  expect_folder_refused(dir / "out", "found a non-empty folder");
  EXPECT_EQ(test::read_bytes(dir / "out" / "mine.txt"), "keep");
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"out"}));
}

TEST(OutputFolderHostile, EmptyFolderIsAcceptedAndReplaced) {
  const auto dir = test::temp_dir("o");
  fs::create_directory(dir / "out");
  OutputFolder f(dir / "out", "--out");
  test::write_text(f.staging() / "README.md", "card");
  f.commit();
  EXPECT_EQ(names_in(dir / "out"), (std::vector<std::string>{"README.md"}));
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"out"}));
}

TEST(OutputFolderHostile, CommitWithoutWritingGivesAnEmptyFolder) {
  const auto dir = test::temp_dir("o");
  OutputFolder f(dir / "out", "--out");
  EXPECT_EQ(f.staging().parent_path(), dir);
  EXPECT_EQ(f.staging().filename().string().rfind(".out.ptq-", 0), 0u);
  f.commit();
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(dir / "out")));
  EXPECT_TRUE(fs::is_empty(dir / "out"));
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"out"}));
}

TEST(OutputFolderHostile, DestructorRemovesStagingOnException) {
  const auto dir = test::temp_dir("o");
  EXPECT_THROW(
      {
        OutputFolder f(dir / "out", "--out");
        fs::create_directories(f.staging() / "sub" / "deeper");
        test::write_text(f.staging() / "sub" / "deeper" / "half.bin", "half");
        fs::create_symlink(dir, f.staging() / "loop");  // removed, not followed
        throw std::runtime_error("interrupted");
      },
      std::runtime_error);
  EXPECT_TRUE(fs::is_empty(dir));
}

TEST(OutputFolderHostile, SymlinkAppearingBeforeCommitIsRefused) {
  const auto dir = test::temp_dir("o");
  fs::create_directory(dir / "real");
  {
    OutputFolder f(dir / "out", "--out");
    test::write_text(f.staging() / "model.safetensors", "weights");
    fs::create_symlink("real", dir / "out");
    test::expect_input_error([&] { f.commit(); }, {"--out " + (dir / "out").string(),
                                                   kFolderExpected, "a symbolic link to real"});
  }
  EXPECT_TRUE(fs::is_symlink(dir / "out"));
  EXPECT_TRUE(fs::is_empty(dir / "real"));
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"out", "real"}));
}

TEST(OutputFolderHostile, FolderFilledBeforeCommitIsRefused) {
  const auto dir = test::temp_dir("o");
  fs::create_directory(dir / "out");
  {
    OutputFolder f(dir / "out", "--out");
    test::write_text(dir / "out" / "theirs.txt", "keep");
    test::expect_input_error([&] { f.commit(); },
                             {"--out " + (dir / "out").string(), "found a non-empty folder"});
  }
  EXPECT_EQ(test::read_bytes(dir / "out" / "theirs.txt"), "keep");
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"out"}));
}

// A pid no process has: a child that exited and was reaped.
pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

// Sets a path's modification time `seconds` into the past.
void age(const fs::path& p, int seconds) {
  const timespec t{::time(nullptr) - seconds, 0};
  const timespec times[2] = {t, t};
  ASSERT_EQ(::utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW), 0) << p;
}

// The hidden entries that runs killed with SIGKILL leave (a dead pid, nobody
// holding them) are removed by the next writer of the same path; a live
// writer's entry, a fresh unlocked one of a live pid, other paths' entries,
// symlinks and look-alike names stay.
TEST(OutputPathLeftovers, KilledRunsTemporariesAreRemovedByTheNextWriter) {
  const auto dir = test::temp_dir("o");
  const std::string dead = std::to_string(dead_pid());
  const std::string self = std::to_string(::getpid());
  fs::create_directories(dir / (".out.ptq-" + dead + "-0") / "sub");
  test::write_text(dir / (".out.ptq-" + dead + "-0") / "sub" / "model.safetensors", "partial");
  test::write_text(dir / (".out.ptq-" + dead + "-7"), "a file under a folder's name");
  fs::create_directory(dir / (".out.ptq-" + self + "-900"));  // maybe a writer between its steps
  fs::create_directory(dir / (".out.ptq-" + self + "-901"));  // unlocked for over a minute
  age(dir / (".out.ptq-" + self + "-901"), 120);
  fs::create_directory(dir / "kept");
  fs::create_symlink("kept", dir / (".out.ptq-" + dead + "-8"));
  const std::vector<std::string> others = {".outx.ptq-" + dead + "-0", ".out.ptq-" + dead,
                                           ".out.ptq-" + dead + "-1x", "out.ptq-" + dead + "-0"};
  for (const auto& name : others) test::write_text(dir / name, "not ours");
  {
    OutputFolder live(dir / "out", "--out");
    OutputFolder next(dir / "out", "--out");  // must keep `live`'s staging folder
    EXPECT_TRUE(fs::is_directory(live.staging()));
    next.commit();
  }
  std::vector<std::string> expected = others;
  expected.insert(expected.end(),
                  {".out.ptq-" + self + "-900", ".out.ptq-" + dead + "-8", "kept", "out"});
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(names_in(dir), expected);
}

TEST(OutputPathLeftovers, AKilledFileWriterLeavesNothingAfterTheRerun) {
  const auto dir = test::temp_dir("o");
  const pid_t child = ::fork();
  if (child == 0) {
    OutputFile f(dir / "stats.h5", "--out");
    ::kill(::getpid(), SIGKILL);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_EQ(names_in(dir).size(), 1u);  // the killed writer's hidden file
  OutputFile f(dir / "stats.h5", "--out");
  test::write_text(f.temp_path(), "whole");
  f.commit();
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"stats.h5"}));
}

}  // namespace
}  // namespace ptq
