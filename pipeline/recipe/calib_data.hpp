#pragma once
// Calibration data: named sources mixed by weight and cut into windows.
//   --calib NAME=PATH[:WEIGHT]  (PATH: text file, folder of text files, .jsonl, or .ids)
// Each source contributes round(share x samples) windows of seqlen tokens,
// share = WEIGHT / sum of weights. `.ids` sources (int32 windows, e.g. the
// fixtures' calib_generic.ids) give their first windows in file order; text
// sources are tokenized whole (documents joined with EOS) and windows start at
// positions drawn from a portable generator seeded with --seed.
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ptq {

class Tokenizer;

struct CalibSourceSpec {
  std::string name;
  std::filesystem::path path;
  double weight = 1.0;
};

// Parses NAME=PATH[:WEIGHT]; a bare PATH takes its file stem as the name.
CalibSourceSpec parse_calib_spec(std::string_view spec);

struct CalibConfig {
  int samples = 128;
  int seqlen = 512;
  std::uint64_t seed = 0;
  std::string jsonl_field = "text";
  void validate() const;
};

struct CalibWindow {
  int source = 0;            // index into CalibrationSet::sources
  std::int64_t start = 0;    // token offset in the source's stream (window index x seqlen for .ids)
  std::vector<std::int32_t> ids;
};

struct CalibSourceInfo {
  CalibSourceSpec spec;
  std::string content_hash;  // hash_path of the source
  std::int64_t stream_tokens = 0;
  int windows = 0;
};

struct CalibrationSet {
  CalibConfig config;
  std::vector<CalibSourceInfo> sources;
  std::vector<CalibWindow> windows;  // sources in the order given, windows in draw order
};

// `tokenizer` may be null when every source is an .ids file.
CalibrationSet build_calibration_set(std::span<const CalibSourceSpec> sources, const CalibConfig& config,
                                     const Tokenizer* tokenizer, std::int32_t eos_id);

// InputError naming the source file, the window and the position of the first
// id outside the model's vocabulary (an .ids file made for another tokenizer).
void check_window_ids(const CalibrationSet& set, std::int32_t vocab_size);

// The windows of one source, as a [windows, seqlen] block of ids (for statistics per source).
std::vector<const CalibWindow*> windows_of(const CalibrationSet& set, int source);

}  // namespace ptq
