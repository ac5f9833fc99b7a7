// `ptq eval` of a GGUF file ptq wrote gives the perplexity of the quantized
// model as ptq holds it in memory, within 0.01 %. The in-memory model is
// rebuilt here from the libraries without any of the file's code: GPTQ's
// Linears from quantize_blocks on the exact Q4_0 grid, every other tensor
// rounded by ggml's quantizers with llama-quantize's per-tensor type, all
// dequantized in HF layout (no packing, no GGUF row order, no GGUF reader).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "io/ids_file.hpp"
#include "io/model_config.hpp"
#include "pipeline/eval/eval.hpp"
#include "pipeline/eval/model_open.hpp"
#include "pipeline/formats/gguf_blocks.hpp"
#include "pipeline/formats/gguf_model.hpp"
#include "pipeline/formats/gguf_policy.hpp"
#include "pipeline/quantize/quantize.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;

fs::path tiny() { return test::fixture("models/tiny"); }
fs::path calib_ids() { return test::fixture("goldens/tiny/calib_generic.ids"); }
constexpr double kRelative = 1e-4;  // 0.01 %

// The model a GGUF of `gguf_type` holds, from tiny and the Linears ptq rounded.
Model in_memory_model(const std::string& gguf_type, const std::vector<QuantizedLinear>& linears) {
  const ModelConfig config = load_model_config(tiny());
  const Checkpoint source = Checkpoint::open(tiny());
  const GgufPolicy& policy = *find_policy(gguf_type);
  const GgufModelShape shape{.n_layer = config.num_layers,
                             .n_head = config.num_heads,
                             .n_head_kv = config.num_kv_heads,
                             .tied_embeddings = config.tie_word_embeddings};
  std::map<std::string, const QuantizedLinear*> by_name;
  for (const auto& q : linears)
    by_name[block_tensor_name(q.layer, std::string(linear_spec(q.role).module) + ".weight")] = &q;
  std::vector<OwnedTensor> tensors;
  for (const GgufTensorPlan& plan : gguf_tensor_plan(config, source)) {
    if (plan.hf_name.empty()) continue;  // rope_freqs: none in tiny
    MatrixRM values = gguf_source_tensor(plan, source, config);
    const auto type = gguf_tensor_type(policy, plan.gguf_name, plan.ne, shape);
    const auto grid = type ? gguf_grid(*type) : std::nullopt;
    if (grid && by_name.contains(plan.hf_name)) {
      values = dequantize(by_name[plan.hf_name]->weight);  // GPTQ's ggml blocks
    } else if (grid) {
      values = dequantize(ggml_quantize(*grid, values, {}));
    }  // else a float type: tiny's float16 values as they are
    tensors.push_back(OwnedTensor::float32(
        plan.hf_name,
        plan.ne.size() == 1 ? std::vector<std::int64_t>{static_cast<std::int64_t>(values.size())}
                            : std::vector<std::int64_t>{values.rows(), values.cols()},
        {values.data(), static_cast<std::size_t>(values.size())}));
  }
  return Model::from_checkpoint(
      "in-memory " + gguf_type, config,
      Checkpoint::from_memory("in-memory " + gguf_type, std::move(tensors)));
}

std::vector<QuantizedLinear> gptq_linears(const std::string& gguf_type) {
  Recipe recipe;
  recipe.method = Method::Gptq;
  recipe.format = OutputFormat::gguf;
  recipe.gguf_type = gguf_type;
  recipe.calibration.samples = 8;
  recipe.calibration.seqlen = 128;
  recipe.apply_implied_defaults();
  recipe.validate();
  const Model model = Model::open(tiny());
  const CalibSourceSpec source{"calib", calib_ids(), 1.0};
  const CalibrationSet calibration = build_calibration_set(
      {&source, 1}, recipe.calibration, nullptr, model.config().eos_token_ids.front());
  return quantize_blocks(model, recipe, &calibration, QuantizeRunOptions{}).load_all();
}

double perplexity(const Model& model) {
  const std::vector<std::int32_t> ids = read_ids(test::fixture("goldens/tiny/eval_generic.ids"));
  EvalConfig config;
  config.ctx = 128;
  config.max_windows = 8;
  return evaluate(model, ids, config).ppl;
}

void expect_file_is_the_model_in_memory(const std::string& gguf_type, const std::string& args,
                                        const std::vector<QuantizedLinear>& linears) {
  const fs::path dir =
      test::temp_dir("gguf-in-memory-" + gguf_type + "-" + std::to_string(getpid()));
  const std::string command = test::ptq_binary().string() + " quantize --model " + tiny().string() +
                              " " + args + " --format gguf --gguf-type " + gguf_type + " --out " +
                              (dir / "out").string() + " > " + (dir / "log").string() + " 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << test::read_bytes(dir / "log");
  const double file = perplexity(open_model(dir / "out/model.gguf"));
  const double memory = perplexity(in_memory_model(gguf_type, linears));
  EXPECT_NEAR(file, memory, kRelative * memory) << gguf_type;
}

TEST(GgufInMemory, RtnFilesAreTheRoundedModel) {
  for (const char* type : {"Q8_0", "Q4_K_M", "Q3_K_S"})
    expect_file_is_the_model_in_memory(type, "--method rtn", {});
}

TEST(GgufInMemory, GptqFileIsTheModelGptqLeft) {
  for (const char* type : {"Q4_0", "Q4_K_M"}) {
    expect_file_is_the_model_in_memory(
        type, "--method gptq --calib-ids " + calib_ids().string() + " --samples 8 --seqlen 128",
        gptq_linears(type));
  }
}

}  // namespace
}  // namespace ptq
