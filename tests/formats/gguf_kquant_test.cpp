// The k-quants Q2_K ... Q6_K against llama.cpp itself: every tensor of tiny's
// F16 GGUF quantized by ggml_quantize and packed must equal, byte for byte, what
// llama-quantize wrote (the fixtures, and fresh llama-quantize runs for Q2_K,
// Q3_K and every type with the fixtures' imatrix). Also unpack/pack round trips
// and dequantize against a decoder written here from ggml's block layouts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "algorithms/ggml_grid.hpp"
#include "io/dtype.hpp"
#include "io/error.hpp"
#include "io/gguf.hpp"
#include "io/imatrix.hpp"
#include "pipeline/formats/gguf_blocks.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

constexpr std::uint32_t kGgufF16 = 1;
constexpr int kSuper = 256;
// tiny: 4 layers x 7 linear weights, plus token_embd and output (--pure: all quantized).
constexpr std::size_t kTinyWeights = 30;
// llama-imatrix has entries for the 28 linear weights of the layers only.
constexpr std::size_t kTinyImatrixEntries = 28;
constexpr int kQuantizeThreads = 2;

std::filesystem::path tiny_f16() { return test::fixture("gguf/tiny-f16.gguf"); }
std::filesystem::path tiny_imatrix() { return test::fixture("gguf/tiny-imatrix.gguf"); }

// What llama-quantize was given: an F16 model and maybe an imatrix.
struct Inputs {
  std::filesystem::path model = tiny_f16();
  std::optional<std::filesystem::path> imatrix;
};

std::uint8_t byte_at(std::span<const std::byte> bytes, std::size_t i) {
  return std::to_integer<std::uint8_t>(bytes[i]);
}

float half_at(std::span<const std::byte> bytes, std::size_t i) {
  return half_to_float(
      static_cast<std::uint16_t>(byte_at(bytes, i) | (byte_at(bytes, i + 1) << 8)));
}

// The F16 tensor as llama-quantize hands it to ggml: [rows, ne0] float32.
MatrixRM f16_matrix(const gguf::TensorInfo& t) {
  EXPECT_EQ(t.type, kGgufF16) << t.name;
  MatrixRM W(t.rows(), t.ne.at(0));
  for (Eigen::Index i = 0; i < W.size(); ++i) W.data()[i] = half_at(t.data, 2 * i);
  return W;
}

// Index of the first differing byte, or -1.
std::ptrdiff_t first_difference(std::span<const std::byte> a, std::span<const std::byte> b) {
  if (a.size() != b.size()) return 0;
  const auto [ia, ib] = std::mismatch(a.begin(), a.end(), b.begin());
  return ia == a.end() ? -1 : ia - a.begin();
}

struct Comparison {
  std::size_t tensors = 0;             // tensors of the grid's type compared
  std::size_t with_importance = 0;     // of which quantized with an imatrix entry
  std::size_t importance_changed = 0;  // of those, bytes that differ without importance
};

// Quantizes each weight of the input model that `quantized` stores as `grid` as
// llama-quantize does (with the imatrix entry of the tensor, if any) and expects
// llama-quantize's bytes.
Comparison expect_same_bytes(const gguf::File& quantized, GgmlGrid grid, const Inputs& inputs) {
  const auto f16 = gguf::File::open(inputs.model);
  const std::optional<Imatrix> imatrix =
      inputs.imatrix ? std::optional<Imatrix>(read_imatrix(*inputs.imatrix)) : std::nullopt;
  Comparison c;
  for (const gguf::TensorInfo& t : quantized.tensors()) {
    if (t.type != gguf_type_id(grid)) continue;
    const MatrixRM W = f16_matrix(f16->require_tensor(t.name));
    const std::optional<std::vector<float>> importance =
        imatrix ? imatrix->importance(t.name) : std::nullopt;
    const std::vector<std::byte> ours =
        pack(ggml_quantize(grid, W, importance.value_or(std::vector<float>{})));
    const std::ptrdiff_t at = first_difference(ours, t.data);
    EXPECT_EQ(at, -1) << t.name << ": first difference in block "
                      << at / static_cast<std::ptrdiff_t>(packed_size(grid, 1, kSuper));
    ++c.tensors;
    if (importance) {
      ++c.with_importance;
      c.importance_changed += first_difference(pack(ggml_quantize(grid, W)), t.data) != -1;
    }
  }
  return c;
}

// ---- an independent decoder: ggml's dequantize_row_qN_K, block by block --------

// get_scale_min_k4: sub-block j's 6-bit scale and min in Q4_K/Q5_K's 12 bytes.
std::pair<int, int> scale_min_k4(std::span<const std::byte> s, int j) {
  if (j < 4) return {byte_at(s, j) & 63, byte_at(s, j + 4) & 63};
  return {(byte_at(s, j + 4) & 0xF) | ((byte_at(s, j - 4) >> 6) << 4),
          (byte_at(s, j + 4) >> 4) | ((byte_at(s, j) >> 6) << 4)};
}

// Q3_K's 12 scale bytes: scales 4g+k have their low nibble in byte k (g = 0),
// 4 + k (g = 1), or the high nibble of those (g = 2, 3); bits 2g, 2g+1 of byte
// 8 + k hold their top two bits.
int q3_scale(std::span<const std::byte> s, int j) {
  const int g = j / 4, k = j % 4;
  const int low = (byte_at(s, k + 4 * (g % 2)) >> (4 * (g / 2))) & 0xF;
  return (low | (((byte_at(s, 8 + k) >> (2 * g)) & 3) << 4)) - 32;
}

void decode_q2_k(std::span<const std::byte> b, float* y) {  // scales[16] qs[64] d dmin
  const float d = half_at(b, 80), dmin = half_at(b, 82);
  for (int j = 0; j < 16; ++j) {
    const float dl = d * static_cast<float>(byte_at(b, j) & 0xF);
    const float ml = dmin * static_cast<float>(byte_at(b, j) >> 4);
    // Sub-block j: 128-weight half j / 8, bit pair (j % 8) / 2, bytes 16 * (j % 2) ...
    const int qs = 16 + 32 * (j / 8) + 16 * (j % 2), shift = 2 * ((j % 8) / 2);
    for (int l = 0; l < 16; ++l)
      *y++ = dl * static_cast<float>((byte_at(b, qs + l) >> shift) & 3) - ml;
  }
}

void decode_q3_k(std::span<const std::byte> b, float* y) {  // hmask[32] qs[64] scales[12] d
  const float d = half_at(b, 108);
  for (int j = 0; j < 16; ++j) {
    const float dl = d * static_cast<float>(q3_scale(b.subspan(96, 12), j));
    const int qs = 32 + 32 * (j / 8), shift = 2 * ((j % 8) / 2), hbit = j / 2;
    for (int l = 16 * (j % 2); l < 16 * (j % 2) + 16; ++l) {
      const int high = (byte_at(b, l) >> hbit) & 1;
      *y++ = dl * static_cast<float>(((byte_at(b, qs + l) >> shift) & 3) - (high ? 0 : 4));
    }
  }
}

// Q4_K (qh_offset < 0) and Q5_K: d dmin scales[12] [qh[32]] qs[128].
void decode_q45_k(std::span<const std::byte> b, float* y, int qh_offset) {
  const float d = half_at(b, 0), dmin = half_at(b, 2);
  const int qs = qh_offset < 0 ? 16 : 48;
  for (int j = 0; j < 8; ++j) {
    const auto [sc, m] = scale_min_k4(b.subspan(4, 12), j);
    const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) {
      const int nibble = (byte_at(b, qs + 32 * (j / 2) + l) >> (4 * (j % 2))) & 0xF;
      const int high = qh_offset < 0 ? 0 : ((byte_at(b, qh_offset + l) >> j) & 1) * 16;
      *y++ = dl * static_cast<float>(nibble + high) - ml;
    }
  }
}

void decode_q6_k(std::span<const std::byte> b, float* y) {  // ql[128] qh[64] scales[16] d
  const float d = half_at(b, 208);
  for (int i = 0; i < kSuper; ++i) {
    const int half = i / 128, quarter = (i % 128) / 32, l = i % 32;
    const int ql = (byte_at(b, 64 * half + 32 * (quarter % 2) + l) >> (4 * (quarter / 2))) & 0xF;
    const int qh = (byte_at(b, 128 + 32 * half + l) >> (2 * quarter)) & 3;
    const auto scale = static_cast<std::int8_t>(byte_at(b, 192 + i / 16));
    y[i] = d * static_cast<float>(scale) * static_cast<float>((ql | (qh << 4)) - 32);
  }
}

std::vector<float> decode(GgmlGrid grid, std::span<const std::byte> data) {
  const std::size_t block = packed_size(grid, 1, kSuper);
  std::vector<float> y(data.size() / block * kSuper);
  for (std::size_t b = 0; b < data.size() / block; ++b) {
    const auto bytes = data.subspan(b * block, block);
    float* out = y.data() + b * kSuper;
    switch (grid) {
      case GgmlGrid::q2_k:
        decode_q2_k(bytes, out);
        break;
      case GgmlGrid::q3_k:
        decode_q3_k(bytes, out);
        break;
      case GgmlGrid::q4_k:
        decode_q45_k(bytes, out, -1);
        break;
      case GgmlGrid::q5_k:
        decode_q45_k(bytes, out, 16);
        break;
      default:
        decode_q6_k(bytes, out);
        break;
    }
  }
  return y;
}

// Bit-identical floats (NaN payloads included: the same operations in the
// same order produce the same bits).
bool same_floats(const MatrixRM& a, const std::vector<float>& b) {
  return static_cast<std::size_t>(a.size()) == b.size() &&
         std::memcmp(a.data(), b.data(), b.size() * sizeof(float)) == 0;
}

// unpack then pack gives the bytes back; dequantize equals the decoder above.
void expect_round_trip_and_decoding(GgmlGrid grid, const std::string& name, std::int64_t rows,
                                    std::int64_t cols, std::span<const std::byte> data) {
  const GgmlBlocks q = unpack(grid, rows, cols, data);
  EXPECT_EQ(first_difference(pack(q), data), -1) << name;
  EXPECT_TRUE(same_floats(dequantize(q), decode(grid, data))) << name;
}

void expect_file_round_trips(const gguf::File& file, GgmlGrid grid) {
  for (const gguf::TensorInfo& t : file.tensors()) {
    if (t.type == gguf_type_id(grid))
      expect_round_trip_and_decoding(grid, t.name, t.rows(), t.ne.at(0), t.data);
  }
}

// ---- the fixtures ------------------------------------------------------------

struct FixtureCase {
  const char* file;
  GgmlGrid grid;
  bool imatrix;
};

TEST(GgufKquant, FixturesMatchByteForByte) {
  for (const FixtureCase& f : {FixtureCase{"gguf/tiny-Q4_K.gguf", GgmlGrid::q4_k, false},
                               FixtureCase{"gguf/tiny-Q5_K.gguf", GgmlGrid::q5_k, false},
                               FixtureCase{"gguf/tiny-Q6_K.gguf", GgmlGrid::q6_k, false},
                               FixtureCase{"gguf/tiny-Q4_K-imatrix.gguf", GgmlGrid::q4_k, true}}) {
    SCOPED_TRACE(f.file);
    const auto file = gguf::File::open(test::fixture(f.file));
    const Comparison c = expect_same_bytes(
        *file, f.grid, Inputs{.imatrix = f.imatrix ? std::optional(tiny_imatrix()) : std::nullopt});
    EXPECT_EQ(c.tensors, kTinyWeights);
    EXPECT_EQ(c.with_importance, f.imatrix ? kTinyImatrixEntries : 0);
    EXPECT_EQ(c.importance_changed, c.with_importance);  // the imatrix path really ran
    expect_file_round_trips(*file, f.grid);
  }
}

// ---- fresh llama-quantize runs ---------------------------------------------------

struct RunCase {
  GgmlGrid grid;
  bool imatrix;
};

std::string case_name(const testing::TestParamInfo<RunCase>& info) {
  return std::string(ggml_grid_info(info.param.grid).name) + (info.param.imatrix ? "_imatrix" : "");
}

// llama-quantize [--imatrix IMATRIX] --pure MODEL OUT TYPE THREADS
std::filesystem::path run_llama_quantize(const Inputs& inputs, GgmlGrid grid,
                                         const std::filesystem::path& dir) {
  const auto tool = test::shared_dir() / "tools/llama.cpp/llama-quantize";
  std::filesystem::path out = dir / "out.gguf";
  const std::filesystem::path log = dir / "llama-quantize.log";
  // Appends only: GCC 12 -O3 warns (-Wrestrict, a false positive) on "..." + std::string.
  std::string command;
  const auto arg = [&command](const std::string& text, bool quote) {
    command += command.empty() ? "" : " ";
    command += quote ? "'" : "";
    command += text;
    command += quote ? "'" : "";
  };
  arg(tool.string(), true);
  if (inputs.imatrix) {
    arg("--imatrix", false);
    arg(inputs.imatrix->string(), true);
  }
  arg("--pure", false);
  arg(inputs.model.string(), true);
  arg(out.string(), true);
  arg(std::string(ggml_grid_info(grid).name), false);
  arg(std::to_string(kQuantizeThreads), false);
  arg(">", false);
  arg(log.string(), true);
  arg("2>&1", false);
  EXPECT_EQ(std::system(command.c_str()), 0) << command << "\n" << test::read_bytes(log);
  return out;
}

class LlamaQuantizeKquant : public testing::TestWithParam<RunCase> {};

TEST_P(LlamaQuantizeKquant, MatchesByteForByte) {
  const RunCase run = GetParam();
  const Inputs inputs{.imatrix = run.imatrix ? std::optional(tiny_imatrix()) : std::nullopt};
  const std::filesystem::path out =
      run_llama_quantize(inputs, run.grid, test::temp_dir("llama-quantize"));
  ASSERT_TRUE(std::filesystem::exists(out));
  const auto file = gguf::File::open(out);
  const Comparison c = expect_same_bytes(*file, run.grid, inputs);
  EXPECT_EQ(c.tensors, kTinyWeights);
  EXPECT_EQ(c.with_importance, run.imatrix ? kTinyImatrixEntries : 0);
  EXPECT_EQ(c.importance_changed, c.with_importance);
  expect_file_round_trips(*file, run.grid);
}

INSTANTIATE_TEST_SUITE_P(
    Runs, LlamaQuantizeKquant,
    testing::Values(RunCase{GgmlGrid::q2_k, false}, RunCase{GgmlGrid::q3_k, false},
                    RunCase{GgmlGrid::q2_k, true}, RunCase{GgmlGrid::q3_k, true},
                    RunCase{GgmlGrid::q4_k, true}, RunCase{GgmlGrid::q5_k, true},
                    RunCase{GgmlGrid::q6_k, true}),
    case_name);

// ---- edge cases: blocks tiny's weights never produce ----------------------------

// One pattern per row (row % 16), k the column within its super-block: the
// corners of ggml's searches (zero and constant groups, min clamped to 0, ties,
// float16 subnormal and large scales, lone outliers).
float edge_weight(std::int64_t row, std::int64_t k, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 0.02f);
  switch (row % 16) {
    case 0:
      return 0.0f;  // all-zero super-blocks
    case 1:
      return 0.125f;  // constant positive
    case 2:
      return -0.0625f;  // constant negative
    case 3:
      return k == 37 ? -0.3f : 0.0f;  // one weight per super-block
    case 4:
      return (k / 16) % 3 == 0 ? normal(rng) : 0.0f;  // zero sub-blocks among live ones
    case 5:
      return normal(rng) * 1e-4f;  // d and dmin float16 subnormals
    case 6:
      return normal(rng) * 2e3f;  // large weights and scales
    case 7:
      return static_cast<float>(k % 9 - 4) / 8.0f;  // exact rounding ties
    case 8:
      return k % 2 ? 0.05f : -0.05f;  // |max| ties between signs
    case 9:
      return std::fabs(normal(rng)) + 0.01f;  // all positive: min clamps to 0
    case 10:
      return -std::fabs(normal(rng)) - 0.01f;  // all negative
    case 11:
      return k % 16 == 5 ? 1.0f : normal(rng) * 1e-3f;  // an outlier per sub-block
    case 12:
      return static_cast<float>(k) / kSuper - 0.3f;  // a ramp
    case 13:
      return k / 32 == 4 ? normal(rng) * 10.0f : normal(rng) * 1e-3f;  // one loud sub-block
    case 14:
      return k % 32 == 31 ? -0.5f : 0.01f;  // near-constant sub-blocks
    default:
      return normal(rng);
  }
}

// tiny-f16.gguf with every blk.0 weight rewritten by edge_weight.
void write_edge_model(const std::filesystem::path& path) {
  const auto f16 = gguf::File::open(tiny_f16());
  std::mt19937 rng(31);
  std::vector<std::vector<std::byte>> data;
  std::vector<gguf::TensorToWrite> tensors;
  for (const gguf::TensorInfo& t : f16->tensors()) {
    data.emplace_back(t.data.begin(), t.data.end());
    if (t.type != kGgufF16 || !t.name.starts_with("blk.0.")) continue;
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      const std::uint16_t h = float_to_half(edge_weight(i / t.ne[0], i % t.ne[0] % kSuper, rng));
      std::memcpy(data.back().data() + 2 * i, &h, sizeof(h));
    }
  }
  for (std::size_t i = 0; i < data.size(); ++i) {
    const gguf::TensorInfo& t = f16->tensors()[i];
    tensors.push_back({.name = t.name, .ne = t.ne, .type = t.type, .data = data[i]});
  }
  gguf::write(path, f16->metadata(), tensors);
}

// The fixture imatrix with, for blk.0: no importance on every fifth column and
// on a whole 32-column sub-block, 1e6x importance on another; and no tokens at
// all for blk.1.attn_k (llama-quantize then uses importance 1).
void write_edge_imatrix(const std::filesystem::path& path) {
  constexpr std::size_t kDeadBegin = 32, kLoudBegin = 96, kSubBlock = 32;
  constexpr float kLoud = 1e6f;
  Imatrix imatrix = read_imatrix(tiny_imatrix());
  for (auto& [name, entry] : imatrix.entries) {
    if (!name.starts_with("blk.0.")) continue;
    for (std::size_t i = 0; i < entry.in_sum2.size(); i += 5) entry.in_sum2[i] = 0.0f;
    for (std::size_t i = 0; i < kSubBlock; ++i) {
      entry.in_sum2[kDeadBegin + i] = 0.0f;
      entry.in_sum2[kLoudBegin + i] *= kLoud;
    }
  }
  ImatrixEntry& unseen = imatrix.entries.at("blk.1.attn_k.weight");
  std::fill(unseen.counts.begin(), unseen.counts.end(), 0.0f);
  write_imatrix(path, imatrix);
}

TEST(GgufKquant, EdgeCaseBlocksMatchLlamaQuantize) {
  const std::filesystem::path dir = test::temp_dir("edge");
  const Inputs plain{.model = dir / "edge-f16.gguf", .imatrix = std::nullopt};
  write_edge_model(plain.model);
  const Inputs weighted{.model = plain.model, .imatrix = dir / "edge-imatrix.gguf"};
  write_edge_imatrix(*weighted.imatrix);
  for (GgmlGrid grid :
       {GgmlGrid::q2_k, GgmlGrid::q3_k, GgmlGrid::q4_k, GgmlGrid::q5_k, GgmlGrid::q6_k}) {
    for (const Inputs& inputs : {plain, weighted}) {
      SCOPED_TRACE(std::string(ggml_grid_info(grid).name) + (inputs.imatrix ? " imatrix" : ""));
      const auto file = gguf::File::open(run_llama_quantize(inputs, grid, dir));
      const Comparison c = expect_same_bytes(*file, grid, inputs);
      EXPECT_EQ(c.tensors, kTinyWeights);
      EXPECT_EQ(c.with_importance, inputs.imatrix ? kTinyImatrixEntries : 0);
      expect_file_round_trips(*file, grid);
    }
  }
}

// ---- arbitrary bytes and bad sizes ---------------------------------------------

constexpr GgmlGrid kKQuants[] = {GgmlGrid::q2_k, GgmlGrid::q3_k, GgmlGrid::q4_k, GgmlGrid::q5_k,
                                 GgmlGrid::q6_k};

// Every bit of a k-quant block is used, so any bytes unpack and pack back
// unchanged, and decode like ggml would.
TEST(GgufKquant, AnyBytesRoundTrip) {
  std::mt19937 rng(21);
  for (GgmlGrid grid : kKQuants) {
    constexpr std::int64_t kRows = 3, kCols = std::int64_t{2} * kSuper;
    std::vector<std::byte> data(packed_size(grid, kRows, kCols));
    for (std::byte& b : data) b = static_cast<std::byte>(rng() & 0xFF);
    expect_round_trip_and_decoding(grid, std::string(ggml_grid_info(grid).name), kRows, kCols,
                                   data);
  }
}

TEST(GgufKquant, RejectsWrongSizes) {
  for (GgmlGrid grid : kKQuants) {
    const std::vector<std::byte> data(packed_size(grid, 2, kSuper));
    EXPECT_NO_THROW(unpack(grid, 2, kSuper, data));
    EXPECT_THROW(unpack(grid, 2, kSuper, std::span(data).first(data.size() - 1)), InputError);
    EXPECT_THROW(unpack(grid, 4, kSuper / 2, data), InputError);  // rows not whole super-blocks
    EXPECT_THROW(unpack(grid, 3, kSuper, data), InputError);
  }
}

}  // namespace
}  // namespace ptq
