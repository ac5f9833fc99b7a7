// The bytes of ggml's non-linear 4-bit blocks (ggml-common.h: block_iq4_nl,
// block_iq4_xs). Multi-byte fields are little-endian.
#include <array>
#include <cstdint>
#include <span>

#include "io/error.hpp"
#include "pipeline/formats/gguf_block_families.hpp"
#include "pipeline/formats/gguf_block_packing.hpp"

namespace ptq::gguf_detail {

namespace {

constexpr int kXsSubs = 8;  // QK_K / 32; each sub-block is one 32-code group

using BlockIq4Nl = BlockNibbles;  // value kvalues_iq4nl[code] * d
struct BlockIq4Xs {
  std::uint16_t d;         // f16
  std::uint16_t scales_h;  // bits 2 ib, 2 ib + 1: the top 2 bits of sub-block ib's 6-bit scale
  std::array<std::uint8_t, kXsSubs / 2>
      scales_l;  // the low 4 bits; byte ib / 2, high nibble if ib odd
  std::array<Nibbles, kXsSubs> qs;
};
static_assert(sizeof(BlockIq4Xs) == 136);

BlockIq4Xs encode_xs(const GgmlBlocks& q, std::int64_t b) {
  BlockIq4Xs blk{.d = q.d[b], .scales_h = 0, .scales_l = {}, .qs = {}};
  for (int ib = 0; ib < kXsSubs; ++ib) {
    const auto scale = static_cast<std::uint8_t>(q.sub_scales[b * kXsSubs + ib]);
    blk.scales_l[ib / 2] |= static_cast<std::uint8_t>((scale & 0x0f) << (4 * (ib % 2)));
    blk.scales_h |= static_cast<std::uint16_t>((scale >> 4) << (2 * ib));
    blk.qs[ib] = pack_nibbles(group_codes(q, b * kXsSubs + ib));
  }
  return blk;
}

void decode_xs(const BlockIq4Xs& blk, GgmlBlocks& q, std::int64_t b) {
  q.d[b] = blk.d;
  for (int ib = 0; ib < kXsSubs; ++ib) {
    const int low = (blk.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f;
    const int high = (blk.scales_h >> (2 * ib)) & 0x03;
    q.sub_scales[b * kXsSubs + ib] = static_cast<std::int8_t>(low | (high << 4));
    unpack_nibbles(blk.qs[ib], group_codes(q, b * kXsSubs + ib));
  }
}

}  // namespace

void pack_iq4(const GgmlBlocks& q, std::span<std::byte> out) {
  if (q.grid == GgmlGrid::iq4_nl) {
    pack_blocks<BlockIq4Nl>(q, out, encode_nibbles);
  } else {
    PTQ_ASSERT(q.grid == GgmlGrid::iq4_xs);
    pack_blocks<BlockIq4Xs>(q, out, encode_xs);
  }
}

void unpack_iq4(std::span<const std::byte> in, GgmlBlocks& q) {
  if (q.grid == GgmlGrid::iq4_nl) {
    unpack_blocks<BlockIq4Nl>(in, q, decode_nibbles);
  } else {
    PTQ_ASSERT(q.grid == GgmlGrid::iq4_xs);
    unpack_blocks<BlockIq4Xs>(in, q, decode_xs);
  }
}

}  // namespace ptq::gguf_detail
