// The bytes of ggml's legacy blocks (ggml-common.h: block_q8_0, block_q4_0,
// block_q4_1, block_q5_0, block_q5_1), and every grid's block size. Multi-byte
// fields are little-endian, as on the hosts llama.cpp writes them from.
#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <span>

#include "io/error.hpp"
#include "pipeline/formats/gguf_block_families.hpp"
#include "pipeline/formats/gguf_block_packing.hpp"

namespace ptq::gguf_detail {

namespace {

// The block structs, field for field as ggml-common.h declares them.
struct BlockQ8Zero {
  std::uint16_t d;                     // f16
  std::array<std::int8_t, kGroup> qs;  // codes -128 ... 127
};
using BlockQ4Zero = BlockNibbles;  // codes 0 ... 15; value (code - 8) * d
struct BlockQ4One {
  std::uint16_t d, m;
  Nibbles qs;  // value code * d + m
};
struct BlockQ5Zero {
  std::uint16_t d;
  std::array<std::uint8_t, 4> qh;  // u32: bit j is bit 4 of weight j's code
  Nibbles qs;                      // the low 4 bits; value (code - 16) * d
};
struct BlockQ5One {
  std::uint16_t d, m;
  std::array<std::uint8_t, 4> qh;
  Nibbles qs;  // value code * d + m
};
static_assert(sizeof(BlockQ8Zero) == 34);
static_assert(sizeof(BlockQ4One) == 20);
static_assert(sizeof(BlockQ5Zero) == 22);
static_assert(sizeof(BlockQ5One) == 24);

std::array<std::uint8_t, 4> pack_high_bits(GroupCodes c) {
  std::uint32_t qh = 0;
  for (int j = 0; j < kGroup; ++j) qh |= static_cast<std::uint32_t>((c[j] >> 4) & 1) << j;
  return std::bit_cast<std::array<std::uint8_t, 4>>(qh);
}

void add_high_bits(const std::array<std::uint8_t, 4>& bytes, GroupCodesOut c) {
  const auto qh = std::bit_cast<std::uint32_t>(bytes);
  for (int j = 0; j < kGroup; ++j) c[j] = static_cast<std::int8_t>(c[j] | (((qh >> j) & 1) << 4));
}

BlockQ8Zero encode_q8_0(const GgmlBlocks& q, std::int64_t b) {
  BlockQ8Zero blk{.d = q.d[b], .qs = {}};
  const GroupCodes c = group_codes(q, b);
  std::copy(c.begin(), c.end(), blk.qs.begin());
  return blk;
}
void decode_q8_0(const BlockQ8Zero& blk, GgmlBlocks& q, std::int64_t b) {
  q.d[b] = blk.d;
  std::copy(blk.qs.begin(), blk.qs.end(), group_codes(q, b).begin());
}

BlockQ4One encode_q4_1(const GgmlBlocks& q, std::int64_t b) {
  return {.d = q.d[b], .m = q.dmin[b], .qs = pack_nibbles(group_codes(q, b))};
}
void decode_q4_1(const BlockQ4One& blk, GgmlBlocks& q, std::int64_t b) {
  q.d[b] = blk.d;
  q.dmin[b] = blk.m;
  unpack_nibbles(blk.qs, group_codes(q, b));
}

BlockQ5Zero encode_q5_0(const GgmlBlocks& q, std::int64_t b) {
  const GroupCodes c = group_codes(q, b);
  return {.d = q.d[b], .qh = pack_high_bits(c), .qs = pack_nibbles(c)};
}
void decode_q5_0(const BlockQ5Zero& blk, GgmlBlocks& q, std::int64_t b) {
  q.d[b] = blk.d;
  unpack_nibbles(blk.qs, group_codes(q, b));
  add_high_bits(blk.qh, group_codes(q, b));
}

BlockQ5One encode_q5_1(const GgmlBlocks& q, std::int64_t b) {
  const GroupCodes c = group_codes(q, b);
  return {.d = q.d[b], .m = q.dmin[b], .qh = pack_high_bits(c), .qs = pack_nibbles(c)};
}
void decode_q5_1(const BlockQ5One& blk, GgmlBlocks& q, std::int64_t b) {
  q.d[b] = blk.d;
  q.dmin[b] = blk.m;
  unpack_nibbles(blk.qs, group_codes(q, b));
  add_high_bits(blk.qh, group_codes(q, b));
}

}  // namespace

std::size_t block_bytes(GgmlGrid grid) {
  // sizeof(block_*) in ggml-common.h, in GgmlGrid order; each packer checks its
  // struct against it.
  struct BlockBytes {
    GgmlGrid grid;
    std::size_t bytes;
  };
  constexpr std::array<BlockBytes, 12> kBlockBytes = {{
      {GgmlGrid::q8_0, 34},     // f16 d, 32 int8
      {GgmlGrid::q4_0, 18},     // f16 d, 16 bytes of nibbles
      {GgmlGrid::q4_1, 20},     // f16 d, m, 16 bytes of nibbles
      {GgmlGrid::q5_0, 22},     // f16 d, 4 bytes of high bits, 16 of nibbles
      {GgmlGrid::q5_1, 24},     // f16 d, m, 4 + 16
      {GgmlGrid::q2_k, 84},     // 16 scales, 64 qs, f16 d, dmin
      {GgmlGrid::q3_k, 110},    // 32 hmask, 64 qs, 12 scales, f16 d
      {GgmlGrid::q4_k, 144},    // f16 d, dmin, 12 scales, 128 qs
      {GgmlGrid::q5_k, 176},    // f16 d, dmin, 12 scales, 32 qh, 128 qs
      {GgmlGrid::q6_k, 210},    // 128 ql, 64 qh, 16 scales, f16 d
      {GgmlGrid::iq4_nl, 18},   // f16 d, 16 bytes of nibbles
      {GgmlGrid::iq4_xs, 136},  // f16 d, u16 scales_h, 4 scales_l, 128 qs
  }};
  const BlockBytes& entry = kBlockBytes.at(static_cast<std::size_t>(grid));
  PTQ_ASSERT(entry.grid == grid);
  return entry.bytes;
}

void pack_legacy(const GgmlBlocks& q, std::span<std::byte> out) {
  switch (q.grid) {
    case GgmlGrid::q8_0:
      pack_blocks<BlockQ8Zero>(q, out, encode_q8_0);
      break;
    case GgmlGrid::q4_0:
      pack_blocks<BlockQ4Zero>(q, out, encode_nibbles);
      break;
    case GgmlGrid::q4_1:
      pack_blocks<BlockQ4One>(q, out, encode_q4_1);
      break;
    case GgmlGrid::q5_0:
      pack_blocks<BlockQ5Zero>(q, out, encode_q5_0);
      break;
    case GgmlGrid::q5_1:
      pack_blocks<BlockQ5One>(q, out, encode_q5_1);
      break;
    default:
      PTQ_ASSERT(false && "not a legacy grid");
  }
}

void unpack_legacy(std::span<const std::byte> in, GgmlBlocks& q) {
  switch (q.grid) {
    case GgmlGrid::q8_0:
      unpack_blocks<BlockQ8Zero>(in, q, decode_q8_0);
      break;
    case GgmlGrid::q4_0:
      unpack_blocks<BlockQ4Zero>(in, q, decode_nibbles);
      break;
    case GgmlGrid::q4_1:
      unpack_blocks<BlockQ4One>(in, q, decode_q4_1);
      break;
    case GgmlGrid::q5_0:
      unpack_blocks<BlockQ5Zero>(in, q, decode_q5_0);
      break;
    case GgmlGrid::q5_1:
      unpack_blocks<BlockQ5One>(in, q, decode_q5_1);
      break;
    default:
      PTQ_ASSERT(false && "not a legacy grid");
  }
}

}  // namespace ptq::gguf_detail
