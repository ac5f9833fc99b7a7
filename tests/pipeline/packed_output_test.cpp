// `ptq quantize --format gptq | awq | compressed-tensors` on tiny: a packed
// checkpoint (GPTQ's qweight, qzeros, float16 scales, g_idx; AWQ's interleaved
// qweight, qzeros and scales; or
// compressed-tensors' weight_packed, weight_scale, weight_zero_point,
// weight_shape; or bitsandbytes' 4-bit weight, absmax, quant maps and quant
// state per block Linear; quantization_config in config.json) whose
// weights an independent NumPy decoder (tests/data/packed_decode.py, written
// from the public layouts) decodes to exactly the weights GPTQ left in memory;
// `ptq eval` of the folder gives that in-memory model's perplexity within
// 0.01 %; the whole folder is at most 1.15 x its model.safetensors. GPTQ
// 4-bit symmetric and 3-bit asymmetric act-order; AWQ 4-bit; compressed-tensors 4-bit
// symmetric groups and 8-bit asymmetric channels; NF4 into bitsandbytes;
// SmoothQuant W8A8 into compressed-tensors' int-quantized format (int8 inputs
// per token and per tensor, which `ptq eval` reads from the folder and simulates).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>

#include "io/ids_file.hpp"
#include "io/model_config.hpp"
#include "io/safetensors.hpp"
#include "pipeline/eval/eval.hpp"
#include "pipeline/eval/model_open.hpp"
#include "pipeline/output/act_quant_io.hpp"
#include "pipeline/quantize/quantize.hpp"
#include "pipeline/quantize/smoothing.hpp"
#include "pipeline/quantize/w8a8.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

namespace fs = std::filesystem;

fs::path tiny() { return test::fixture("models/tiny"); }
fs::path calib_ids() { return test::fixture("goldens/tiny/calib_generic.ids"); }
constexpr int kSamples = 8, kSeqlen = 128;

int run(const std::string& command, const fs::path& log) {
  return WEXITSTATUS(std::system((command + " > " + log.string() + " 2>&1").c_str()));
}

struct Case {
  const char* name;
  OutputFormat format;
  int bits;
  bool asymmetric, act_order, channel;
  bool static_groups = false;
  Method method = Method::Gptq;
  ActGranularity activations = ActGranularity::Token;  // w8a8
};

struct PackedRun {
  std::string flags;  // besides calibration and --out
  Recipe recipe;      // the same, for the in-process run
};

PackedRun run_of(const Case& c) {
  PackedRun r;
  r.recipe.method = c.method;
  r.recipe.format = c.format;
  r.recipe.calibration.samples = kSamples;
  r.recipe.calibration.seqlen = kSeqlen;
  r.flags = "--method " + std::string(method_name(c.method)) + " --format " +
            std::string(output_format_info(c.format).name);
  if (c.method == Method::W8A8) {
    r.flags += " --smoothquant 0.5 --act-granularity ";
    r.flags += act_granularity_name(c.activations);
    r.recipe.smoothquant = SmoothQuantConfig{0.5};
    r.recipe.act_granularity = c.activations;
  }
  if (c.method != Method::Gptq) {
    r.recipe.apply_implied_defaults();
    r.recipe.validate();
    return r;
  }
  r.flags += " --bits ";
  r.flags += std::to_string(c.bits);
  r.flags += c.channel ? " --group channel" : " --group 128";
  if (!c.asymmetric) r.flags += " --sym";
  if (c.act_order) r.flags += " --act-order";
  if (c.static_groups) r.flags += " --static-groups";
  r.recipe.spec.bits = c.bits;
  r.recipe.spec.granularity = c.channel ? Granularity::Channel : Granularity::Group;
  r.recipe.spec.group_size = 128;
  r.recipe.spec.symmetry = c.asymmetric ? Symmetry::Asymmetric : Symmetry::Symmetric;
  if (c.act_order) r.recipe.order = ColumnOrder::ActivationOrder;
  if (c.static_groups) r.recipe.group_grids = GroupGrids::Static;
  r.recipe.apply_implied_defaults();
  r.recipe.validate();
  return r;
}

// What the method leaves in memory for the recipe: the Linears, and for W8A8
// the smoothed norms and the int8 activations.
struct InMemory {
  std::vector<QuantizedLinear> linears;
  std::map<std::string, std::vector<float>> norms;
  std::optional<ActivationQuant> activations;
};

InMemory in_memory(const Recipe& recipe) {
  const Model model = Model::open(tiny());
  if (recipe.method == Method::Nf4) return {quantize_nf4(model, recipe), {}, {}};
  const CalibSourceSpec source{"calib", calib_ids(), 1.0};
  const CalibrationSet calibration = build_calibration_set(
      {&source, 1}, recipe.calibration, nullptr, model.config().eos_token_ids.front());
  if (recipe.method != Method::W8A8)
    return {quantize_blocks(model, recipe, &calibration, QuantizeRunOptions{}).load_all(), {}, {}};
  // The command's batch of windows: GEMMs over another number of rows may round
  // differently (OpenBLAS picks kernels by shape), and int8 codes flip with them.
  MethodOutput out = quantize_w8a8(model, recipe, &calibration, QuantizeRunOptions{}.batch_windows);
  InMemory m{out.linears.load_all(), {}, std::move(out.extras.activations)};
  for (auto& norm : folded_tensors(model, out.extras.scales))
    m.norms[norm.name].assign(norm.values.begin(), norm.values.end());
  return m;
}

std::string weight_name(const QuantizedLinear& q) {
  return block_tensor_name(q.layer, std::string(linear_spec(q.role).module) + ".weight");
}

// tiny with every block Linear replaced by its in-memory dequantized weight
// (and the smoothed norms by theirs).
Model in_memory_model(const InMemory& m) {
  const Checkpoint source = Checkpoint::open(tiny());
  std::map<std::string, std::vector<float>> replaced = m.norms;
  for (const auto& q : m.linears) {
    const MatrixRM w = q.dequantize();
    replaced[weight_name(q)].assign(w.data(), w.data() + w.size());
  }
  std::vector<OwnedTensor> tensors;
  for (const TensorView* t : source.tensors()) {
    const auto it = replaced.find(t->name);
    if (it == replaced.end()) {
      tensors.push_back(
          {t->name, t->dtype, t->shape, std::vector<std::byte>(t->bytes.begin(), t->bytes.end())});
      continue;
    }
    tensors.push_back(OwnedTensor::float32(t->name, t->shape, it->second));
  }
  return Model::from_checkpoint("in-memory", load_model_config(tiny()),
                                Checkpoint::from_memory("in-memory", std::move(tensors)));
}

double perplexity(const Model& model, const std::optional<ActivationQuant>& activations) {
  EvalConfig config;
  config.ctx = 128;
  config.max_windows = 8;
  std::optional<Int8Activations> transform;
  if (activations) config.input_transform = &transform.emplace(*activations);
  return evaluate(model, read_ids(test::fixture("goldens/tiny/eval_generic.ids")), config).ppl;
}

std::uintmax_t folder_bytes(const fs::path& dir) {
  std::uintmax_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) total += e.file_size();
  return total;
}

// quantization_config as each format's loaders read it.
void expect_config(const Case& c, const nlohmann::json& q, const fs::path& out,
                   const std::vector<QuantizedLinear>& linears) {
  if (c.format == OutputFormat::awq) {
    EXPECT_EQ(q.at("quant_method"), "awq");
    EXPECT_EQ(q.at("bits"), 4);
    EXPECT_EQ(q.at("group_size"), 128);
    EXPECT_EQ(q.at("zero_point"), true);
    EXPECT_EQ(q.at("version"), "gemm");
    return;
  }
  if (c.format == OutputFormat::bnb_nf4) {
    EXPECT_EQ(q.at("quant_method"), "bitsandbytes");
    EXPECT_EQ(q.at("load_in_4bit"), true);
    EXPECT_EQ(q.at("bnb_4bit_quant_type"), "nf4");
    EXPECT_EQ(q.at("bnb_4bit_use_double_quant"), true);
    return;
  }
  if (c.format == OutputFormat::compressed_tensors) {
    EXPECT_EQ(q.at("quant_method"), "compressed-tensors");
    const auto& group = q.at("config_groups").at("group_0");
    if (c.method == Method::W8A8) {
      EXPECT_EQ(q.at("format"), "int-quantized");
      const auto& a = group.at("input_activations");
      EXPECT_EQ(a.at("num_bits"), 8);
      const bool token = c.activations == ActGranularity::Token;
      EXPECT_EQ(a.at("strategy"), token ? "token" : "tensor");
      EXPECT_EQ(a.at("dynamic"), token);
      EXPECT_EQ(group.at("weights").at("strategy"), "channel");
      return;
    }
    EXPECT_EQ(q.at("format"), "pack-quantized");
    const auto& w = group.at("weights");
    EXPECT_EQ(w.at("num_bits"), c.bits);
    EXPECT_EQ(w.at("symmetric"), !c.asymmetric);
    EXPECT_EQ(w.at("strategy"), c.channel ? "channel" : "group");
    EXPECT_EQ(w.at("actorder"), c.act_order ? nlohmann::json("weight") : nlohmann::json(nullptr));
    return;
  }
  EXPECT_EQ(q.at("quant_method"), "gptq");
  EXPECT_EQ(q.at("bits"), c.bits);
  EXPECT_EQ(q.at("group_size"), c.channel ? -1 : 128);
  EXPECT_EQ(q.at("desc_act"), c.act_order);
  EXPECT_EQ(q.at("sym"), !c.asymmetric);
  EXPECT_EQ(nlohmann::json::parse(test::read_bytes(out / "quantize_config.json")), q);
  bool zero_of_zero = false;  // v1 stores zero - 1: a zero of 0 needs gptq_v2
  for (const auto& l : linears)
    zero_of_zero |= std::get<QuantizedMatrix>(l.weight).zeros.minCoeff() == 0.0f;
  EXPECT_EQ(q.at("checkpoint_format"), zero_of_zero ? "gptq_v2" : "gptq");
}

class PackedOutput : public testing::TestWithParam<Case> {};

TEST_P(PackedOutput, IsTheModelGptqLeftInMemory) {
  const Case& c = GetParam();
  const PackedRun r = run_of(c);
  const fs::path dir = test::temp_dir("packed-output-" + std::to_string(getpid()));
  const fs::path out = dir / "out";
  ASSERT_EQ(
      run(test::ptq_binary().string() + " quantize --model " + tiny().string() + " " + r.flags +
              " --calib-ids " + calib_ids().string() + " --samples " + std::to_string(kSamples) +
              " --seqlen " + std::to_string(kSeqlen) + " --out " + out.string(),
          dir / "ptq.log"),
      0)
      << test::read_bytes(dir / "ptq.log");

  const InMemory memory = in_memory(r.recipe);
  const std::vector<QuantizedLinear>& linears = memory.linears;
  const auto config = nlohmann::json::parse(test::read_bytes(out / "config.json"));
  expect_config(c, config.at("quantization_config"), out, linears);
  const Checkpoint packed = Checkpoint::open(out);
  for (const auto& l : linears) {
    const TensorView* t = packed.find(weight_name(l));  // bitsandbytes, int-quantized: codes
    if (c.format == OutputFormat::bnb_nf4 || c.method == Method::W8A8) {
      ASSERT_NE(t, nullptr) << weight_name(l);
      EXPECT_EQ(t->dtype, c.method == Method::W8A8 ? DType::I8 : DType::U8) << weight_name(l);
    } else {
      EXPECT_EQ(t, nullptr) << weight_name(l);
    }
  }

  // NumPy's decoding of the file is GPTQ's in-memory weights, bit for bit.
  ASSERT_EQ(run("python3 " + (test::source_dir() / "tests/data/packed_decode.py").string() + " " +
                    out.string() + " " + (dir / "numpy").string(),
                dir / "numpy.log"),
            0)
      << test::read_bytes(dir / "numpy.log");
  for (const auto& l : linears) {
    const std::string base = weight_name(l).substr(0, weight_name(l).size() - 7);
    const std::vector<float> decoded = test::read_f32(dir / "numpy" / (base + ".weight.f32"));
    MatrixRM want = l.dequantize();
    if (c.format == OutputFormat::bnb_nf4)  // bitsandbytes dequantizes to the source dtype
      want = want.unaryExpr([](float v) { return half_to_float(float_to_half(v)); });
    ASSERT_EQ(decoded.size(), static_cast<std::size_t>(want.size())) << base;
    EXPECT_EQ(std::memcmp(decoded.data(), want.data(), decoded.size() * sizeof(float)), 0) << base;
  }

  const double file =
      perplexity(open_model(out), load_activation_quant(out, load_model_config(out).num_layers));
  const double in_memory_ppl = perplexity(in_memory_model(memory), memory.activations);
  EXPECT_NEAR(file, in_memory_ppl, 1e-4 * in_memory_ppl);
  // run.json and `ptq inspect` state the format and the Linears' bits per weight:
  // the code bits plus the scales', zeros' and g_idx's share.
  const auto size = nlohmann::json::parse(test::read_bytes(out / "run.json")).at("size");
  EXPECT_EQ(size.at("format"), output_format_info(c.format).name);
  EXPECT_GT(size.at("linear_bits_per_weight").get<double>(), c.bits);
  EXPECT_LT(size.at("linear_bits_per_weight").get<double>(), c.bits + 0.6);
  ASSERT_EQ(run(test::ptq_binary().string() + " inspect " + out.string() + " --json",
                dir / "inspect.json"),
            0)
      << test::read_bytes(dir / "inspect.json");
  EXPECT_EQ(nlohmann::json::parse(test::read_bytes(dir / "inspect.json"))
                .at("quantization")
                .at("linear_bits_per_weight"),
            size.at("linear_bits_per_weight"));
  const auto packed_bytes = fs::file_size(out / "model.safetensors");
  EXPECT_LE(static_cast<double>(folder_bytes(out)), 1.15 * static_cast<double>(packed_bytes));
  EXPECT_LT(packed_bytes, fs::file_size(tiny() / "model.safetensors"));
}

// A damaged packed folder given to `ptq eval` is an input error (exit 2)
// naming the file or tensor, never a crash or a silent wrong model.
TEST(PackedOutputDamaged, EvalNamesWhatIsWrong) {
  const fs::path dir = test::temp_dir("packed-damaged-" + std::to_string(getpid()));
  const fs::path good = dir / "good";
  ASSERT_EQ(run(test::ptq_binary().string() + " quantize --model " + tiny().string() +
                    " --method rtn --bits 4 --group 128 --sym --format gptq --out " + good.string(),
                dir / "ptq.log"),
            0)
      << test::read_bytes(dir / "ptq.log");
  struct Damage {
    const char* name;
    std::function<void(nlohmann::json&)> edit;  // of config.json
    std::string message;
  };
  const Damage damages[] = {
      {"bits", [](nlohmann::json& c) { c["quantization_config"]["bits"] = 8; }, "groups"},
      {"five-bits", [](nlohmann::json& c) { c["quantization_config"]["bits"] = 5; }, "bits"},
      {"group", [](nlohmann::json& c) { c["quantization_config"]["group_size"] = 64; }, "groups"},
      {"format",
       [](nlohmann::json& c) { c["quantization_config"]["checkpoint_format"] = "marlin"; },
       "checkpoint_format"},
  };
  for (const Damage& d : damages) {
    SCOPED_TRACE(d.name);
    const fs::path bad = dir / d.name;
    fs::create_directories(bad);
    for (const auto& f : fs::directory_iterator(good))
      fs::copy_file(f.path(), bad / f.path().filename());
    nlohmann::json config = nlohmann::json::parse(test::read_bytes(bad / "config.json"));
    d.edit(config);
    fs::remove(bad / "config.json");
    std::ofstream(bad / "config.json") << config.dump();
    const fs::path log = dir / (std::string(d.name) + ".log");
    EXPECT_EQ(run(test::ptq_binary().string() + " eval --model " + bad.string() + " --ids " +
                      test::fixture("goldens/tiny/eval_generic.ids").string() +
                      " --ctx 128 --max-windows 1",
                  log),
              2)
        << test::read_bytes(log);
    EXPECT_NE(test::read_bytes(log).find(d.message), std::string::npos) << test::read_bytes(log);
  }
}

// Grids a packed format cannot hold are refused before any work, naming the
// format and what it needs; no output folder is left.
TEST(PackedOutputRefused, BeforeAnyWork) {
  const fs::path dir = test::temp_dir("packed-refused-" + std::to_string(getpid()));
  const std::string calib = " --calib-ids " + calib_ids().string();
  struct Refused {
    std::string args, message;
  };
  const Refused cases[] = {
      {"--method gptq --bits 4 --group 128 --act-order --format compressed-tensors" + calib,
       "static groups"},
      {"--method gptq --bits 4 --group 128 --act-order --format awq" + calib, "static groups"},
      {"--method rtn --bits 4 --group 128 --sym --format awq", "4-bit asymmetric"},
      {"--method rtn --bits 5 --format gptq", "bits 2, 3, 4 or 8"},
      {"--method rtn --bits 3 --format compressed-tensors", "bits 4 or 8"},
      {"--method rtn --bits 4 --group tensor --format gptq", "group or channel"},
      {"--method w8a8 --format gptq" + calib, "only compressed-tensors"},
  };
  for (const Refused& c : cases) {
    SCOPED_TRACE(c.args);
    const fs::path out = dir / "out";
    EXPECT_EQ(run(test::ptq_binary().string() + " quantize --model " + tiny().string() + " " +
                      c.args + " --out " + out.string(),
                  dir / "log"),
              2);
    EXPECT_NE(test::read_bytes(dir / "log").find(c.message), std::string::npos)
        << test::read_bytes(dir / "log");
    EXPECT_FALSE(fs::exists(out));
  }
}

// Without --format, `ptq quantize` writes the packed format that fits the
// method; a grid no packed format holds falls back to the dequantized folder,
// saying why.
TEST(PackedByDefault, TheFormatThatFitsTheMethod) {
  const fs::path dir = test::temp_dir("packed-default-" + std::to_string(getpid()));
  const std::string calib = " --calib-ids " + calib_ids().string() + " --samples 4 --seqlen 64";
  struct Default {
    std::string args, format, quant_method;
  };
  const Default cases[] = {
      {"--method rtn --bits 4 --group 128", "gptq", "gptq"},
      {"--method gptq --bits 3 --group channel" + calib, "gptq", "gptq"},
      {"--method awq --bits 4 --group 128" + calib, "awq", "awq"},
      {"--method w8a8", "compressed-tensors", "compressed-tensors"},
      {"--method nf4", "bnb-nf4", "bitsandbytes"},
      {"--method rtn --bits 5 --group 128", "dequantized", ""},
  };
  int n = 0;
  for (const Default& c : cases) {
    SCOPED_TRACE(c.args);
    const fs::path out = dir / std::to_string(++n);
    ASSERT_EQ(run(test::ptq_binary().string() + " quantize --model " + tiny().string() + " " +
                      c.args + " --out " + out.string(),
                  dir / "log"),
              0)
        << test::read_bytes(dir / "log");
    const auto run_json = nlohmann::json::parse(test::read_bytes(out / "run.json"));
    EXPECT_EQ(run_json.at("size").at("format"), c.format);
    const auto config = nlohmann::json::parse(test::read_bytes(out / "config.json"));
    if (c.quant_method.empty()) {
      EXPECT_FALSE(config.contains("quantization_config"));
      EXPECT_NE(test::read_bytes(dir / "log").find("dequantized format: format gptq"),
                std::string::npos)
          << test::read_bytes(dir / "log");
    } else {
      EXPECT_EQ(config.at("quantization_config").at("quant_method"), c.quant_method);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    PackedOutput, PackedOutput,
    testing::Values(
        Case{"GptqW4Sym", OutputFormat::gptq, 4, false, false, false, false},
        Case{"GptqW3AsymActOrder", OutputFormat::gptq, 3, true, true, false, false},
        Case{"AwqW4Asym", OutputFormat::awq, 4, true, false, false, false},
        Case{"CompressedW4Sym", OutputFormat::compressed_tensors, 4, false, false, false, false},
        Case{"CompressedW4SymActOrderStatic", OutputFormat::compressed_tensors, 4, false, true,
             false, true},
        Case{"CompressedW8AsymChannel", OutputFormat::compressed_tensors, 8, true, false, true,
             false},
        Case{"BitsandbytesNf4", OutputFormat::bnb_nf4, 4, false, false, false, false, Method::Nf4},
        Case{"CompressedW8A8Token", OutputFormat::compressed_tensors, 8, false, false, true, false,
             Method::W8A8, ActGranularity::Token},
        Case{"CompressedW8A8Tensor", OutputFormat::compressed_tensors, 8, false, false, true, false,
             Method::W8A8, ActGranularity::Tensor}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace ptq
