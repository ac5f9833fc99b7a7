#include "pipeline/formats/gguf_blocks.hpp"

#include <string>

#include "io/error.hpp"
#include "pipeline/formats/gguf_block_families.hpp"

namespace ptq {

namespace {

enum class Family { legacy, kquant, iq4 };

Family family_of(GgmlGrid grid) {
  const GgmlGridInfo& info = ggml_grid_info(grid);
  if (grid == GgmlGrid::iq4_nl || grid == GgmlGrid::iq4_xs) return Family::iq4;
  return info.block_size == 256 ? Family::kquant : Family::legacy;
}

}  // namespace

std::uint32_t gguf_type_id(GgmlGrid grid) {
  switch (grid) {
    case GgmlGrid::q4_0: return 2;
    case GgmlGrid::q4_1: return 3;
    case GgmlGrid::q5_0: return 6;
    case GgmlGrid::q5_1: return 7;
    case GgmlGrid::q8_0: return 8;
    case GgmlGrid::q2_k: return 10;
    case GgmlGrid::q3_k: return 11;
    case GgmlGrid::q4_k: return 12;
    case GgmlGrid::q5_k: return 13;
    case GgmlGrid::q6_k: return 14;
    case GgmlGrid::iq4_nl: return 20;
    case GgmlGrid::iq4_xs: return 23;
  }
  PTQ_ASSERT(false);
}

std::optional<GgmlGrid> gguf_grid(std::uint32_t type) {
  for (const GgmlGridInfo& info : ggml_grids())
    if (gguf_type_id(info.grid) == type) return info.grid;
  return std::nullopt;
}

bool gguf_float_type(std::uint32_t type) {
  constexpr std::uint32_t kF32 = 0, kF16 = 1, kBf16 = 30;  // ggml.h enum ggml_type
  return type == kF32 || type == kF16 || type == kBf16;
}

std::size_t packed_size(GgmlGrid grid, std::int64_t rows, std::int64_t cols) {
  const auto blocks = static_cast<std::size_t>(rows * cols / ggml_grid_info(grid).block_size);
  return blocks * gguf_detail::block_bytes(grid);
}

std::vector<std::byte> pack(const GgmlBlocks& q) {
  std::vector<std::byte> out(packed_size(q.grid, q.rows, q.cols));
  switch (family_of(q.grid)) {
    case Family::legacy: gguf_detail::pack_legacy(q, out); break;
    case Family::kquant: gguf_detail::pack_kquant(q, out); break;
    case Family::iq4: gguf_detail::pack_iq4(q, out); break;
  }
  return out;
}

GgmlBlocks unpack(GgmlGrid grid, std::int64_t rows, std::int64_t cols,
                  std::span<const std::byte> bytes) {
  const GgmlGridInfo& info = ggml_grid_info(grid);
  const std::string where = std::string(info.name) + " tensor data [" + std::to_string(rows) +
                            ", " + std::to_string(cols) + "]";
  if (rows < 0 || cols <= 0 || cols % info.block_size != 0) {
    throw input_error(where, "a row length that is a multiple of " +
                                 std::to_string(info.block_size),
                      std::to_string(cols));
  }
  if (std::int64_t weights = 0; __builtin_mul_overflow(rows, cols, &weights))
    throw input_error(where, "rows x cols that fit in 64 bits", "more");
  const std::size_t expected = packed_size(grid, rows, cols);
  if (bytes.size() != expected) {
    throw input_error(where, std::to_string(expected) + " bytes", std::to_string(bytes.size()));
  }
  GgmlBlocks q = make_ggml_blocks(grid, rows, cols);
  switch (family_of(grid)) {
    case Family::legacy: gguf_detail::unpack_legacy(bytes, q); break;
    case Family::kquant: gguf_detail::unpack_kquant(bytes, q); break;
    case Family::iq4: gguf_detail::unpack_iq4(bytes, q); break;
  }
  return q;
}

}  // namespace ptq
