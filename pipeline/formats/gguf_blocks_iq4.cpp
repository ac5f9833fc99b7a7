// The bytes of ggml's non-linear 4-bit blocks (ggml-common.h: block_iq4_nl,
// block_iq4_xs). Multi-byte fields are little-endian.
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <span>

#include "io/error.hpp"
#include "pipeline/formats/gguf_block_families.hpp"

namespace ptq::gguf_detail {

static_assert(std::endian::native == std::endian::little, "blocks are copied as little-endian");

namespace {

constexpr int kSub = 32;  // QK4_NL, and IQ4_XS's sub-block
constexpr int kHalf = kSub / 2;
constexpr int kXsSubs = 8;  // QK_K / 32

// Per 32 weights, byte j holds weight j (low 4 bits) and j + 16 (high 4 bits);
// each code indexes kvalues_iq4nl.
using Nibbles = std::array<std::uint8_t, kHalf>;

struct BlockIq4Nl {
  std::uint16_t d;  // f16
  Nibbles qs;
};
struct BlockIq4Xs {
  std::uint16_t d;         // f16
  std::uint16_t scales_h;  // bits 2 ib, 2 ib + 1: the top 2 bits of sub-block ib's 6-bit scale
  std::array<std::uint8_t, kXsSubs / 2>
      scales_l;  // the low 4 bits; byte ib / 2, high nibble if ib odd
  std::array<Nibbles, kXsSubs> qs;
};
static_assert(sizeof(BlockIq4Nl) == 18);
static_assert(sizeof(BlockIq4Xs) == 136);

Nibbles pack_nibbles(std::span<const std::int8_t> c) {
  Nibbles qs;
  for (int j = 0; j < kHalf; ++j) {
    qs[j] = static_cast<std::uint8_t>((c[j] & 0x0f) | ((c[j + kHalf] & 0x0f) << 4));
  }
  return qs;
}

void unpack_nibbles(const Nibbles& qs, std::span<std::int8_t> c) {
  for (int j = 0; j < kHalf; ++j) {
    c[j] = static_cast<std::int8_t>(qs[j] & 0x0f);
    c[j + kHalf] = static_cast<std::int8_t>(qs[j] >> 4);
  }
}

BlockIq4Nl encode_nl(const GgmlBlocks& q, std::int64_t b) {
  return {.d = q.d[b], .qs = pack_nibbles(std::span(q.codes).subspan(b * kSub, kSub))};
}

void decode_nl(const BlockIq4Nl& blk, GgmlBlocks& q, std::int64_t b) {
  q.d[b] = blk.d;
  unpack_nibbles(blk.qs, std::span(q.codes).subspan(b * kSub, kSub));
}

BlockIq4Xs encode_xs(const GgmlBlocks& q, std::int64_t b) {
  BlockIq4Xs blk{.d = q.d[b], .scales_h = 0, .scales_l = {}, .qs = {}};
  for (int ib = 0; ib < kXsSubs; ++ib) {
    const auto scale = static_cast<std::uint8_t>(q.sub_scales[b * kXsSubs + ib]);
    blk.scales_l[ib / 2] |= static_cast<std::uint8_t>((scale & 0x0f) << (4 * (ib % 2)));
    blk.scales_h |= static_cast<std::uint16_t>((scale >> 4) << (2 * ib));
    blk.qs[ib] = pack_nibbles(std::span(q.codes).subspan((b * kXsSubs + ib) * kSub, kSub));
  }
  return blk;
}

void decode_xs(const BlockIq4Xs& blk, GgmlBlocks& q, std::int64_t b) {
  q.d[b] = blk.d;
  for (int ib = 0; ib < kXsSubs; ++ib) {
    const int low = (blk.scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f;
    const int high = (blk.scales_h >> (2 * ib)) & 0x03;
    q.sub_scales[b * kXsSubs + ib] = static_cast<std::int8_t>(low | (high << 4));
    unpack_nibbles(blk.qs[ib], std::span(q.codes).subspan((b * kXsSubs + ib) * kSub, kSub));
  }
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

}  // namespace

void pack_iq4(const GgmlBlocks& q, std::span<std::byte> out) {
  if (q.grid == GgmlGrid::iq4_nl) {
    pack_blocks<BlockIq4Nl>(q, out, encode_nl);
  } else {
    PTQ_ASSERT(q.grid == GgmlGrid::iq4_xs);
    pack_blocks<BlockIq4Xs>(q, out, encode_xs);
  }
}

void unpack_iq4(std::span<const std::byte> in, GgmlBlocks& q) {
  if (q.grid == GgmlGrid::iq4_nl) {
    unpack_blocks<BlockIq4Nl>(in, q, decode_nl);
  } else {
    PTQ_ASSERT(q.grid == GgmlGrid::iq4_xs);
    unpack_blocks<BlockIq4Xs>(in, q, decode_xs);
  }
}

}  // namespace ptq::gguf_detail
