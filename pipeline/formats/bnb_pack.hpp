#pragma once
// One Linear of a bitsandbytes 4-bit checkpoint, as bitsandbytes 0.4x–0.50
// serializes a Params4bit (QuantState.as_dict(packed=True)) and transformers
// loads it. For the Linear <m>:
//   <m>.weight                                  uint8 [ceil(out * in / 2), 1]: the codes
//       of the row-major flattened weight, two to a byte, the first in the high nibble;
//   <m>.weight.absmax                           uint8 [blocks] when double-quantized
//       (indices into nested_quant_map), else float32 [blocks];
//   <m>.weight.quant_map                        float32 [16]: the code table (NF4);
//   <m>.weight.nested_absmax                    float32 [ceil(blocks / nested_blocksize)]
//   <m>.weight.nested_quant_map                 float32 [256]   (both double-quantized only)
//   <m>.weight.quant_state.bitsandbytes__nf4    uint8: UTF-8 JSON of quant_type, blocksize,
//       dtype, shape [out, in], and nested_blocksize, nested_dtype, nested_offset.
// flat W[k] = quant_map[code[k]] * absmax[k / blocksize], with, double-quantized,
// absmax[b] = nested_quant_map[a[b]] * nested_absmax[b / nested_blocksize] + nested_offset,
// the product rounded to `dtype`. That is ptq's Nf4Matrix (algorithms/nf4.hpp).
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "algorithms/matrix.hpp"
#include "algorithms/nf4.hpp"
#include "io/dtype.hpp"
#include "io/safetensors.hpp"

namespace ptq {

struct BnbLinear {
  std::int64_t out = 0, in = 0;
  int blocksize = 64;
  DType dtype = DType::F16;                // of the dequantized weight (quant state "dtype")
  std::vector<std::uint8_t> weight;        // packed codes
  std::vector<float> quant_map;            // [16]
  std::vector<float> absmax;               // not double-quantized: [blocks]
  std::vector<std::uint8_t> absmax_codes;  // double-quantized: [blocks]
  std::vector<float> nested_absmax, nested_quant_map;
  int nested_blocksize = 256;
  float nested_offset = 0.0f;

  bool nested() const { return !nested_quant_map.empty(); }
};

// InputError naming `where` unless bitsandbytes' kernels take the block sizes
// (64 ... 4096, powers of two).
void require_bnb_packable(const Nf4Config& config, const std::string& where);
// Also InputError unless `dtype` is float16, bfloat16 or float32.
BnbLinear pack_bnb_nf4(const Nf4Matrix& m, DType dtype, const std::string& where);
// The grid back; InputError naming `where` when the Linear is not
// double-quantized NF4 with ptq's tables (a file of bitsandbytes' own default,
// plain float32 absmax, dequantizes but is no Nf4Matrix).
Nf4Matrix unpack_bnb_nf4(const BnbLinear& l, const std::string& where);
// The weight [out, in] as bitsandbytes dequantizes it, from the file's own tables.
MatrixRM dequantize_bnb(const BnbLinear& l);

// The quant-state entry's JSON, and the Linear's tensors read back from a
// checkpoint (InputError naming `where` and the tensor or key when any is
// missing, of another dtype or size, or not NF4).
std::string bnb_quant_state_json(const BnbLinear& l);
BnbLinear read_bnb_linear(const Checkpoint& packed, const std::string& base,
                          const std::string& where);

// The name suffix of the quant-state entry that marks a 4-bit Linear.
inline constexpr std::string_view kBnbQuantState = ".weight.quant_state.bitsandbytes__nf4";

// config.json's quantization_config as transformers writes it for
// BitsAndBytesConfig(load_in_4bit, nf4, double quant, compute dtype `compute`).
nlohmann::ordered_json bnb_quantization_config(DType compute);
// True for a 4-bit NF4 bitsandbytes quantization_config, false without a
// bitsandbytes one; InputError naming `where` for 8-bit or FP4 ones.
bool read_bnb_quantization_config(const nlohmann::json& config, const std::string& where);

// The folder's tensors with every 4-bit Linear replaced by its float32 weight.
Checkpoint dequantized_bnb_checkpoint(const std::filesystem::path& dir, const Checkpoint& packed);

}  // namespace ptq
