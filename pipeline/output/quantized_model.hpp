#pragma once
// What a quantization run produces, as the writers take it: each Linear's
// quantized weight with its report, and what a method changes besides the
// Linears. Drivers (pipeline/quantize/) fill these; writers never include the
// drivers' headers.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "algorithms/quantized_weight.hpp"
#include "calibrate/act_quant.hpp"
#include "calibrate/tensor_names.hpp"
#include "io/hdf5.hpp"
#include "pipeline/output/block_scales.hpp"

namespace ptq {

// How a mixture layer's expert got its Hessian: from the tokens routed to it,
// or from every calibration token (all-expert routing was asked for, or it was
// routed fewer than the recipe's experts.min_tokens).
enum class ExpertHessian { routed, all_tokens };
std::string_view expert_hessian_name(ExpertHessian h);  // "routed", "all_tokens"

struct LinearReport {
  int layer = 0;
  LinearRole role = LinearRole::q;
  int expert = -1;  // an expert's Linear in a mixture layer, else -1
  // Experts: calibration tokens routed to the expert (-1 without calibration).
  std::int64_t routed_tokens = -1;
  ExpertHessian expert_hessian = ExpertHessian::routed;
  double weight_mse = 0.0;
  double gptq_loss = 0.0;        // 0 for RTN
  double damping = 0.0;          // absolute damping added to diag H (GPTQ)
  int damping_retries = 0;       // Cholesky retries with more damping
  bool cholesky_failed = false;  // fell back to RTN
  double seconds = 0.0;
};

struct QuantizedLinear {
  int layer = 0;
  LinearRole role = LinearRole::q;
  QuantizedWeight weight;
  LinearReport report;
  int expert = -1;  // as LinearReport::expert

  MatrixRM dequantize() const { return ptq::dequantize(weight); }
  LinearKey key() const { return {layer, role, expert}; }
};

// Every Linear a run quantized, in order. Each weight is held in memory or, in
// runs that save every finished block to an HDF5 file (the resume checkpoints,
// write_quantized_linear's layout), left in that file and read back when a
// writer asks for it: writing a model then holds one Linear's weight at a time,
// however many layers it has. The reports are always in memory.
class QuantizedLinears {
 public:
  QuantizedLinears() = default;
  explicit QuantizedLinears(std::vector<QuantizedLinear> held);

  void add(QuantizedLinear q);
  // A Linear whose weight is in `file` under linear_group_path(report.layer, report.role).
  void add_stored(const std::filesystem::path& file, const LinearReport& report);

  std::size_t size() const { return entries_.size(); }
  const LinearReport& report(std::size_t i) const { return entries_.at(i).report; }
  // Linear i: the held one, or read from its file (a fresh copy each call).
  std::shared_ptr<const QuantizedLinear> get(std::size_t i) const;
  // f on every Linear in order, each stored one read just before its call.
  void for_each(const std::function<void(const QuantizedLinear&)>& f) const;
  // The Linears stored in each checkpoint weight ("<module>.weight"): one
  // index, or a fused module's parts in row order (linear_storage).
  std::map<std::string, std::vector<std::size_t>> by_weight_name(const ModelConfig& config) const;
  // The Linear of one entry of by_weight_name: Linear i itself, or the parts'
  // rows stacked into the fused module (named `where` in errors), with part 0's
  // layer, role and report.
  std::shared_ptr<const QuantizedLinear> get(std::span<const std::size_t> indices,
                                             const std::string& where) const;
  // Every Linear in memory (for callers that compare whole runs).
  std::vector<QuantizedLinear> load_all() const;

 private:
  struct Entry {
    LinearReport report;
    std::shared_ptr<const QuantizedLinear> held;  // or null: in `file`
    std::filesystem::path file;
  };
  std::vector<Entry> entries_;
};

// A float tensor of the source that a method rewrites (norms that SmoothQuant or
// AWQ scales fold into); written as float32, since rounding it to float16 would
// undo part of the fold's invariance.
struct ReplacedTensor {
  std::string name;  // checkpoint name
  std::vector<float> values;
};

// What a method changes besides the Linears. `activations` is recorded in
// config.json (and static scales in quantized.h5) so `ptq eval` simulates them.
struct ModelExtras {
  std::vector<ReplacedTensor> tensors;
  std::optional<ActivationQuant> activations;
  // Scales folded in before rounding (recipe.folds_scales()), one per layer:
  // saved in quantized.h5 and replayed by --load-scales.
  std::vector<BlockScales> scales;
  // A mix of grids (Recipe::mixes): mix.json's text (each tensor's grid and
  // why, pipeline/formats/mix_file.hpp), or empty.
  std::string mix;
};

// Hessians mixed from cached float statistics (`ptq quantize --stats`)
// instead of a sequential calibration run: an approximation, said so in the
// README and run.json.
struct StatsMixRecord {
  std::filesystem::path file;
  std::vector<std::string> sources;
  std::vector<double> weights;       // per source, as given (not normalised)
  std::vector<std::int64_t> tokens;  // per source, in the file
};

struct RunInfo {
  double seconds = 0.0;
  int threads = 0;
  std::string device = "cpu";  // where the dense kernels ran (MatrixBackend::name)
  std::vector<std::string> warnings;
  std::optional<StatsMixRecord> from_stats;
  // model_hash of the source, when the run computed it beside its work (it
  // reads the whole checkpoint); empty: computed as the record is written.
  std::string source_model_hash;
};

// HDF5 layout of a quantized Linear, shared by quantized.h5 and the resume
// checkpoints: its weight (pipeline/formats/weight_record.hpp) under
// layers/<i>/<role>, with the report as attributes (weight_mse, gptq_loss,
// damping, damping_retries, cholesky_failed, and seconds `with_timing`).
// An expert's Linears are under layers/<i>/experts/<e>/<role>, with the
// tokens routed to the expert (routed_tokens) and where its Hessian came from
// (expert_hessian: "routed" or "all_tokens").
std::string linear_group_path(const LinearKey& key);  // "layers/<i>/<role>"
enum class Timing { omit, record };
void write_quantized_linear(H5Writer& out, const QuantizedLinear& q, Timing timing);
// The report attributes alone, on its group (a record whose weights are elsewhere).
void write_linear_report(H5Writer& out, const LinearReport& report, Timing timing);
LinearReport read_linear_report(const H5Reader& in, const LinearKey& key);
QuantizedLinear read_quantized_linear(const H5Reader& in, const LinearKey& key);

}  // namespace ptq
