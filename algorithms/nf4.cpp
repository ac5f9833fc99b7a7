#include "algorithms/nf4.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "algorithms/rtn.hpp"
#include "io/error.hpp"

namespace ptq {

namespace {

// Blockwise absmax quantization of v against `table`: codes [v.size()] and one
// float absmax per block of `block` values. A zero block keeps scale 0 and maps to
// the table's 0.
struct Blockwise {
  std::vector<std::uint8_t> codes;
  std::vector<float> absmax;
};

Blockwise quantize_blockwise(std::span<const float> v, int block, std::span<const float> table) {
  const std::size_t n_blocks = (v.size() + block - 1) / block;
  Blockwise out{std::vector<std::uint8_t>(v.size()), std::vector<float>(n_blocks)};
  const std::uint8_t zero_code = nearest_index(0.0f, table);
  tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n_blocks), [&](const auto& range) {
    for (std::size_t b = range.begin(); b < range.end(); ++b) {
      const std::size_t begin = b * block, end = std::min(v.size(), begin + block);
      float a = 0.0f;
      for (std::size_t i = begin; i < end; ++i) a = std::max(a, std::fabs(v[i]));
      out.absmax[b] = a;
      for (std::size_t i = begin; i < end; ++i) out.codes[i] = a > 0.0f ? nearest_index(v[i] / a, table) : zero_code;
    }
  });
  return out;
}

std::array<float, 256> make_dynamic_map() {
  // Exponent i = 0..6 covers magnitudes 10^(i-6) * (0.1..1) with 2^i fraction
  // steps: the means of linspace(0.1, 1, 2^i + 1), both signs; plus 0 and 1.
  std::vector<float> v;
  for (int i = 0; i < 7; ++i) {
    const int n = (1 << i) + 1;
    const float step = 0.9f / static_cast<float>(n - 1);
    const auto scale = static_cast<float>(std::pow(10.0, i - 6));
    for (int k = 0; k + 1 < n; ++k) {
      const float mean = (0.1f + step * static_cast<float>(k) + 0.1f + step * static_cast<float>(k + 1)) / 2.0f;
      v.push_back(scale * mean);
      v.push_back(-scale * mean);
    }
  }
  v.push_back(0.0f);
  v.push_back(1.0f);
  PTQ_ASSERT(v.size() == 256);
  std::sort(v.begin(), v.end());
  std::array<float, 256> out{};
  std::copy(v.begin(), v.end(), out.begin());
  return out;
}

}  // namespace

void Nf4Config::validate() const {
  if (block_size < 1) throw input_error("nf4.block", "a block size >= 1", std::to_string(block_size));
  if (absmax_block_size < 1)
    throw input_error("nf4.absmax_block", "a block size >= 1", std::to_string(absmax_block_size));
}

const std::array<float, 16>& nf4_values() {
  static const std::array<float, 16> values = {
      -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
      -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
      0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
      0.7229568362236023f, 1.0f};
  return values;
}

const std::array<float, 256>& dynamic_map() {
  static const std::array<float, 256> map = make_dynamic_map();
  return map;
}

std::uint8_t nearest_index(float x, std::span<const float> table) {
  PTQ_ASSERT(!table.empty() && table.size() <= 256);
  const auto hi = std::lower_bound(table.begin(), table.end(), x);
  if (hi == table.begin()) return 0;
  if (hi == table.end()) return static_cast<std::uint8_t>(table.size() - 1);
  const auto lo = hi - 1;
  const auto pick = (x - *lo) <= (*hi - x) ? lo : hi;
  return static_cast<std::uint8_t>(pick - table.begin());
}

Nf4Matrix nf4_quantize(const MatrixRM& W, const Nf4Config& config) {
  config.validate();
  require_weights(W, "nf4_quantize: W");
  Nf4Matrix out;
  out.rows = static_cast<int>(W.rows());
  out.cols = static_cast<int>(W.cols());
  out.config = config;
  Blockwise weights = quantize_blockwise(std::span(W.data(), W.size()), config.block_size, nf4_values());
  out.codes = std::move(weights.codes);
  // Double quantization of the absmax (float sums in double: the mean's order is fixed).
  double sum = 0.0;
  for (float a : weights.absmax) sum += a;
  out.absmax_offset = static_cast<float>(sum / static_cast<double>(weights.absmax.size()));
  std::vector<float> centred(weights.absmax.size());
  for (std::size_t b = 0; b < centred.size(); ++b) centred[b] = weights.absmax[b] - out.absmax_offset;
  Blockwise second = quantize_blockwise(centred, config.absmax_block_size, dynamic_map());
  out.absmax_codes = std::move(second.codes);
  out.absmax_scales = std::move(second.absmax);
  return out;
}

std::vector<float> Nf4Matrix::absmax() const {
  std::vector<float> a(absmax_codes.size());
  for (std::size_t b = 0; b < a.size(); ++b)
    a[b] =
        dynamic_map()[absmax_codes[b]] *
            absmax_scales[(static_cast<std::size_t>(absmax_phase) + b) / config.absmax_block_size] +
        absmax_offset;
  return a;
}

MatrixRM Nf4Matrix::dequantize() const {
  const std::vector<float> a = absmax();
  MatrixRM w(rows, cols);
  for (Eigen::Index i = 0; i < w.size(); ++i)
    w.data()[i] = nf4_values()[codes[i]] * a[static_cast<std::size_t>(i) / config.block_size];
  return w;
}

namespace {

void require_part(bool ok, const std::string& where, std::size_t part,
                  const std::string& expected) {
  if (!ok)
    throw input_error(where + " part " + std::to_string(part), expected, "a part that does not");
}

}  // namespace

Nf4Matrix nf4_slice_rows(const Nf4Matrix& m, int first, int rows, const std::string& where) {
  const std::int64_t cols = m.cols, block = m.config.block_size;
  if (first < 0 || rows < 1 || first + rows > m.rows)
    throw input_error(where, "at least " + std::to_string(first + rows) + " rows",
                      std::to_string(m.rows));
  const bool ends = first + rows == m.rows || (first + rows) * cols % block == 0;
  if (first * cols % block != 0 || !ends)
    throw input_error(where, "rows that start and end on NF4 blocks of " + std::to_string(block),
                      "rows [" + std::to_string(first) + ", " + std::to_string(first + rows) +
                          ") of " + std::to_string(cols) + " columns");
  const std::int64_t b0 = first * cols / block;
  const std::int64_t blocks = (static_cast<std::int64_t>(rows) * cols + block - 1) / block;
  const std::int64_t group = m.config.absmax_block_size, at = m.absmax_phase + b0;
  Nf4Matrix out;
  out.rows = rows;
  out.cols = m.cols;
  out.config = m.config;
  out.codes.assign(m.codes.begin() + first * cols, m.codes.begin() + (first + rows) * cols);
  out.absmax_codes.assign(m.absmax_codes.begin() + b0, m.absmax_codes.begin() + b0 + blocks);
  out.absmax_scales.assign(m.absmax_scales.begin() + at / group,
                           m.absmax_scales.begin() + (at + blocks - 1) / group + 1);
  out.absmax_offset = m.absmax_offset;
  out.absmax_phase = static_cast<int>(at % group);
  return out;
}

Nf4Matrix nf4_stack_rows(std::span<const Nf4Matrix> parts, const std::string& where) {
  PTQ_ASSERT(!parts.empty());
  Nf4Matrix out = parts.front();
  const std::int64_t block = out.config.block_size, group = out.config.absmax_block_size;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const Nf4Matrix& p = parts[i];
    require_part(p.cols == out.cols && p.config.block_size == block &&
                     p.config.absmax_block_size == group && p.absmax_offset == out.absmax_offset,
                 where, i, "part 0's columns, NF4 blocks and absmax offset");
    require_part(static_cast<std::int64_t>(out.rows) * out.cols % block == 0, where, i - 1,
                 "rows that end on an NF4 block");
    const std::int64_t at = out.absmax_phase + out.blocks();
    require_part(p.absmax_phase == at % group, where, i,
                 "the absmax position after part " + std::to_string(i - 1));
    const bool shared = at % group != 0;  // the previous part's last scale serves it too
    require_part(!shared || (!p.absmax_scales.empty() &&
                             p.absmax_scales.front() == out.absmax_scales.back()),
                 where, i, "the second-level scale it shares with part " + std::to_string(i - 1));
    out.rows += p.rows;
    out.codes.insert(out.codes.end(), p.codes.begin(), p.codes.end());
    out.absmax_codes.insert(out.absmax_codes.end(), p.absmax_codes.begin(), p.absmax_codes.end());
    out.absmax_scales.insert(out.absmax_scales.end(), p.absmax_scales.begin() + (shared ? 1 : 0),
                             p.absmax_scales.end());
  }
  return out;
}

}  // namespace ptq
