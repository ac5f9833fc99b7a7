#include "pipeline/formats/bnb_pack.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "io/error.hpp"
#include "io/json_strict.hpp"
#include "pipeline/formats/packed_checkpoint.hpp"

namespace ptq {

namespace {

constexpr int kCodes = 16, kNestedCodes = 256;

// bitsandbytes' blockwise kernels take these block sizes.
bool kernel_blocksize(std::int64_t b) {
  return b >= 64 && b <= 4096 && std::has_single_bit(static_cast<std::uint64_t>(b));
}

// The quant state's spelling of a dtype (str(torch.dtype) without "torch.").
struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kDtypes[] = {
    {DType::F16, "float16"}, {DType::BF16, "bfloat16"}, {DType::F32, "float32"}};

const char* torch_name(DType d, const std::string& where) {
  for (const auto& n : kDtypes)
    if (n.dtype == d) return n.name;
  throw input_error(where, "a float16, bfloat16 or float32 weight", std::string(dtype_name(d)));
}

DType torch_dtype(const std::string& name, const std::string& where) {
  for (const auto& n : kDtypes)
    if (name == n.name) return n.dtype;
  throw input_error(where, "float16, bfloat16 or float32", "\"" + name + "\"");
}

float round_to(DType d, float v) {
  if (d == DType::F16) return half_to_float(float_to_half(v));
  if (d == DType::BF16) return bf16_to_float(float_to_bf16(v));
  return v;
}

std::int64_t blocks_of(std::int64_t n, std::int64_t block) { return (n + block - 1) / block; }

void require_blocksize(std::int64_t b, const std::string& where) {
  if (!kernel_blocksize(b))
    throw input_error(where, "a power of two from 64 to 4096 (bitsandbytes' kernels)",
                      std::to_string(b));
}

void require_table(const std::vector<float>& got, std::span<const float> want,
                   const std::string& where) {
  if (got.size() != want.size() || !std::equal(got.begin(), got.end(), want.begin()))
    throw input_error(where, "ptq's table (bitsandbytes' own values)", "another table");
}

}  // namespace

void require_bnb_packable(const Nf4Config& config, const std::string& where) {
  require_blocksize(config.block_size, where + ": NF4 block size");
  require_blocksize(config.absmax_block_size, where + ": NF4 absmax block size");
}

BnbLinear pack_bnb_nf4(const Nf4Matrix& m, DType dtype, const std::string& where) {
  require_bnb_packable(m.config, where);
  if (m.absmax_phase != 0)
    throw input_error(where, "a whole NF4 matrix (a fused module's parts stacked)",
                      "rows that start inside a second-level absmax block");
  torch_name(dtype, where);
  BnbLinear l;
  l.out = m.rows;
  l.in = m.cols;
  l.blocksize = m.config.block_size;
  l.dtype = dtype;
  l.weight.assign(static_cast<std::size_t>(blocks_of(l.out * l.in, 2)), 0);
  for (std::size_t k = 0; k < m.codes.size(); ++k)
    l.weight[k / 2] |= static_cast<std::uint8_t>(m.codes[k] << (k % 2 == 0 ? 4 : 0));
  l.quant_map.assign(nf4_values().begin(), nf4_values().end());
  l.absmax_codes = m.absmax_codes;
  l.nested_absmax = m.absmax_scales;
  l.nested_quant_map.assign(dynamic_map().begin(), dynamic_map().end());
  l.nested_blocksize = m.config.absmax_block_size;
  l.nested_offset = m.absmax_offset;
  return l;
}

Nf4Matrix unpack_bnb_nf4(const BnbLinear& l, const std::string& where) {
  if (!l.nested())
    throw input_error(where, "double-quantized absmax (ptq's NF4)", "float32 absmax");
  require_table(l.quant_map, nf4_values(), where + ".weight.quant_map");
  require_table(l.nested_quant_map, dynamic_map(), where + ".weight.nested_quant_map");
  Nf4Matrix m;
  m.rows = static_cast<int>(l.out);
  m.cols = static_cast<int>(l.in);
  m.config.block_size = l.blocksize;
  m.config.absmax_block_size = l.nested_blocksize;
  m.codes.resize(static_cast<std::size_t>(l.out * l.in));
  for (std::size_t k = 0; k < m.codes.size(); ++k)
    m.codes[k] = static_cast<std::uint8_t>((l.weight[k / 2] >> (k % 2 == 0 ? 4 : 0)) & 0xF);
  m.absmax_codes = l.absmax_codes;
  m.absmax_scales = l.nested_absmax;
  m.absmax_offset = l.nested_offset;
  return m;
}

MatrixRM dequantize_bnb(const BnbLinear& l) {
  std::vector<float> absmax = l.absmax;
  if (l.nested()) {
    absmax.resize(l.absmax_codes.size());
    for (std::size_t b = 0; b < absmax.size(); ++b)
      absmax[b] = l.nested_quant_map[l.absmax_codes[b]] *
                      l.nested_absmax[b / static_cast<std::size_t>(l.nested_blocksize)] +
                  l.nested_offset;
  }
  PTQ_ASSERT(static_cast<std::int64_t>(absmax.size()) == blocks_of(l.out * l.in, l.blocksize));
  MatrixRM w(l.out, l.in);
  for (Eigen::Index k = 0; k < w.size(); ++k) {
    const int code = (l.weight[static_cast<std::size_t>(k / 2)] >> (k % 2 == 0 ? 4 : 0)) & 0xF;
    w.data()[k] = round_to(l.dtype, l.quant_map[static_cast<std::size_t>(code)] *
                                        absmax[static_cast<std::size_t>(k / l.blocksize)]);
  }
  return w;
}

std::string bnb_quant_state_json(const BnbLinear& l) {
  nlohmann::ordered_json j = {{"quant_type", "nf4"},
                              {"blocksize", l.blocksize},
                              {"dtype", torch_name(l.dtype, "quant state")},
                              {"shape", {l.out, l.in}}};
  if (l.nested()) {
    j["nested_blocksize"] = l.nested_blocksize;
    j["nested_dtype"] = "float32";
    j["nested_offset"] = static_cast<double>(l.nested_offset);
  }
  return j.dump();
}

namespace {

// The quant state's keys, checked: InputError naming `where` and the key.
void read_quant_state(const nlohmann::json& j, BnbLinear& l, bool nested,
                      const std::string& where) {
  const auto key = [&](const char* k) -> const nlohmann::json& {
    if (!j.contains(k)) throw input_error(where + " \"" + k + "\"", "present", "missing");
    return j[k];
  };
  if (key("quant_type") != "nf4")
    throw input_error(where + " quant_type", "\"nf4\"", key("quant_type").dump());
  const auto& shape = key("shape");
  if (!shape.is_array() || shape.size() != 2 || !shape[0].is_number_integer() ||
      !shape[1].is_number_integer() || shape[0].get<std::int64_t>() <= 0 ||
      shape[1].get<std::int64_t>() <= 0)
    throw input_error(where + " shape", "[out, in], both positive", shape.dump());
  l.out = shape[0].get<std::int64_t>();
  l.in = shape[1].get<std::int64_t>();
  // Below 2^62, so that block counts round up without overflowing.
  if (std::int64_t weights = 0;
      __builtin_mul_overflow(l.out, l.in, &weights) || weights > (std::int64_t{1} << 62))
    throw input_error(where + " shape", "out x in below 2^62", shape.dump());
  if (!key("blocksize").is_number_integer())
    throw input_error(where + " blocksize", "an integer", key("blocksize").dump());
  l.blocksize = key("blocksize").get<int>();
  require_blocksize(l.blocksize, where + " blocksize");
  if (!key("dtype").is_string())
    throw input_error(where + " dtype", "a string", key("dtype").dump());
  l.dtype = torch_dtype(key("dtype").get<std::string>(), where + " dtype");
  if (!nested) return;
  if (!key("nested_blocksize").is_number_integer() || !key("nested_offset").is_number() ||
      key("nested_dtype") != "float32")
    throw input_error(where, "integer nested_blocksize, number nested_offset, nested_dtype float32",
                      j.dump());
  l.nested_blocksize = j["nested_blocksize"].get<int>();
  require_blocksize(l.nested_blocksize, where + " nested_blocksize");
  l.nested_offset = static_cast<float>(j["nested_offset"].get<double>());
}

}  // namespace

BnbLinear read_bnb_linear(const Checkpoint& packed, const std::string& base,
                          const std::string& where) {
  const std::string w = base + ".weight";
  const auto state =
      packed_values<std::uint8_t>(packed, w + ".quant_state.bitsandbytes__nf4", DType::U8);
  // Strict: a quant state nested deep enough would overflow the stack in dump().
  const nlohmann::json j = parse_json_strict_sorted(
      {reinterpret_cast<const char*>(state.data()), state.size()}, where + ".weight.quant_state");
  if (!j.is_object())
    throw input_error(where + ".weight.quant_state", "a JSON object", "another JSON value");
  BnbLinear l;
  const bool nested = packed.find(w + ".nested_absmax") != nullptr;
  read_quant_state(j, l, nested, where + ".weight.quant_state");
  l.weight = packed_values<std::uint8_t>(packed, w, DType::U8);
  require_size(where, "weight", l.weight.size(), blocks_of(l.out * l.in, 2));
  l.quant_map = packed_values<float>(packed, w + ".quant_map", DType::F32);
  require_size(where, "weight.quant_map", l.quant_map.size(), kCodes);
  const std::int64_t blocks = blocks_of(l.out * l.in, l.blocksize);
  if (!nested) {
    l.absmax = packed_values<float>(packed, w + ".absmax", DType::F32);
    require_size(where, "weight.absmax", l.absmax.size(), blocks);
    return l;
  }
  l.absmax_codes = packed_values<std::uint8_t>(packed, w + ".absmax", DType::U8);
  require_size(where, "weight.absmax", l.absmax_codes.size(), blocks);
  l.nested_absmax = packed_values<float>(packed, w + ".nested_absmax", DType::F32);
  require_size(where, "weight.nested_absmax", l.nested_absmax.size(),
               blocks_of(blocks, l.nested_blocksize));
  l.nested_quant_map = packed_values<float>(packed, w + ".nested_quant_map", DType::F32);
  require_size(where, "weight.nested_quant_map", l.nested_quant_map.size(), kNestedCodes);
  return l;
}

nlohmann::ordered_json bnb_quantization_config(DType compute) {
  return {{"_load_in_4bit", true},
          {"_load_in_8bit", false},
          {"bnb_4bit_compute_dtype", torch_name(compute, "compute dtype")},
          {"bnb_4bit_quant_storage", "uint8"},
          {"bnb_4bit_quant_type", "nf4"},
          {"bnb_4bit_use_double_quant", true},
          {"llm_int8_enable_fp32_cpu_offload", false},
          {"llm_int8_has_fp16_weight", false},
          {"llm_int8_skip_modules", nullptr},
          {"llm_int8_threshold", 6.0},
          {"load_in_4bit", true},
          {"load_in_8bit", false},
          {"quant_method", "bitsandbytes"}};
}

bool read_bnb_quantization_config(const nlohmann::json& config, const std::string& where) {
  const auto it = config.find("quantization_config");
  if (it == config.end() || !it->is_object() || it->value("quant_method", "") != "bitsandbytes")
    return false;
  const std::string w = where + ": quantization_config";
  if (!it->value("load_in_4bit", false))
    throw input_error(w, "load_in_4bit (NF4)", "8-bit bitsandbytes (LLM.int8), not read by ptq");
  if (it->value("bnb_4bit_quant_type", "nf4") != "nf4")
    throw input_error(w + ".bnb_4bit_quant_type", "nf4", it->value("bnb_4bit_quant_type", ""));
  return true;
}

Checkpoint dequantized_bnb_checkpoint(const std::filesystem::path& dir, const Checkpoint& packed) {
  constexpr std::string_view kParts[] = {".weight",
                                         ".weight.absmax",
                                         ".weight.quant_map",
                                         ".weight.nested_absmax",
                                         ".weight.nested_quant_map",
                                         kBnbQuantState};
  return with_linears_dequantized(dir, packed, kBnbQuantState, kParts,
                                  [&](const std::string& base) {
                                    const std::string where = dir.string() + ": " + base;
                                    return dequantize_bnb(read_bnb_linear(packed, base, where));
                                  });
}

}  // namespace ptq
