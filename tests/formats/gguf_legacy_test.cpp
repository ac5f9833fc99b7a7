// ggml's legacy blocks (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) and IQ4_NL/IQ4_XS against
// llama.cpp itself: every tensor of a file llama-quantize wrote from
// tiny-f16.gguf is reproduced byte for byte by ggml_quantize + pack (from the
// fixtures for Q8_0/Q4_0, from a fresh llama-quantize run for the others and for
// every type with the fixture imatrix); unpack + pack round-trips those bytes,
// and dequantize matches a decoder written here from ggml-common.h's layouts.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <span>
#include <sstream>
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

namespace fs = std::filesystem;

constexpr std::uint32_t kF16Type = 1;  // GGML_TYPE_F16
constexpr const char* kThreads = "2";  // llama-quantize's nthreads: these machines have 2 cores

constexpr std::array kOurGrids = {GgmlGrid::q8_0, GgmlGrid::q4_0,   GgmlGrid::q4_1,  GgmlGrid::q5_0,
                                  GgmlGrid::q5_1, GgmlGrid::iq4_nl, GgmlGrid::iq4_xs};

fs::path f16_model() { return test::fixture("gguf/tiny-f16.gguf"); }
fs::path imatrix_file() { return test::fixture("gguf/tiny-imatrix.gguf"); }

std::optional<GgmlGrid> grid_of_type(std::uint32_t type) {
  for (const GgmlGridInfo& info : ggml_grids()) {
    if (gguf_type_id(info.grid) == type) return info.grid;
  }
  return std::nullopt;
}

MatrixRM f16_weights(const gguf::TensorInfo& t) {
  EXPECT_EQ(t.type, kF16Type) << t.name;
  MatrixRM W(t.rows(), t.ne.at(0));
  for (Eigen::Index i = 0; i < W.size(); ++i) {
    std::uint16_t h = 0;
    std::memcpy(&h, t.data.data() + 2 * i, sizeof(h));
    W.data()[i] = half_to_float(h);
  }
  return W;
}

// The 2-D F16 tensors of the source: what `llama-quantize --pure` quantizes.
int quantizable_tensors(const gguf::File& f16) {
  int n = 0;
  for (const auto& t : f16.tensors()) n += t.type == kF16Type && t.ne.size() == 2 ? 1 : 0;
  return n;
}

// ---- An independent decoder, from ggml-common.h's block structs ----

// kvalues_iq4nl.
constexpr std::array<int, 16> kIq4nl = {-127, -104, -83, -65, -49, -35, -22, -10,
                                        1,    13,   25,  38,  53,  69,  89,  113};

float f16_at(const std::byte* p) {
  std::uint16_t h = 0;
  std::memcpy(&h, p, sizeof(h));
  return half_to_float(h);
}
int u8_at(const std::byte* p, int i) { return std::to_integer<int>(p[i]); }
std::uint32_t u32_at(const std::byte* p) {
  std::uint32_t v = 0;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Decodes one block of 32 weights (IQ4_XS: 256) starting at p into y.
void decode_block(GgmlGrid grid, const std::byte* p, float* y) {
  const float d = f16_at(p);
  switch (grid) {
    case GgmlGrid::q8_0:  // d, int8 qs[32]
      for (int j = 0; j < 32; ++j)
        y[j] = static_cast<float>(static_cast<std::int8_t>(p[2 + j])) * d;
      break;
    case GgmlGrid::q4_0:  // d, qs[16]
      for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>((u8_at(p, 2 + j) & 15) - 8) * d;
        y[j + 16] = static_cast<float>((u8_at(p, 2 + j) >> 4) - 8) * d;
      }
      break;
    case GgmlGrid::q4_1:  // d, m, qs[16]
      for (int j = 0; j < 16; ++j) {
        y[j] = static_cast<float>(u8_at(p, 4 + j) & 15) * d + f16_at(p + 2);
        y[j + 16] = static_cast<float>(u8_at(p, 4 + j) >> 4) * d + f16_at(p + 2);
      }
      break;
    case GgmlGrid::q5_0:    // d, qh[4], qs[16]
    case GgmlGrid::q5_1: {  // d, m, qh[4], qs[16]
      const bool has_min = grid == GgmlGrid::q5_1;
      const std::byte* qh = p + (has_min ? 4 : 2);
      const std::uint32_t high = u32_at(qh);
      for (int j = 0; j < 16; ++j) {
        const int x0 = (u8_at(qh, 4 + j) & 15) | static_cast<int>(((high >> j) & 1) << 4);
        const int x1 = (u8_at(qh, 4 + j) >> 4) | static_cast<int>(((high >> (j + 16)) & 1) << 4);
        y[j] =
            has_min ? static_cast<float>(x0) * d + f16_at(p + 2) : static_cast<float>(x0 - 16) * d;
        y[j + 16] =
            has_min ? static_cast<float>(x1) * d + f16_at(p + 2) : static_cast<float>(x1 - 16) * d;
      }
      break;
    }
    case GgmlGrid::iq4_nl:  // d, qs[16]
      for (int j = 0; j < 16; ++j) {
        y[j] = d * static_cast<float>(kIq4nl[u8_at(p, 2 + j) & 15]);
        y[j + 16] = d * static_cast<float>(kIq4nl[u8_at(p, 2 + j) >> 4]);
      }
      break;
    case GgmlGrid::iq4_xs: {  // d, u16 scales_h, scales_l[4], qs[128]
      const int scales_h = u8_at(p, 2) | (u8_at(p, 3) << 8);
      for (int ib = 0; ib < 8; ++ib) {
        const int ls =
            ((u8_at(p, 4 + ib / 2) >> (4 * (ib % 2))) & 15) | (((scales_h >> (2 * ib)) & 3) << 4);
        const float dl = d * static_cast<float>(ls - 32);
        for (int j = 0; j < 16; ++j) {
          const int q = u8_at(p, 8 + 16 * ib + j);
          y[32 * ib + j] = dl * static_cast<float>(kIq4nl[q & 15]);
          y[32 * ib + 16 + j] = dl * static_cast<float>(kIq4nl[q >> 4]);
        }
      }
      break;
    }
    default:
      FAIL() << "not a legacy or IQ4 grid";
  }
}

MatrixRM decode_reference(GgmlGrid grid, std::int64_t rows, std::int64_t cols,
                          std::span<const std::byte> bytes) {
  const GgmlGridInfo& info = ggml_grid_info(grid);
  const std::size_t block_bytes = packed_size(grid, 1, info.block_size);
  MatrixRM W(rows, cols);
  for (std::int64_t b = 0; b < rows * cols / info.block_size; ++b) {
    decode_block(grid, bytes.data() + b * block_bytes, W.data() + b * info.block_size);
  }
  return W;
}

// ---- Comparison with llama-quantize's bytes ----

// Index of the first block whose bytes differ, or -1.
std::int64_t first_different_block(std::span<const std::byte> ours,
                                   std::span<const std::byte> theirs, std::size_t block_bytes) {
  if (ours.size() != theirs.size()) return 0;
  for (std::size_t at = 0; at < ours.size(); at += block_bytes) {
    if (std::memcmp(ours.data() + at, theirs.data() + at, block_bytes) != 0) {
      return static_cast<std::int64_t>(at / block_bytes);
    }
  }
  return -1;
}

struct Checked {
  int tensors = 0;          // tensors compared byte for byte
  int with_importance = 0;  // of which quantized with imatrix importance
};

// What llama-quantize read: the F16 model and the imatrix (or none).
struct Inputs {
  fs::path model = f16_model();
  std::optional<fs::path> imatrix;
};

// Quantizes every tensor of `quantized` (all expected in `grid`) from its F16
// source and compares the packed bytes; checks unpack/pack/dequantize on the way.
Checked expect_reproduced(const Inputs& inputs, const fs::path& quantized_path, GgmlGrid grid) {
  const auto f16 = gguf::File::open(inputs.model);
  const auto quantized = gguf::File::open(quantized_path);
  const std::optional<Imatrix> imatrix =
      inputs.imatrix ? std::optional(read_imatrix(*inputs.imatrix)) : std::nullopt;
  const std::size_t block_bytes = packed_size(grid, 1, ggml_grid_info(grid).block_size);
  Checked checked;
  for (const gguf::TensorInfo& t : quantized->tensors()) {
    if (t.ne.size() != 2) continue;  // norms stay F32
    SCOPED_TRACE(quantized_path.string() + ": " + t.name);
    EXPECT_TRUE(grid_of_type(t.type) == grid) << "type " << t.type;
    const MatrixRM W = f16_weights(f16->require_tensor(t.name));
    std::optional<std::vector<float>> importance;
    if (imatrix) importance = imatrix->importance(t.name);
    const GgmlBlocks q = ggml_quantize(grid, W, importance.value_or(std::vector<float>{}));
    EXPECT_EQ(first_different_block(pack(q), t.data, block_bytes), -1);

    const GgmlBlocks theirs = unpack(grid, t.rows(), t.ne[0], t.data);
    EXPECT_EQ(first_different_block(pack(theirs), t.data, block_bytes), -1) << "round trip";
    const MatrixRM expected = decode_reference(grid, t.rows(), t.ne[0], t.data);
    EXPECT_TRUE((dequantize(theirs).array() == expected.array()).all()) << "dequantize";
    ++checked.tensors;
    checked.with_importance += importance.has_value() ? 1 : 0;
  }
  return checked;
}

// llama-quantize --pure [--imatrix IM] MODEL OUT TYPE 2; returns OUT.
fs::path run_llama_quantize(const Inputs& inputs, GgmlGrid grid) {
  const std::string type(ggml_grid_info(grid).name);
  const fs::path dir = test::temp_dir(type + (inputs.imatrix ? "-imatrix" : ""));
  fs::path out = dir / "out.gguf";
  const fs::path log = dir / "llama-quantize.log";
  // A path streams double-quoted (std::quoted), which the shell accepts.
  std::ostringstream cmd;
  const fs::path tool = test::shared_dir() / "tools/llama.cpp/llama-quantize";
  cmd << tool << " --pure ";
  if (inputs.imatrix) cmd << "--imatrix " << *inputs.imatrix << ' ';
  cmd << inputs.model << ' ' << out << ' ' << type << ' ' << kThreads << " > " << log << " 2>&1";
  EXPECT_EQ(std::system(cmd.str().c_str()), 0) << cmd.str() << "\n" << test::read_bytes(log);
  return out;
}

// Runs llama-quantize for each grid and expects every 2-D tensor reproduced
// (and, with an imatrix, every imatrix entry used: token_embd and output.weight
// have none).
void expect_llama_quantize_reproduced(const Inputs& inputs, std::span<const GgmlGrid> grids) {
  const int expected = quantizable_tensors(*gguf::File::open(inputs.model));
  const std::size_t entries = inputs.imatrix ? read_imatrix(*inputs.imatrix).entries.size() : 0;
  for (const GgmlGrid grid : grids) {
    SCOPED_TRACE(ggml_grid_info(grid).name);
    const Checked checked = expect_reproduced(inputs, run_llama_quantize(inputs, grid), grid);
    EXPECT_EQ(checked.tensors, expected);
    EXPECT_EQ(checked.with_importance, static_cast<int>(entries));
  }
}

// ---- Blocks the tiny model lacks: zeros, constants, ties, underflow, ... ----

// Weight j of row `row` of an edge-case tensor: rows cycle through 16 patterns.
float edge_weight(std::int64_t row, std::int64_t j, std::mt19937& rng) {
  constexpr std::array<int, 16> kIq4Levels = {-127, -104, -83, -65, -49, -35, -22, -10,
                                              1,    13,   25,  38,  53,  69,  89,  113};
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const std::int64_t block = j / 32, k = j % 32;
  switch (row % 16) {
    case 0:
      return 0.0f;  // all-zero blocks
    case 1:
      return 0.5f;  // min == max
    case 2:
      return -0.25f;
    case 3:
      return k == block % 32 ? (block % 2 ? 0.1f : -0.1f) : 0.0f;  // one nonzero
    case 4:
      return normal(rng) * 1e-5f;  // f16 scales underflow to subnormals or 0
    case 5:
      return normal(rng) * 3e4f;  // large magnitudes
    case 6:
      return static_cast<float>(k % 17 - 8) / 16.0f;  // exact rounding ties
    case 7:
      return block % 2 ? 0.0f : normal(rng);  // zero sub-blocks in IQ4_XS
    case 8:
      return (k % 2 ? 0.03f : -0.03f);  // |max| ties between signs
    case 9:                             // midpoints between IQ4_NL levels
      return static_cast<float>(kIq4Levels[k % 15] + kIq4Levels[k % 15 + 1]) / 256.0f;
    case 10:
      return k == 5 ? 0.2f : 0.01f;
    case 11:
      return block % 8 == 3 ? normal(rng) : 0.0f;  // one live sub-block per 256
    case 12:
      return normal(rng) + 0.05f;  // all positive-leaning: min > 0
    case 13:
      return -std::fabs(normal(rng)) - 0.01f;  // all negative
    case 14:
      return static_cast<float>(k - 16) * 1e-3f;
    default:
      return normal(rng) * static_cast<float>(1 + block % 5);
  }
}

// tiny-f16.gguf with every blk.0 weight rewritten by edge_weight.
void write_edge_model(const fs::path& path) {
  const auto f16 = gguf::File::open(f16_model());
  std::mt19937 rng(7);
  std::vector<std::vector<std::byte>> data;
  for (const gguf::TensorInfo& t : f16->tensors()) {
    data.emplace_back(t.data.begin(), t.data.end());
    if (t.type != kF16Type || !t.name.starts_with("blk.0.")) continue;
    for (std::int64_t i = 0; i < t.numel(); ++i) {
      const std::uint16_t h = float_to_half(edge_weight(i / t.ne[0], i % t.ne[0], rng));
      std::memcpy(data.back().data() + 2 * i, &h, sizeof(h));
    }
  }
  std::vector<gguf::TensorToWrite> tensors;
  for (std::size_t i = 0; i < f16->tensors().size(); ++i) {
    const gguf::TensorInfo& t = f16->tensors()[i];
    tensors.push_back({.name = t.name, .ne = t.ne, .type = t.type, .data = data[i]});
  }
  gguf::write(path, f16->metadata(), tensors);
}

// The fixture imatrix with zero importance on every third column and on one
// whole block of the blk.0 weights, and no tokens at all for blk.1.attn_q.
void write_edge_imatrix(const fs::path& path) {
  constexpr std::size_t kZeroBlockBegin = 64, kZeroBlockEnd = 96;
  Imatrix imatrix = read_imatrix(imatrix_file());
  for (auto& [name, entry] : imatrix.entries) {
    if (!name.starts_with("blk.0.")) continue;
    for (std::size_t i = 0; i < entry.in_sum2.size(); i += 3) entry.in_sum2[i] = 0.0f;
    for (std::size_t i = kZeroBlockBegin; i < kZeroBlockEnd; ++i) entry.in_sum2[i] = 0.0f;
  }
  ImatrixEntry& unused = imatrix.entries.at("blk.1.attn_q.weight");
  std::fill(unused.counts.begin(), unused.counts.end(), 0.0f);
  write_imatrix(path, imatrix);
}

TEST(GgufLegacy, BlockSizesMatchGgufTypeTable) {
  for (const GgmlGridInfo& info : ggml_grids()) {
    const gguf::TensorTypeInfo* type = gguf::find_tensor_type(gguf_type_id(info.grid));
    ASSERT_NE(type, nullptr) << info.name;
    EXPECT_EQ(type->name, info.name);
    EXPECT_EQ(type->block_size, info.block_size);
    EXPECT_EQ(static_cast<std::size_t>(type->type_size),
              packed_size(info.grid, 1, info.block_size));
  }
}

TEST(GgufLegacy, ReproducesFixtureFilesQ8_0AndQ4_0) {
  const int expected = quantizable_tensors(*gguf::File::open(f16_model()));
  const Inputs inputs;
  EXPECT_EQ(expect_reproduced(inputs, test::fixture("gguf/tiny-Q8_0.gguf"), GgmlGrid::q8_0).tensors,
            expected);
  EXPECT_EQ(expect_reproduced(inputs, test::fixture("gguf/tiny-Q4_0.gguf"), GgmlGrid::q4_0).tensors,
            expected);
}

TEST(GgufLegacy, ReproducesLlamaQuantizeWithoutImatrix) {
  expect_llama_quantize_reproduced(
      Inputs{}, std::array{GgmlGrid::q4_1, GgmlGrid::q5_0, GgmlGrid::q5_1, GgmlGrid::iq4_nl,
                           GgmlGrid::iq4_xs});
}

TEST(GgufLegacy, ReproducesLlamaQuantizeWithImatrix) {
  expect_llama_quantize_reproduced(Inputs{.imatrix = imatrix_file()}, kOurGrids);
}

TEST(GgufLegacy, ReproducesLlamaQuantizeOnEdgeCaseBlocks) {
  const fs::path dir = test::temp_dir("edge-inputs");
  const Inputs plain{.model = dir / "edge-f16.gguf", .imatrix = std::nullopt};
  write_edge_model(plain.model);
  const Inputs weighted{.model = plain.model, .imatrix = dir / "edge-imatrix.gguf"};
  write_edge_imatrix(*weighted.imatrix);
  expect_llama_quantize_reproduced(plain, kOurGrids);
  expect_llama_quantize_reproduced(weighted, kOurGrids);
}

TEST(GgufLegacy, PacksHandMadeBlocksAsGgmlLaysThemOut) {
  // Q5_1: codes 0 ... 31 in order; the fifth bits (weights 16 ... 31) fill the
  // high half of qh, and byte j of qs holds codes j and j + 16 (same low bits).
  GgmlBlocks q5 = make_ggml_blocks(GgmlGrid::q5_1, 1, 32);
  q5.d[0] = 0x3800;
  q5.dmin[0] = 0xbc00;
  for (int j = 0; j < 32; ++j) q5.codes[j] = static_cast<std::int8_t>(j);
  const std::vector<std::byte> bytes = pack(q5);
  ASSERT_EQ(bytes.size(), 24u);
  const std::array<int, 8> head = {0x00, 0x38, 0x00, 0xbc, 0x00, 0x00, 0xff, 0xff};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(std::to_integer<int>(bytes[i]), head[i]) << i;
  for (int j = 0; j < 16; ++j) EXPECT_EQ(std::to_integer<int>(bytes[8 + j]), j | (j << 4)) << j;

  // IQ4_XS: sub-block scales {0, 63, 1, 62, 32, 17, 48, 5}: low nibbles pairwise
  // in scales_l, top two bits at 2 ib of scales_h (0x36cc).
  GgmlBlocks xs = make_ggml_blocks(GgmlGrid::iq4_xs, 1, 256);
  const std::array<int, 8> scales = {0, 63, 1, 62, 32, 17, 48, 5};
  for (int ib = 0; ib < 8; ++ib) xs.sub_scales[ib] = static_cast<std::int8_t>(scales[ib]);
  const std::vector<std::byte> xs_bytes = pack(xs);
  ASSERT_EQ(xs_bytes.size(), 136u);
  const std::array<int, 6> xs_head = {0xcc, 0x36, 0xf0, 0xe1, 0x10, 0x50};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(std::to_integer<int>(xs_bytes[2 + i]), xs_head[i]) << i;
  EXPECT_EQ(unpack(GgmlGrid::iq4_xs, 1, 256, xs_bytes).sub_scales, xs.sub_scales);
}

TEST(GgufLegacy, UnpackRejectsWrongShapes) {
  const std::vector<std::byte> bytes(packed_size(GgmlGrid::q4_0, 1, 64));  // two blocks
  EXPECT_NO_THROW(unpack(GgmlGrid::q4_0, 1, 64, bytes));
  EXPECT_THROW(unpack(GgmlGrid::q4_0, 2, 64, bytes), InputError);
  EXPECT_THROW(unpack(GgmlGrid::q4_0, 1, 48, bytes), InputError);
  EXPECT_THROW(unpack(GgmlGrid::iq4_xs, 1, 64, bytes), InputError);
}

}  // namespace
}  // namespace ptq
