#pragma once
// Internal to the format library: what the 32-weight block families (legacy
// and IQ4) share. Their blocks store 32 codes in the same nibble layout, and
// every block is copied through its ggml-common.h struct in the same way.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

#include "algorithms/ggml_grid.hpp"
#include "io/error.hpp"
#include "pipeline/formats/gguf_block_families.hpp"

namespace ptq::gguf_detail {

static_assert(std::endian::native == std::endian::little, "blocks are copied as little-endian");

constexpr int kGroup = 32;  // QK4_0 = QK4_1 = QK5_0 = QK5_1 = QK8_0 = QK4_NL, IQ4_XS's sub-block
constexpr int kHalfGroup = kGroup / 2;

using GroupCodes = std::span<const std::int8_t, kGroup>;
using GroupCodesOut = std::span<std::int8_t, kGroup>;

// Codes g * 32 ... g * 32 + 31 of q.
inline GroupCodes group_codes(const GgmlBlocks& q, std::int64_t g) {
  return std::span(q.codes).subspan(g * kGroup).first<kGroup>();
}
inline GroupCodesOut group_codes(GgmlBlocks& q, std::int64_t g) {
  return std::span(q.codes).subspan(g * kGroup).first<kGroup>();
}

// Byte j holds code j (low 4 bits) and code j + 16 (high 4 bits).
using Nibbles = std::array<std::uint8_t, kHalfGroup>;

inline Nibbles pack_nibbles(GroupCodes c) {
  Nibbles qs;
  for (int j = 0; j < kHalfGroup; ++j) {
    qs[j] = static_cast<std::uint8_t>((c[j] & 0x0f) | ((c[j + kHalfGroup] & 0x0f) << 4));
  }
  return qs;
}

inline void unpack_nibbles(const Nibbles& qs, GroupCodesOut c) {
  for (int j = 0; j < kHalfGroup; ++j) {
    c[j] = static_cast<std::int8_t>(qs[j] & 0x0f);
    c[j + kHalfGroup] = static_cast<std::int8_t>(qs[j] >> 4);
  }
}

// block_q4_0 and block_iq4_nl: an f16 scale and the nibbles of 32 codes (the
// codes mean different values, the bytes are laid out alike).
struct BlockNibbles {
  std::uint16_t d;  // f16
  Nibbles qs;
};
static_assert(sizeof(BlockNibbles) == 18);

inline BlockNibbles encode_nibbles(const GgmlBlocks& q, std::int64_t b) {
  return {.d = q.d[b], .qs = pack_nibbles(group_codes(q, b))};
}
inline void decode_nibbles(const BlockNibbles& blk, GgmlBlocks& q, std::int64_t b) {
  q.d[b] = blk.d;
  unpack_nibbles(blk.qs, group_codes(q, b));
}

// Copies every block through its struct: encode(q, b) -> Block.
template <typename Block, typename Encode>
void pack_blocks(const GgmlBlocks& q, std::span<std::byte> out, Encode encode) {
  PTQ_ASSERT(sizeof(Block) == block_bytes(q.grid));
  PTQ_ASSERT(out.size() == static_cast<std::size_t>(q.blocks()) * sizeof(Block));
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, q.blocks()), [&](const auto& range) {
    for (std::int64_t b = range.begin(); b != range.end(); ++b) {
      const Block blk = encode(q, b);
      std::memcpy(out.data() + b * sizeof(Block), &blk, sizeof(Block));
    }
  });
}

// decode(Block, q, b) fills block b of q.
template <typename Block, typename Decode>
void unpack_blocks(std::span<const std::byte> in, GgmlBlocks& q, Decode decode) {
  PTQ_ASSERT(sizeof(Block) == block_bytes(q.grid));
  PTQ_ASSERT(in.size() == static_cast<std::size_t>(q.blocks()) * sizeof(Block));
  tbb::parallel_for(tbb::blocked_range<std::int64_t>(0, q.blocks()), [&](const auto& range) {
    for (std::int64_t b = range.begin(); b != range.end(); ++b) {
      Block blk;
      std::memcpy(&blk, in.data() + b * sizeof(Block), sizeof(Block));
      decode(blk, q, b);
    }
  });
}

}  // namespace ptq::gguf_detail
