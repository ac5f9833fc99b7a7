#pragma once
// The one way ptq puts an output where the user asked (issue: safe writers).
// Every file or folder ptq writes is first built under a temporary name beside
// its final path and renamed into place by commit(); nothing else in the
// project renames into a user-given path. The final path is never a special
// file: a symlink (dangling or not), FIFO, socket, character or block device at
// the final path is refused with a clear InputError instead of being replaced,
// and so is a symlinked output folder. Only the last component is judged: a
// symlink among the parent folders is followed like any path ("out -> /data/out"
// as a parent is fine), only a symlink AT the final path is refused. Paths are
// checked when the writer is made (so drivers check them all before the first
// forward pass) and again just before the rename.
//
// Temporary names are hidden siblings of the final path,
// ".<name>.ptq-<pid>-<n>" (n counts up per process), so the rename stays on one
// filesystem and is atomic, and two writers in one process or in two processes
// never share one. They are created exclusively (O_EXCL, mkdir), never through
// an existing entry. A writer holds an flock on its temporary entry until it
// is committed or removed; making a writer removes the unlocked temporary entries of the same
// final path that killed runs left (kill -9, a power cut), so reruns do not
// pile up hidden copies of a large output.
//
// Guarantees against a path that changes while ptq runs (Linux):
//  - files: commit() renames with renameat2(RENAME_NOREPLACE) onto an absent
//    path, and replaces a regular file with renameat2(RENAME_EXCHANGE), checking
//    what was swapped out and swapping back if it was not a regular file. So a
//    special file that appears at any moment is never removed or written
//    through. On a filesystem without these flags (EINVAL, e.g. some network
//    filesystems) commit() falls back to rename(2) after the re-check: there, a
//    special file created in the moment between re-check and rename would be
//    replaced (never written through).
//  - folders: rename(2) of a folder only ever replaces an absent path or an
//    empty folder (a non-folder or non-empty folder makes it fail), so a folder
//    commit can never replace a symlink or special file.
// A replaced regular file is a new file: hard links to the old one keep the
// old contents, and its owner and permissions are not carried over.
#include <filesystem>
#include <string>

namespace ptq {

enum class OutputKind { file, folder };

// Resolves and checks a user-given output path before any work is done:
// rejects "" and special files at the final path, requires an existing parent
// directory that is writable, and for files a path that is not an existing
// directory. Folders: trailing '/'s are stripped; files: a trailing '/' is
// refused (it names a folder). A final component "." or ".." is refused (it
// cannot be renamed onto). `what` names the flag or role in messages ("--out",
// "--json"; "" for none): "--json /dev/null: expected a regular file or a new
// path, found a character device". Returns the normalized path.
std::filesystem::path check_output_path(const std::filesystem::path& path, OutputKind kind,
                                        const std::string& what);

// A file written under a temporary sibling name and renamed into place. The
// constructor checks the path and creates the temporary file empty; the
// writer opens temp_path() itself (truncating is fine) and closes it before
// commit(). The final path must be absent or a regular file.
class OutputFile {
 public:
  OutputFile(const std::filesystem::path& final_path, const std::string& what);
  ~OutputFile();  // without commit(): the temporary file is removed
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  const std::filesystem::path& temp_path() const { return temp_; }
  const std::filesystem::path& final_path() const { return final_; }
  // Re-checks the final path, then renames. Once only; a failed commit throws
  // and leaves the temporary file to the destructor.
  void commit();

 private:
  std::filesystem::path final_, temp_;
  std::string what_;
  int lock_ = -1;           // holds the flock on the temporary file
  bool committed_ = false;  // also set when temp_ no longer names our file
};

// A folder built under a temporary sibling name and renamed into place. The
// final path must be absent or an empty real directory (never a symlink).
class OutputFolder {
 public:
  OutputFolder(const std::filesystem::path& final_path, const std::string& what);
  ~OutputFolder();  // without commit(): the staging folder and its contents are removed
  OutputFolder(const OutputFolder&) = delete;
  OutputFolder& operator=(const OutputFolder&) = delete;

  const std::filesystem::path& staging() const { return staging_; }
  const std::filesystem::path& final_path() const { return final_; }  // normalized
  void commit();  // re-checks the final path, then renames; once only

 private:
  std::filesystem::path final_, staging_;
  std::string what_;
  int lock_ = -1;  // holds the flock on the staging folder
  bool committed_ = false;
};

}  // namespace ptq
