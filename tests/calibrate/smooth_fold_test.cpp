// Folding SmoothQuant scales into a real block (tiny, layer 1) leaves
// block_forward's output unchanged within float error, before any rounding.
#include <gtest/gtest.h>

#include "algorithms/smoothquant.hpp"
#include "calibrate/model.hpp"
#include "io/ids_file.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

// Per-channel absmax of the attention and MLP inputs, as SmoothQuant collects them.
class NormedInputAbsmax : public LinearObserver {
 public:
  void observe(int, std::span<const LinearRole> roles, const MatrixRM& x) override {
    const LinearInput input = linear_spec(roles.front()).input;
    if (input == LinearInput::attention_in) attention = x.cwiseAbs().colwise().maxCoeff().transpose();
    if (input == LinearInput::mlp_in) mlp = x.cwiseAbs().colwise().maxCoeff().transpose();
  }
  Eigen::VectorXf attention, mlp;
};

TEST(SmoothFold, BlockOutputUnchanged) {
  const Model model = Model::open(test::fixture("models/tiny"));
  const auto ids = read_ids(test::fixture("goldens/tiny/calib_generic.ids"));
  const std::span<const std::int32_t> window(ids.data(), 2 * 512);
  Activations in{model.embed(window), 512};
  const BlockWeights float_block = model.load_block(0);
  block_forward(model.config(), float_block, in);  // layer 1 sees real hidden states

  BlockWeights w = model.load_block(1);
  NormedInputAbsmax absmax;
  Activations expected = in;
  block_forward(model.config(), w, expected, observing(&absmax));

  for (double alpha : {0.5, 0.8}) {
    BlockWeights smoothed = w;
    const SmoothQuantConfig config{alpha};
    std::array<MatrixRM*, 3> qkv = {&smoothed.weight(LinearRole::q), &smoothed.weight(LinearRole::k),
                                    &smoothed.weight(LinearRole::v)};
    std::array<MatrixRM*, 2> gate_up = {&smoothed.weight(LinearRole::gate), &smoothed.weight(LinearRole::up)};
    const std::array<const MatrixRM*, 3> qkv_read = {qkv[0], qkv[1], qkv[2]};
    const std::array<const MatrixRM*, 2> gate_up_read = {gate_up[0], gate_up[1]};
    const Eigen::VectorXf s1 = smoothing_scales(absmax.attention, qkv_read, config);
    const Eigen::VectorXf s2 = smoothing_scales(absmax.mlp, gate_up_read, config);
    ASSERT_GT(s1.maxCoeff() / s1.minCoeff(), 1.5f);  // a real migration, not a uniform rescale
    fold_smoothing(s1, smoothed.input_norm, qkv);
    fold_smoothing(s2, smoothed.post_attention_norm, gate_up);
    EXPECT_FALSE(smoothed.weight(LinearRole::q).isApprox(w.weight(LinearRole::q)));

    Activations out = in;
    block_forward(model.config(), smoothed, out);
    const float scale = expected.x.cwiseAbs().maxCoeff();
    // float32 products of rescaled operands: a few ulps of the largest activation.
    EXPECT_LT((out.x - expected.x).cwiseAbs().maxCoeff(), 1e-5f * scale) << "alpha " << alpha;
  }
}

}  // namespace
}  // namespace ptq
