// The bytes of ggml's k-quant super-blocks (ggml-common.h block_q2_K ...
// block_q6_K) and the bit layouts quantize_row_qN_K_ref writes into them.
#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "io/error.hpp"
#include "pipeline/formats/gguf_block_families.hpp"

namespace ptq::gguf_detail {

namespace {

static_assert(std::endian::native == std::endian::little, "ggml blocks are little-endian");

constexpr int kSuper = 256;      // QK_K
constexpr int kPlane = 32;       // weights (and bytes) per bit plane row: codes l, l+32, l+64, l+96
constexpr int kScaleBytes = 12;  // K_SCALE_SIZE: Q3_K's and Q4_K/Q5_K's packed 6-bit scales

struct BlockQ2K {
  std::uint8_t scales[16];  // low nibble: sub-scale, high nibble: sub-min
  std::uint8_t qs[64];      // 2-bit codes, four bit planes per 128 weights
  std::uint16_t d, dmin;    // float16
};
static_assert(sizeof(BlockQ2K) == 84);

struct BlockQ3K {
  std::uint8_t hmask[32];   // bit j / 32 of byte j % 32: weight j's code is >= 4
  std::uint8_t qs[64];      // low 2 bits of the codes, as Q2_K
  std::uint8_t scales[12];  // 16 6-bit sub-scales (see pack_q3_scales)
  std::uint16_t d;
};
static_assert(sizeof(BlockQ3K) == 110);

struct BlockQ4K {
  std::uint16_t d, dmin;
  std::uint8_t scales[12];  // 8 6-bit sub-scales and 8 sub-mins (get_scale_min_k4)
  std::uint8_t qs[128];     // 4-bit codes: byte l of chunk c holds weights 64c+l and 64c+l+32
};
static_assert(sizeof(BlockQ4K) == 144);

struct BlockQ5K {
  std::uint16_t d, dmin;
  std::uint8_t scales[12];  // as Q4_K
  std::uint8_t qh[32];      // bits 2c, 2c+1 of byte l: 5th bit of weights 64c+l, 64c+l+32
  std::uint8_t qs[128];     // low 4 bits, as Q4_K
};
static_assert(sizeof(BlockQ5K) == 176);

struct BlockQ6K {
  std::uint8_t
      ql[128];  // low 4 bits: per 128 weights, bytes l and l+32 hold (l, l+64), (l+32, l+96)
  std::uint8_t qh[64];     // high 2 bits: four bit-plane pairs per 128 weights
  std::int8_t scales[16];  // signed 8-bit sub-scales
  std::uint16_t d;
};
static_assert(sizeof(BlockQ6K) == 210);

// ---- shared bit layouts ------------------------------------------------------

// Four 2-bit planes per 128 weights: byte l of half h holds weights 128h + l +
// 32k in bits 2k, 2k+1 (the low 2 bits of each code).
void pack_2bit(const std::int8_t* codes, std::uint8_t* qs) {
  for (int h = 0; h < kSuper / (4 * kPlane); ++h) {
    for (int l = 0; l < kPlane; ++l) {
      int byte = 0;
      for (int k = 0; k < 4; ++k) byte |= (codes[4 * kPlane * h + kPlane * k + l] & 3) << (2 * k);
      qs[kPlane * h + l] = static_cast<std::uint8_t>(byte);
    }
  }
}

void unpack_2bit(const std::uint8_t* qs, std::int8_t* codes) {
  for (int h = 0; h < kSuper / (4 * kPlane); ++h) {
    for (int l = 0; l < kPlane; ++l) {
      for (int k = 0; k < 4; ++k) {
        codes[4 * kPlane * h + kPlane * k + l] =
            static_cast<std::int8_t>((qs[kPlane * h + l] >> (2 * k)) & 3);
      }
    }
  }
}

// Two nibble planes per 64 weights: byte l of chunk c holds weights 64c + l
// (low nibble) and 64c + l + 32 (high nibble), the low 4 bits of each code.
void pack_nibbles(const std::int8_t* codes, std::uint8_t* qs) {
  for (int c = 0; c < kSuper / (2 * kPlane); ++c) {
    for (int l = 0; l < kPlane; ++l) {
      const int lo = codes[2 * kPlane * c + l] & 0xF, hi = codes[2 * kPlane * c + l + kPlane] & 0xF;
      qs[kPlane * c + l] = static_cast<std::uint8_t>(lo | (hi << 4));
    }
  }
}

void unpack_nibbles(const std::uint8_t* qs, std::int8_t* codes) {
  for (int c = 0; c < kSuper / (2 * kPlane); ++c) {
    for (int l = 0; l < kPlane; ++l) {
      codes[2 * kPlane * c + l] = static_cast<std::int8_t>(qs[kPlane * c + l] & 0xF);
      codes[2 * kPlane * c + l + kPlane] = static_cast<std::int8_t>(qs[kPlane * c + l] >> 4);
    }
  }
}

// Q4_K/Q5_K: sub-blocks 0-3 keep scale and min in bytes j and j+4 (6 bits);
// sub-blocks 4-7 keep their low nibbles in byte j+4 and their top 2 bits in the
// spare top bits of bytes j-4 (scale) and j (min). get_scale_min_k4 reads it.
void pack_scale_min_k4(const std::int8_t* scales, const std::int8_t* mins, std::uint8_t* out) {
  constexpr int kHalf = 4;
  for (int j = 0; j < kHalf; ++j) {
    out[j] = static_cast<std::uint8_t>(scales[j] | ((scales[j + kHalf] >> 4) << 6));
    out[j + kHalf] = static_cast<std::uint8_t>(mins[j] | ((mins[j + kHalf] >> 4) << 6));
    out[j + 2 * kHalf] =
        static_cast<std::uint8_t>((scales[j + kHalf] & 0xF) | ((mins[j + kHalf] & 0xF) << 4));
  }
}

void unpack_scale_min_k4(const std::uint8_t* in, std::int8_t* scales, std::int8_t* mins) {
  constexpr int kHalf = 4;
  for (int j = 0; j < kHalf; ++j) {
    scales[j] = static_cast<std::int8_t>(in[j] & 63);
    mins[j] = static_cast<std::int8_t>(in[j + kHalf] & 63);
    scales[j + kHalf] = static_cast<std::int8_t>((in[j + 2 * kHalf] & 0xF) | ((in[j] >> 6) << 4));
    mins[j + kHalf] =
        static_cast<std::int8_t>((in[j + 2 * kHalf] >> 4) | ((in[j + kHalf] >> 6) << 4));
  }
}

// Q3_K: the low nibbles of sub-scales 0-7 and 8-15 share bytes 0-7 (low, high
// nibble); the top 2 bits of sub-scale j sit in byte 8 + j % 4 at bit 2 * (j / 4).
void pack_q3_scales(const std::int8_t* scales, std::uint8_t* out) {
  constexpr int kLowBytes = 8;
  for (int j = 0; j < kLowBytes; ++j) {
    out[j] = static_cast<std::uint8_t>((scales[j] & 0xF) | ((scales[j + kLowBytes] & 0xF) << 4));
  }
  for (int k = 0; k < kScaleBytes - kLowBytes; ++k) {
    int byte = 0;
    for (int g = 0; g < 4; ++g) byte |= ((scales[4 * g + k] >> 4) & 3) << (2 * g);
    out[kLowBytes + k] = static_cast<std::uint8_t>(byte);
  }
}

void unpack_q3_scales(const std::uint8_t* in, std::int8_t* scales) {
  constexpr int kLowBytes = 8;
  for (int j = 0; j < 16; ++j) {
    const int low = j < kLowBytes ? in[j] & 0xF : in[j - kLowBytes] >> 4;
    const int high = (in[kLowBytes + j % 4] >> (2 * (j / 4))) & 3;
    scales[j] = static_cast<std::int8_t>(low | (high << 4));
  }
}

// ---- one block of each type ------------------------------------------------------

// Where block b's values live in a GgmlBlocks: BlockIn to pack, BlockOut to unpack.
template <class Int8, class Uint16>
struct BlockView {
  Int8* codes;
  Int8* sub_scales;
  Int8* sub_mins;  // nullptr without mins
  Uint16* d;
  Uint16* dmin;  // nullptr without mins
};
using BlockIn = BlockView<const std::int8_t, const std::uint16_t>;
using BlockOut = BlockView<std::int8_t, std::uint16_t>;

template <class Blocks>  // GgmlBlocks or const GgmlBlocks
auto block_view(Blocks& q, std::int64_t b) {
  const GgmlGridInfo& info = ggml_grid_info(q.grid);
  const std::int64_t sub = b * info.sub_blocks;
  using View = BlockView<std::remove_pointer_t<decltype(q.codes.data())>,
                         std::remove_pointer_t<decltype(q.d.data())>>;
  return View{.codes = q.codes.data() + b * kSuper,
              .sub_scales = q.sub_scales.data() + sub,
              .sub_mins = info.has_min ? q.sub_mins.data() + sub : nullptr,
              .d = q.d.data() + b,
              .dmin = info.has_min ? q.dmin.data() + b : nullptr};
}

BlockQ2K pack_q2_k(const BlockIn& b) {
  PTQ_ASSERT(b.sub_mins && b.dmin);
  BlockQ2K out{};
  for (int j = 0; j < 16; ++j)
    out.scales[j] = static_cast<std::uint8_t>(b.sub_scales[j] | (b.sub_mins[j] << 4));
  pack_2bit(b.codes, out.qs);
  out.d = *b.d;
  out.dmin = *b.dmin;
  return out;
}

void unpack_q2_k(const BlockQ2K& in, const BlockOut& b) {
  PTQ_ASSERT(b.sub_mins && b.dmin);
  for (int j = 0; j < 16; ++j) {
    b.sub_scales[j] = static_cast<std::int8_t>(in.scales[j] & 0xF);
    b.sub_mins[j] = static_cast<std::int8_t>(in.scales[j] >> 4);
  }
  unpack_2bit(in.qs, b.codes);
  *b.d = in.d;
  *b.dmin = in.dmin;
}

BlockQ3K pack_q3_k(const BlockIn& b) {
  BlockQ3K out{};
  constexpr int kHighBit = 4;
  for (int j = 0; j < kSuper; ++j) {
    if (b.codes[j] >= kHighBit)
      out.hmask[j % kPlane] |= static_cast<std::uint8_t>(1 << (j / kPlane));
  }
  pack_2bit(b.codes, out.qs);
  pack_q3_scales(b.sub_scales, out.scales);
  out.d = *b.d;
  return out;
}

void unpack_q3_k(const BlockQ3K& in, const BlockOut& b) {
  unpack_2bit(in.qs, b.codes);
  for (int j = 0; j < kSuper; ++j) {
    if ((in.hmask[j % kPlane] >> (j / kPlane)) & 1)
      b.codes[j] = static_cast<std::int8_t>(b.codes[j] + 4);
  }
  unpack_q3_scales(in.scales, b.sub_scales);
  *b.d = in.d;
}

BlockQ4K pack_q4_k(const BlockIn& b) {
  PTQ_ASSERT(b.sub_mins && b.dmin);
  BlockQ4K out{};
  out.d = *b.d;
  out.dmin = *b.dmin;
  pack_scale_min_k4(b.sub_scales, b.sub_mins, out.scales);
  pack_nibbles(b.codes, out.qs);
  return out;
}

void unpack_q4_k(const BlockQ4K& in, const BlockOut& b) {
  PTQ_ASSERT(b.sub_mins && b.dmin);
  *b.d = in.d;
  *b.dmin = in.dmin;
  unpack_scale_min_k4(in.scales, b.sub_scales, b.sub_mins);
  unpack_nibbles(in.qs, b.codes);
}

BlockQ5K pack_q5_k(const BlockIn& b) {
  PTQ_ASSERT(b.sub_mins && b.dmin);
  BlockQ5K out{};
  out.d = *b.d;
  out.dmin = *b.dmin;
  pack_scale_min_k4(b.sub_scales, b.sub_mins, out.scales);
  pack_nibbles(b.codes, out.qs);
  for (int j = 0; j < kSuper; ++j) {
    // Weight j = 64 * chunk + 32 * half + l: bit 2 * chunk + half = j / 32 of byte l.
    if (b.codes[j] > 0xF) out.qh[j % kPlane] |= static_cast<std::uint8_t>(1 << (j / kPlane));
  }
  return out;
}

void unpack_q5_k(const BlockQ5K& in, const BlockOut& b) {
  PTQ_ASSERT(b.sub_mins && b.dmin);
  *b.d = in.d;
  *b.dmin = in.dmin;
  unpack_scale_min_k4(in.scales, b.sub_scales, b.sub_mins);
  unpack_nibbles(in.qs, b.codes);
  for (int j = 0; j < kSuper; ++j) {
    if ((in.qh[j % kPlane] >> (j / kPlane)) & 1)
      b.codes[j] = static_cast<std::int8_t>(b.codes[j] + 16);
  }
}

BlockQ6K pack_q6_k(const BlockIn& b) {
  BlockQ6K out{};
  constexpr std::ptrdiff_t kHalf = 128, kLowBytesPerHalf = 64;
  for (int h = 0; h < kSuper / kHalf; ++h) {
    const std::int8_t* c = b.codes + kHalf * h;
    std::uint8_t* ql = out.ql + kLowBytesPerHalf * h;
    for (int l = 0; l < kPlane; ++l) {
      ql[l] = static_cast<std::uint8_t>((c[l] & 0xF) | ((c[l + 2 * kPlane] & 0xF) << 4));
      ql[l + kPlane] =
          static_cast<std::uint8_t>((c[l + kPlane] & 0xF) | ((c[l + 3 * kPlane] & 0xF) << 4));
      int high = 0;
      for (int k = 0; k < 4; ++k) high |= (c[l + kPlane * k] >> 4) << (2 * k);
      out.qh[kPlane * h + l] = static_cast<std::uint8_t>(high);
    }
  }
  std::memcpy(out.scales, b.sub_scales, sizeof(out.scales));
  out.d = *b.d;
  return out;
}

void unpack_q6_k(const BlockQ6K& in, const BlockOut& b) {
  constexpr std::ptrdiff_t kHalf = 128, kLowBytesPerHalf = 64;
  for (int h = 0; h < kSuper / kHalf; ++h) {
    std::int8_t* c = b.codes + kHalf * h;
    const std::uint8_t* ql = in.ql + kLowBytesPerHalf * h;
    for (int l = 0; l < kPlane; ++l) {
      const int low[4] = {ql[l] & 0xF, ql[l + kPlane] & 0xF, ql[l] >> 4, ql[l + kPlane] >> 4};
      for (int k = 0; k < 4; ++k) {
        const int high = (in.qh[kPlane * h + l] >> (2 * k)) & 3;
        c[l + kPlane * k] = static_cast<std::int8_t>(low[k] | (high << 4));
      }
    }
  }
  std::memcpy(b.sub_scales, in.scales, sizeof(in.scales));
  *b.d = in.d;
}

// ---- the loops over blocks ---------------------------------------------------

// Codes and sub-scales wider than their fields would spill into their
// neighbours' bits: a GgmlBlocks out of its documented ranges is a bug.
void check_ranges(const GgmlBlocks& q) {
  const GgmlGridInfo& info = ggml_grid_info(q.grid);
  const int code_max = (1 << info.bits) - 1;
  for (std::int8_t c : q.codes) PTQ_ASSERT(c >= 0 && c <= code_max);
  if (q.grid == GgmlGrid::q6_k) return;  // int8 sub-scales: every value is valid
  const int scale_max = q.grid == GgmlGrid::q2_k ? 15 : 63;
  for (std::int8_t s : q.sub_scales) PTQ_ASSERT(s >= 0 && s <= scale_max);
  for (std::int8_t m : q.sub_mins) PTQ_ASSERT(m >= 0 && m <= scale_max);
}

template <class Block, class PackOne>
void pack_blocks(const GgmlBlocks& q, std::span<std::byte> out, PackOne pack_one) {
  PTQ_ASSERT(out.size() == static_cast<std::size_t>(q.blocks()) * sizeof(Block));
  for (std::int64_t b = 0; b < q.blocks(); ++b) {
    const Block block = pack_one(block_view(q, b));
    std::memcpy(out.data() + b * sizeof(Block), &block, sizeof(Block));
  }
}

template <class Block, class UnpackOne>
void unpack_blocks(std::span<const std::byte> in, GgmlBlocks& q, UnpackOne unpack_one) {
  PTQ_ASSERT(in.size() == static_cast<std::size_t>(q.blocks()) * sizeof(Block));
  for (std::int64_t b = 0; b < q.blocks(); ++b) {
    Block block;
    std::memcpy(&block, in.data() + b * sizeof(Block), sizeof(Block));
    unpack_one(block, block_view(q, b));
  }
}

}  // namespace

void pack_kquant(const GgmlBlocks& q, std::span<std::byte> out) {
  check_ranges(q);
  switch (q.grid) {
    case GgmlGrid::q2_k:
      return pack_blocks<BlockQ2K>(q, out, pack_q2_k);
    case GgmlGrid::q3_k:
      return pack_blocks<BlockQ3K>(q, out, pack_q3_k);
    case GgmlGrid::q4_k:
      return pack_blocks<BlockQ4K>(q, out, pack_q4_k);
    case GgmlGrid::q5_k:
      return pack_blocks<BlockQ5K>(q, out, pack_q5_k);
    case GgmlGrid::q6_k:
      return pack_blocks<BlockQ6K>(q, out, pack_q6_k);
    default:
      PTQ_ASSERT(false);
  }
}

void unpack_kquant(std::span<const std::byte> in, GgmlBlocks& q) {
  switch (q.grid) {
    case GgmlGrid::q2_k:
      return unpack_blocks<BlockQ2K>(in, q, unpack_q2_k);
    case GgmlGrid::q3_k:
      return unpack_blocks<BlockQ3K>(in, q, unpack_q3_k);
    case GgmlGrid::q4_k:
      return unpack_blocks<BlockQ4K>(in, q, unpack_q4_k);
    case GgmlGrid::q5_k:
      return unpack_blocks<BlockQ5K>(in, q, unpack_q5_k);
    case GgmlGrid::q6_k:
      return unpack_blocks<BlockQ6K>(in, q, unpack_q6_k);
    default:
      PTQ_ASSERT(false);
  }
}

}  // namespace ptq::gguf_detail
