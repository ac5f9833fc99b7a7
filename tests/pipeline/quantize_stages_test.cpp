// quantize_blocks runs each stage of a block once per batch (keeping the
// attention context and MLP hidden state, or recomputing them). Its result
// must equal, bit for bit, the plain true-sequential flow written with whole
// block passes: per group, block_forward with a stop-after observer over all
// batches, then one full pass to advance the windows.
#include <gtest/gtest.h>

#include "algorithms/gptq.hpp"
#include "algorithms/refit.hpp"
#include "calibrate/input_stats.hpp"
#include "calibrate/model.hpp"
#include "io/error.hpp"
#include "pipeline/quantize/quantize.hpp"
#include "pipeline/quantize/quantize_run.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

constexpr int kWindows = 5;       // with batches of 2: two full batches and a partial one
constexpr int kSeqLen = 64;
constexpr int kBatchWindows = 2;

std::filesystem::path tiny() { return test::fixture("models/tiny"); }

Recipe gptq_recipe() {
  Recipe r;
  r.method = Method::Gptq;
  r.spec.bits = 4;
  r.spec.granularity = Granularity::Group;
  r.spec.group_size = 128;
  r.order = ColumnOrder::ActivationOrder;
  r.calibration.samples = kWindows;
  r.calibration.seqlen = kSeqLen;
  r.sources = {{"generic", test::fixture("goldens/tiny/calib_generic.ids"), 1.0}};
  return r;
}

class Collector : public LinearObserver {
 public:
  Collector(LinearInput wanted, int in_features) : wanted_(wanted), stats(in_features) {}
  void observe(int, std::span<const LinearRole> roles, const MatrixRM& x) override {
    if (linear_spec(roles.front()).input == wanted_) stats.add(x);
  }
  LinearInput wanted_;
  InputStats stats;
};

// Runs `w` over x batch by batch; with `advance`, x becomes the block output.
void block_passes(const ModelConfig& c, const BlockWeights& w, MatrixRM& x, const ForwardOptions& options,
                  bool advance) {
  const Eigen::Index batch_rows = Eigen::Index{kBatchWindows} * kSeqLen;
  for (Eigen::Index r0 = 0; r0 < x.rows(); r0 += batch_rows) {
    Activations act{x.middleRows(r0, std::min(batch_rows, x.rows() - r0)), kSeqLen};
    block_forward(c, w, act, options);
    if (advance) x.middleRows(r0, act.x.rows()) = act.x;
  }
}

// The reference flow: one statistics pass per group, GPTQ with H = 2/n XᵀX,
// then the recipe's code sweeps and least-squares refit under that H.
std::vector<QuantizedMatrix> reference_quantize(const Model& model, const Recipe& recipe,
                                                const CalibrationSet& calib) {
  std::vector<std::int32_t> ids;
  for (const auto& w : calib.windows) ids.insert(ids.end(), w.ids.begin(), w.ids.end());
  MatrixRM x = model.embed(ids);
  std::vector<QuantizedMatrix> out;
  for (int layer = 0; layer < model.num_layers(); ++layer) {
    BlockWeights w = model.load_block(layer);
    for (LinearRole role : all_linear_roles) {
      const LinearInput input = linear_spec(role).input;
      const bool first_of_group = role == LinearRole::q || role == LinearRole::o || role == LinearRole::gate ||
                                  role == LinearRole::down;
      if (!first_of_group) continue;
      Collector collector(input, linear_in_features(model.config(), role));
      ForwardOptions options = observing(&collector);
      options.stop_after = input;
      block_passes(model.config(), w, x, options, false);
      for (const auto& spec : linear_specs) {
        if (spec.input != input) continue;
        const Eigen::MatrixXd h = 2.0 * collector.stats.mean_xtx();
        out.push_back(gptq_quantize(w.weight(spec.role), h, recipe.gptq_config()).quantized);
        if (recipe.code_sweeps > 0)
          descend_codes(out.back(), w.weight(spec.role), h, recipe.code_sweeps);
        if (recipe.refit == ScaleRefit::LeastSquares)
          refit_scales(out.back(), w.weight(spec.role), h);
        w.weight(spec.role) = out.back().dequantize();
      }
    }
    block_passes(model.config(), w, x, {}, true);
  }
  return out;
}

void expect_same(const std::vector<QuantizedLinear>& got, const std::vector<QuantizedMatrix>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    const std::string what = "layer " + std::to_string(got[i].layer) + " " +
                             std::string(linear_role_name(got[i].role));
    EXPECT_TRUE(std::get<QuantizedMatrix>(got[i].weight).codes == want[i].codes) << what;
    EXPECT_TRUE(std::get<QuantizedMatrix>(got[i].weight).scales == want[i].scales) << what;
    EXPECT_TRUE(std::get<QuantizedMatrix>(got[i].weight).zeros == want[i].zeros) << what;
    EXPECT_EQ(std::get<QuantizedMatrix>(got[i].weight).g_idx, want[i].g_idx) << what;
  }
}

TEST(QuantizeStages, BitIdenticalToBlockPassesWithCachesKeptOrRecomputed) {
  const Model model = Model::open(tiny());
  const Recipe recipe = gptq_recipe();
  const CalibrationSet calib = load_calibration(tiny(), recipe.sources, recipe.calibration);
  const auto want = reference_quantize(model, recipe, calib);

  QuantizeRunOptions kept;
  kept.batch_windows = kBatchWindows;
  expect_same(quantize_blocks(model, recipe, &calib, kept).load_all(), want);

  QuantizeRunOptions recomputed = kept;
  recomputed.cache_budget_bytes = 0;
  std::vector<std::string> log;
  expect_same(quantize_blocks(model, recipe, &calib, recomputed,
                              {[&](const std::string& l) { log.push_back(l); }})
                  .load_all(),
              want);
  ASSERT_GE(log.size(), 2u);
  EXPECT_NE(log[0].find("attention context"), std::string::npos) << log[0];
  EXPECT_NE(log[1].find("MLP hidden states"), std::string::npos) << log[1];
}

// The steps after GPTQ that read H (Recipe::reads_hessian_after_rounding)
// get each group's own: the same bytes as the reference flow's.
TEST(QuantizeStages, CodeSweepsAndRefitReadTheirGroupsHessian) {
  const Model model = Model::open(tiny());
  Recipe recipe = gptq_recipe();
  recipe.code_sweeps = 2;
  recipe.refit = ScaleRefit::LeastSquares;
  const CalibrationSet calib = load_calibration(tiny(), recipe.sources, recipe.calibration);
  QuantizeRunOptions options;
  options.batch_windows = kBatchWindows;
  expect_same(quantize_blocks(model, recipe, &calib, options).load_all(),
              reference_quantize(model, recipe, calib));
}

TEST(QuantizeStages, CachesKeptOnlyWithinTheBudget) {
  const ModelConfig c = Model::open(tiny()).config();
  const std::int64_t tokens = 1000;
  const auto hidden_bytes = stage_input_bytes(c, LinearInput::mlp_hidden, tokens);
  EXPECT_EQ(hidden_bytes, std::uint64_t(tokens) * c.intermediate_size * sizeof(float));
  const StageCaches at = stage_caches(c, tokens, hidden_bytes);
  EXPECT_EQ(at.hidden, CachePolicy::keep);
  EXPECT_EQ(at.context, CachePolicy::keep);  // the context is narrower than the hidden state
  const StageCaches below = stage_caches(c, tokens, hidden_bytes - 1);
  EXPECT_EQ(below.hidden, CachePolicy::recompute);
  EXPECT_EQ(below.context, CachePolicy::keep);
}

TEST(QuantizeStages, BatchWindowsBelowOneIsAnInputError) {
  QuantizeRunOptions options;
  options.batch_windows = 0;
  EXPECT_THROW(options.validate(), InputError);
}

}  // namespace
}  // namespace ptq
