// Seeds of packed_folder, weight_record and mix_file, written by the same
// code as ptq's outputs: one Linear [32, 64] of random weights quantized on
// each format's grids, packed into a folder (config.json + model.safetensors),
// stored as a quantized.h5 record, or chosen by a mix.
#include <hdf5.h>

#include <random>

#include "algorithms/int8.hpp"
#include "algorithms/rtn.hpp"
#include "fuzz_util.hpp"
#include "io/text_file.hpp"
#include "pipeline/formats/mix_file.hpp"
#include "pipeline/formats/weight_record.hpp"
#include "pipeline/output/packed_output.hpp"
#include "seeds.hpp"

namespace ptq::fuzz {

namespace {

namespace fs = std::filesystem;

const std::string kLinear = "model.layers.0.self_attn.q_proj.weight";

MatrixRM weights(int rows, int cols) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  MatrixRM W(rows, cols);
  for (Eigen::Index i = 0; i < W.size(); ++i) W.data()[i] = normal(rng);
  return W;
}

QuantSpec spec(int bits, Symmetry symmetry, Granularity granularity) {
  QuantSpec s;
  s.bits = bits;
  s.symmetry = symmetry;
  s.granularity = granularity;
  s.group_size = 32;
  s.scale_storage = ScaleStorage::f16;
  return s;
}

struct PackedSeed {
  std::string name;
  OutputFormat format;
  QuantizedWeight weight;
  std::optional<ActivationQuant> activations;
};

// config.json + model.safetensors (the Linear's packed tensors and a norm), joined.
std::string packed_folder(const Seeds& seeds, const PackedSeed& p) {
  const fs::path dir = seeds.work("packed-" + p.name);
  const QuantizedLinear q{0, LinearRole::q, p.weight, {}};
  PackedLayout layout{.activations = p.activations};
  Recipe recipe;
  recipe.format = p.format;
  if (const auto* m = std::get_if<QuantizedMatrix>(&p.weight)) {
    recipe.spec = m->spec;
    layout.zeros = gptq_zeros_needed(*m);
  }
  const std::vector<float> norm(32, 1.0f);
  const auto tensors = packed_linear_tensors(p.format, kLinear, q, layout);
  std::vector<TensorToWrite> written = {
      {"model.norm.weight", DType::F32, {32}, std::as_bytes(std::span(norm))}};
  for (const PackedTensor& t : tensors) written.push_back({t.name, t.dtype, t.shape, t.bytes});
  write_safetensors(dir / "model.safetensors", written);
  write_text_atomic(dir / "config.json", R"({"model_type": "llama"})");
  write_packed_config(dir, recipe, layout);
  const std::string files[] = {read_file(dir / "config.json"),
                               read_file(dir / "model.safetensors")};
  return join_files(files);
}

void add_packed_folders(const Seeds& seeds) {
  const MatrixRM W = weights(32, 64);
  using enum Symmetry;
  using enum Granularity;
  InputScales scales;
  scales.fill(0.5f);
  const ActivationQuant per_tensor{ActGranularity::Tensor, {scales}};
  const PackedSeed packed[] = {
      {"gptq-w4-g32", OutputFormat::gptq, rtn_quantize(W, spec(4, Symmetric, Group)), {}},
      {"gptq-w3-g32-asym", OutputFormat::gptq, rtn_quantize(W, spec(3, Asymmetric, Group)), {}},
      {"gptq-w8-channel", OutputFormat::gptq, rtn_quantize(W, spec(8, Symmetric, Channel)), {}},
      {"awq-w4-g32", OutputFormat::awq, rtn_quantize(W, spec(4, Asymmetric, Group)), {}},
      {"ct-w4-g32",
       OutputFormat::compressed_tensors,
       rtn_quantize(W, spec(4, Symmetric, Group)),
       {}},
      {"ct-w8-channel-asym",
       OutputFormat::compressed_tensors,
       rtn_quantize(W, spec(8, Asymmetric, Channel)),
       {}},
      {"ct-w8a8-token", OutputFormat::compressed_tensors, int8_quantize_rows(W), ActivationQuant{}},
      {"ct-w8a8-tensor", OutputFormat::compressed_tensors, int8_quantize_rows(W), per_tensor},
      {"bnb-nf4", OutputFormat::bnb_nf4, nf4_quantize(W, Nf4Config{}), {}},
  };
  for (const PackedSeed& p : packed) seeds.add("packed_folder", p.name, packed_folder(seeds, p));
}

// ---- weight_record: an HDF5 group as weight_record_fuzz.cpp's text

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", v);
  return text;
}

herr_t attribute_line(hid_t object, const char* name, const H5A_info_t*, void* out) {
  const hid_t attr = H5Aopen(object, name, H5P_DEFAULT);
  const hid_t type = H5Aget_type(attr);
  std::string line = std::string("attr ") + name;
  if (H5Tget_class(type) == H5T_STRING) {
    std::string text(H5Tget_size(type), '\0');
    H5Aread(attr, type, text.data());
    line += " string " + text.substr(0, text.find('\0'));
  } else {
    double v = 0;
    H5Aread(attr, H5T_NATIVE_DOUBLE, &v);
    line += (H5Tget_class(type) == H5T_INTEGER ? " int " : " float ") + number(v);
  }
  H5Tclose(type);
  H5Aclose(attr);
  *static_cast<std::string*>(out) += line + "\n";
  return 0;
}

std::string type_name(hid_t type) {
  const std::size_t size = H5Tget_size(type);
  if (H5Tget_class(type) == H5T_FLOAT) return size == 4 ? "f32" : "f64";
  return size == 1 ? "u8" : size == 4 ? "i32" : "i64";
}

herr_t dataset_line(hid_t group, const char* name, const H5L_info_t*, void* out) {
  const hid_t set = H5Dopen2(group, name, H5P_DEFAULT);
  const hid_t type = H5Dget_type(set), space = H5Dget_space(set);
  std::vector<hsize_t> dims(static_cast<std::size_t>(H5Sget_simple_extent_ndims(space)));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  std::vector<double> values(static_cast<std::size_t>(H5Sget_simple_extent_npoints(space)));
  H5Dread(set, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data());
  std::string line = std::string("dataset ") + name + " " + type_name(type) + " ";
  for (std::size_t i = 0; i < dims.size(); ++i) line += (i ? "x" : "") + std::to_string(dims[i]);
  line += ":";
  for (const double v : values) line += " " + number(v);
  H5Sclose(space);
  H5Tclose(type);
  H5Dclose(set);
  *static_cast<std::string*>(out) += line + "\n";
  return 0;
}

std::string record_text(const fs::path& file, const std::string& group) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t g = H5Gopen2(f, group.c_str(), H5P_DEFAULT);
  std::string text;
  H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, nullptr, attribute_line, &text);
  H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, nullptr, dataset_line, &text);
  H5Gclose(g);
  H5Fclose(f);
  return text;
}

void add_weight_records(const Seeds& seeds) {
  const MatrixRM W = weights(2, 256);
  const std::vector<std::pair<std::string, QuantizedWeight>> records = {
      {"uniform-w4-g32", rtn_quantize(W, spec(4, Symmetry::Asymmetric, Granularity::Group))},
      {"uniform-q4_1-grid", rtn_quantize(W, *ggml_uniform_spec(GgmlGrid::q4_1))},
      {"nf4", nf4_quantize(W, Nf4Config{})},
      {"ggml-q4_k", ggml_quantize(GgmlGrid::q4_k, W)},
      {"ggml-q5_0", ggml_quantize(GgmlGrid::q5_0, W)},
  };
  const fs::path file = seeds.work("weight_record") / "record.h5";
  for (const auto& [name, weight] : records) {
    H5Writer out(file);
    write_weight(out, "w", weight);
    out.commit();
    seeds.add("weight_record", name, record_text(file, "w"));
  }
}

void add_mix_files(const Seeds& seeds) {
  const MixTypes gguf = {{"blk.0.attn_q.weight", "Q4_K"}, {"blk.0.ffn_down.weight", "Q6_K"}};
  const MixTypes ct = {{"model.layers.0.self_attn.q_proj", "w4-g128"},
                       {"model.layers.0.mlp.down_proj", "w8-pc"}};
  seeds.add("mix_file", "gguf.json", mix_types_json(gguf, "gguf"));
  seeds.add("mix_file", "compressed-tensors.json", mix_types_json(ct, "compressed-tensors"));
}

}  // namespace

void add_formats_seeds(const Seeds& seeds) {
  add_packed_folders(seeds);
  add_weight_records(seeds);
  add_mix_files(seeds);
}

}  // namespace ptq::fuzz
