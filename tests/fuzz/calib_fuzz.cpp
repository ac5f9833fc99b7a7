// build_calibration_set on a --calib source, tokenized by tiny's tokenizer.
// The first byte picks the kind: 0 a .jsonl file (a "text" field per line),
// 1 a text file, 2 an .ids file (raw int32 windows, read_ids), 3 a folder of
// text files (the input's files); then the windows are cut.
#include "fuzz_util.hpp"
#include "io/tokenizer.hpp"
#include "pipeline/recipe/calib_data.hpp"

namespace {

constexpr std::size_t kMaxFolderFiles = 4;

std::filesystem::path write_source(std::uint8_t kind, std::string_view bytes) {
  namespace fs = std::filesystem;
  using ptq::fuzz::write_file;
  if (kind == 0) return write_file("source.jsonl", bytes);
  if (kind == 1) return write_file("source.txt", bytes);
  if (kind == 2) return write_file("source.ids", bytes);
  const fs::path dir = ptq::fuzz::scratch_dir() / "source";
  fs::remove_all(dir);
  fs::create_directory(dir);
  const auto files = ptq::fuzz::split_files(bytes, kMaxFolderFiles);
  for (std::size_t i = 0; i < files.size() && files[i]; ++i)
    write_file("source/doc" + std::to_string(i) + ".txt", *files[i]);
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptq;
  static const Tokenizer tokenizer = Tokenizer::load(fuzz::fixture("models/tiny"));
  if (size == 0) return 0;
  const auto path = write_source(data[0] % 4, fuzz::as_text(data + 1, size - 1));
  const CalibSourceSpec source{"fuzz", path, 1.0};
  const CalibConfig config{.samples = 4, .seqlen = 8, .seed = data[0]};
  fuzz::refuse_cleanly([&] { build_calibration_set({&source, 1}, config, &tokenizer, 0); });
  return 0;
}
