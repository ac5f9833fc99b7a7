#pragma once
// The GGUF *model* layer: everything llama.cpp needs in a model file besides the
// bytes of quantized blocks (gguf_blocks.hpp) — which tensors, under which
// names and shapes, with q/k rows in llama's rope order, and the metadata
// (hyperparameters and tokenizer) llama.cpp reads. Learnt from llama.cpp's
// convert_hf_to_gguf.py (LlamaModel, Qwen2Model, Qwen3Model, Phi3MiniModel,
// Gemma2Model, Gemma3Model) and gguf-py; an
// F16 file written here has the same tensor bytes and llama.cpp-read keys as
// the converter's (tests/formats/gguf_model_test.cpp).
//
// A writer (the quantize driver) goes: gguf_tensor_plan -> for each planned
// tensor choose a GGUF type and produce its bytes (gguf_float_tensor, or a
// row-wise quantizer followed by to_gguf_row_order) -> write_gguf_model with
// gguf_metadata. A reader goes: gguf_model_config -> gguf_file_plan ->
// read_gguf_tensor for each entry.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "algorithms/matrix.hpp"
#include "io/gguf.hpp"
#include "io/imatrix.hpp"
#include "io/model_config.hpp"
#include "io/safetensors.hpp"

namespace ptq {

// general.architecture: "llama" (Llama and Mistral: one graph), "qwen2",
// "qwen3", "phi3", "gemma2", "gemma3".
std::string_view gguf_architecture(Architecture arch);
// InputError naming `where` when llama.cpp cannot run `config` as written
// (llama3 rope scaling outside the llama architecture; a Gemma model whose
// query scale, sliding layers, local RoPE or soft-capping differ from what
// llama.cpp's Gemma graphs fix).
void require_gguf_expressible(const ModelConfig& config, const std::string& where);

// What llama.cpp's Gemma 2/3 loaders fix rather than read: the attention
// scale (1/sqrt(head_dim), or 1/sqrt(hidden / heads) for the 27B models' layer
// counts, 46 and 62) and which layers slide (Gemma 2: the even ones; Gemma 3:
// all but every sixth).
bool is_gemma(Architecture arch);  // Gemma 2 or Gemma 3
double llamacpp_gemma_query_scale(const ModelConfig& config);
bool llamacpp_gemma_sliding(Architecture arch, int layer);

// One expert's rows of a stacked expert tensor (blk.N.ffn_gate_exps.weight
// {hidden, intermediate, experts}, ...): part i holds the plan's rows
// [i * ne[1], (i + 1) * ne[1]), expert i's Linear. ggml's block types are
// row-local, so each part's bytes are those of its Linear alone.
struct GgufExpertPart {
  // The Linear's weight in the per-expert layout ("model.layers.N.mlp.experts.
  // E.gate_proj.weight"): the name the run's Linear has and a reader gives back.
  std::string hf_name;
  std::string source;           // the checkpoint tensor holding it (empty in a file's plan)
  std::int64_t source_row = 0;  // its first row there (io/moe_tensors.hpp expert_rows)
};

// How the converter stores a tensor whatever the file type.
enum class GgufStorage {
  weight,  // a matrix: stored in the file's type (F16, BF16, a block type, ...)
  f32      // 1-D (norms, biases, rope_freqs): always F32, as llama.cpp expects
};

struct GgufTensorPlan {
  // The checkpoint's; empty for a generated tensor (rope_freqs) and a stacked expert tensor.
  std::string hf_name;
  std::string gguf_name;         // llama.cpp's: token_embd.weight, blk.3.attn_q.bias, ...
  std::vector<std::int64_t> ne;  // GGUF shape, innermost first: HF [out, in] -> {in, out}
  // > 0: the rows (HF dim 0) are stored in llama's rope order over this many
  // heads (q: n_head, k: n_kv_head; architecture "llama" only, where llama.cpp
  // rotates adjacent pairs and HF rotates halves); 0: rows as in HF.
  int rope_heads = 0;
  GgufStorage storage = GgufStorage::weight;
  // Added to every value written: Gemma's norms, which scale by 1 + w, are
  // stored as 1 + w (the converter's form, which llama.cpp multiplies by). A
  // file's plan (gguf_file_plan) has 0: its values are read as stored.
  float offset = 0;
  std::vector<GgufExpertPart> experts = {};  // a stacked expert tensor's parts, by expert

  bool generated() const { return hf_name.empty() && experts.empty(); }  // from config.json
  std::int64_t cols() const { return ne.at(0); }  // row length
  std::int64_t rows() const;                      // product of ne[1..]
  std::vector<std::int64_t> hf_shape() const;     // ne reversed: [out, in], [n]
};

// Every tensor the converter writes for `config`'s checkpoint, in its order:
// generated tensors first (rope_freqs.weight for llama3 rope scaling), then the
// checkpoint's tensors by shard file name, then by tensor name. Tied
// embeddings: no output.weight (llama.cpp reuses token_embd). InputError naming
// the checkpoint and tensor for a name the table does not know, a tensor the
// architecture cannot hold in llama.cpp (e.g. q/k norms outside qwen3), or a
// q/k row count that the heads do not divide.
std::vector<GgufTensorPlan> gguf_tensor_plan(const ModelConfig& config,
                                             const Checkpoint& checkpoint);

// llama's rope row order: GGUF row i holds HF row order[i]. Within each head of
// `rows / heads` rows, HF's halves [x0..x(d/2-1) | y0..] become pairs (x0 y0 x1 y1 ...).
std::vector<std::int64_t> rope_row_order(std::int64_t rows, int heads);
// The inverse permutation: inverse[order[i]] = i.
std::vector<std::int64_t> inverse_row_order(std::span<const std::int64_t> order);
// W: [out, in] row-major; out must be a multiple of 2 * heads.
void permute_rows_for_gguf(MatrixRM& W, int heads);
void unpermute_rows_from_gguf(MatrixRM& W, int heads);
// Rows of `row_bytes` bytes each: output row i = input row order[i]. ggml's
// block types are row-local, so this permutes packed quantized tensors too.
std::vector<std::byte> permute_row_bytes(std::span<const std::byte> bytes, std::size_t row_bytes,
                                         std::span<const std::int64_t> order);
// Bytes of a tensor in HF row order (e.g. a row-wise quantizer's output) in
// the plan's GGUF row order (a copy when plan.rope_heads is 0).
std::vector<std::byte> to_gguf_row_order(const GgufTensorPlan& plan,
                                         std::span<const std::byte> hf_rows);

// rope_freqs.weight for llama3 rope scaling: head_dim / 2 frequency divisors
// (1, factor, or the smoothed blend between), computed as the converter does.
std::vector<float> llama3_rope_factors(const ModelConfig& config);
// The values of a tensor made from config.json (plan.hf_name empty):
// rope_freqs.weight (llama3_rope_factors), or LongRoPE's rope_factors_long.weight
// and rope_factors_short.weight (the config's long and short factors).
std::vector<float> gguf_config_tensor(const GgufTensorPlan& plan, const ModelConfig& config);

// The float types a GGUF model file can hold unquantized.
enum class GgufFloatType { f32, f16, bf16 };
// GGML_TYPE_F32 0, F16 1, BF16 30.
std::uint32_t ggml_type_id(GgufFloatType type);
// general.file_type of a float file: LLAMA_FTYPE_ALL_F32 0, MOSTLY_F16 1, MOSTLY_BF16 32.
std::uint32_t llama_file_type(GgufFloatType type);

// One tensor's data as the writer stores it.
struct GgufTensorData {
  std::uint32_t type = 0;        // a GGUF tensor type id (io/gguf.hpp tensor_types())
  std::vector<std::byte> bytes;  // in the plan's GGUF row order
};

// A planned tensor as float32 in HF layout ([out, in]; 1-D as [1, n]), before
// any permutation; generated tensors computed. InputError naming the tensor
// when the checkpoint's dtype is not F32/F16/BF16.
MatrixRM gguf_source_tensor(const GgufTensorPlan& plan, const Checkpoint& checkpoint,
                            const ModelConfig& config);
// The importance llama-quantize hands ggml's quantizer for a planned tensor:
// the imatrix's entry, per expert for a stacked expert tensor (one slice of
// ne[0] each); empty when the imatrix has none. InputError naming the tensor
// for an entry of another size.
std::vector<float> gguf_plan_importance(const Imatrix& imatrix, const GgufTensorPlan& plan);
// The converter's bytes for a planned tensor in a float file: F32 storage ->
// F32; else `type`, F16/BF16 source bytes copied when they match it, otherwise
// converted (round to nearest even); rows in GGUF order.
GgufTensorData gguf_float_tensor(const GgufTensorPlan& plan, const Checkpoint& checkpoint,
                                 const ModelConfig& config, GgufFloatType type);
// A planned tensor from float32 values in HF layout, stored as `type`.
GgufTensorData gguf_values_tensor(const GgufTensorPlan& plan, std::span<const float> values,
                                  GgufFloatType type);

struct GgufMetadataOptions {
  // general.file_type, llama.cpp's llama_ftype (llama_file_type() for float
  // files; gguf_policy.hpp's GgufPolicy::file_type for llama-quantize's mixes).
  std::uint32_t file_type = 1;
  std::string name;  // general.name; empty: the model folder's name
};

// The metadata the converter writes, in its order: general.*, the
// hyperparameters (<arch>.context_length, ... rope, eps, key/value length when
// config.json sets head_dim, vocab_size and rope.dimension_count for "llama"),
// general.file_type, general.quantization_version 2, then the tokenizer
// (gguf_tokenizer_metadata). ptq.rope.llama3.* keys carry llama3 rope
// scaling's parameters, which llama.cpp reads only as rope_freqs.weight.
// InputError naming the folder for what llama.cpp cannot express (llama3 rope
// outside the llama architecture, a vocabulary larger than vocab_size).
std::vector<std::pair<std::string, gguf::Value>> gguf_metadata(
    const std::filesystem::path& model_dir, const ModelConfig& config,
    const GgufMetadataOptions& options);

// tokenizer.ggml.*: model "gpt2" (byte-level BPE, pre-tokenizer named after the
// regex ptq detects: GPT-2's -> "olmo", Llama 3's -> "llama-bpe", Qwen2's ->
// "qwen2") or "llama" (SentencePiece-style, scores from merge ranks); tokens
// padded to config.vocab_size with [PADi]; token types; merges; special token
// ids (tokenizer_config.json's tokens, then config.json's *_token_id);
// add_bos/add_eos_token; chat_template. From the folder's tokenizer.json.
std::vector<std::pair<std::string, gguf::Value>> gguf_tokenizer_metadata(
    const std::filesystem::path& model_dir, const ModelConfig& config);

// Produces one planned tensor's data; called once per tensor, in plan order.
using GgufTensorSource = std::function<GgufTensorData(const GgufTensorPlan&)>;

// Writes the model file (atomically, io/gguf.hpp write_streamed): metadata as
// given, tensors in plan order, one tensor's bytes in memory at a time. A source
// returning bytes of the wrong size for the type and shape is a bug (asserted).
void write_gguf_model(const std::filesystem::path& out_file,
                      std::span<const std::pair<std::string, gguf::Value>> metadata,
                      std::span<const GgufTensorPlan> plan, const GgufTensorSource& source);

// The converter's float GGUF of a Hugging Face folder (config.json, safetensors,
// tokenizer.json): plan + metadata + gguf_float_tensor.
void write_float_gguf(const std::filesystem::path& model_dir, const std::filesystem::path& out_file,
                      GgufFloatType type);

// ---- Reading a GGUF model back (ptq eval / ptq inspect) ----

// The inverse of gguf_metadata: architecture "llama" reads back as Llama
// (Mistral's files are the same), Gemma with what llama.cpp fixes and its
// norms as stored (norm_plus_one off), tie_word_embeddings from a missing
// output.weight, biases and q/k norms from blk.0's tensors, float keys as the
// shortest decimal that rounds to the stored f32 (config.json's literal).
// InputError naming the file and key for a missing key, an architecture ptq
// does not run, or rope_freqs.weight without ptq.rope.llama3.* keys.
ModelConfig gguf_model_config(const gguf::File& file);

// The file's tensors with their HF names (the plan gguf_tensor_plan makes for
// `config`, matched to the file's names, in file order); rope_freqs.weight has
// an empty hf_name. InputError naming the file and tensor for unknown names.
std::vector<GgufTensorPlan> gguf_file_plan(const gguf::File& file, const ModelConfig& config);

// One tensor as float32 in HF layout ([out, in]; 1-D as [1, n]), q/k rows
// back in HF order: F32/F16/BF16 converted, block types unpacked and
// dequantized as ggml does. InputError naming the tensor for a type ptq cannot
// decode.
MatrixRM read_gguf_tensor(const gguf::File& file, const GgufTensorPlan& plan);

}  // namespace ptq
