// The block forward's parts against scalar references, its hooks, thread
// invariance, and bad checkpoints.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "algorithms/attention.hpp"
#include "calibrate/model.hpp"
#include "calibrate/threads.hpp"
#include "io/error.hpp"
#include "io/ids_file.hpp"
#include "io/safetensors.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

constexpr float attention_tolerance = 2e-5f;  // float tiles vs double reference, |values| ~ 1

MatrixRM random_matrix(Eigen::Index rows, Eigen::Index cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  MatrixRM m(rows, cols);
  for (Eigen::Index i = 0; i < m.size(); ++i) m.data()[i] = normal(rng);
  return m;
}

TEST(Attention, MatchesScalarReferenceWithGqaAndPartialTiles) {
  std::mt19937 rng(7);
  // 2 sequences of 200 tokens (tiles of 128 + 72), 6 heads over 2 kv heads.
  const AttentionShape shape{200, 6, 2, 16};
  const MatrixRM q = random_matrix(400, 96, rng), k = random_matrix(400, 32, rng),
                  v = random_matrix(400, 32, rng);
  MatrixRM fast, reference;
  causal_attention(q, k, v, shape, fast);
  causal_attention_reference(q, k, v, shape, reference);
  EXPECT_LT((fast - reference).cwiseAbs().maxCoeff(), attention_tolerance);
}

// Gemma's attention: a sliding window shorter than the tile and than the
// sequence (tiles that start past the window), soft-capped scores and the
// query_pre_attn_scalar scale.
TEST(Attention, WindowSoftcapAndScaleMatchScalarReference) {
  std::mt19937 rng(11);
  AttentionShape shape{300, 4, 2, 16};
  shape.scale = 0.2f;
  shape.softcap = 5.0f;
  shape.window = 37;
  const MatrixRM q = random_matrix(600, 64, rng) * 3.0f, k = random_matrix(600, 32, rng),
                 v = random_matrix(600, 32, rng);
  MatrixRM fast, reference, unwindowed;
  causal_attention(q, k, v, shape, fast);
  causal_attention_reference(q, k, v, shape, reference);
  EXPECT_LT((fast - reference).cwiseAbs().maxCoeff(), attention_tolerance);
  // Each knob changes the result (so the reference is not ignoring one).
  for (auto knob : {&AttentionShape::window}) {
    AttentionShape off = shape;
    off.*knob = 0;
    causal_attention_reference(q, k, v, off, unwindowed);
    EXPECT_GT((unwindowed - reference).cwiseAbs().maxCoeff(), 1e-2f);
  }
  for (auto knob : {&AttentionShape::softcap, &AttentionShape::scale}) {
    AttentionShape off = shape;
    off.*knob = 0;
    causal_attention_reference(q, k, v, off, unwindowed);
    EXPECT_GT((unwindowed - reference).cwiseAbs().maxCoeff(), 1e-2f);
  }
}

std::vector<std::int32_t> prompt_ids() {
  return read_ids(test::fixture("goldens/tiny/logits_prompt.ids"));
}

MatrixRM tiny_prompt_logits(int threads) {
  const ThreadScope scope(threads);
  const Model tiny = Model::open(test::fixture("models/tiny"));
  const auto ids = prompt_ids();
  return logits(tiny, ids, static_cast<int>(ids.size()));
}

// Fixed-size chunks and single-threaded BLAS (algorithms/parallel_gemm.hpp):
// the logits are bit-identical for any thread count.
TEST(Forward, LogitsDoNotDependOnThreadCount) {
  const MatrixRM one = tiny_prompt_logits(1);
  const MatrixRM two = tiny_prompt_logits(2);
  ASSERT_EQ(one.rows(), two.rows());
  ASSERT_EQ(one.cols(), two.cols());
  EXPECT_EQ(std::memcmp(one.data(), two.data(), sizeof(float) * one.size()), 0);
}

// Records every observed Linear input of one block.
struct Recorder : LinearObserver {
  std::vector<std::vector<LinearRole>> roles;
  std::vector<MatrixRM> inputs;
  void observe(int, std::span<const LinearRole> r, const MatrixRM& x) override {
    roles.emplace_back(r.begin(), r.end());
    inputs.push_back(x);
  }
};

TEST(Forward, ObserverSeesEachSharedInputOnceWithItsRoles) {
  const Model tiny = Model::open(test::fixture("models/tiny"));
  const ModelConfig& c = tiny.config();
  const auto ids = prompt_ids();
  const BlockWeights w = tiny.load_block(0);
  Activations act{tiny.embed(ids), static_cast<int>(ids.size())};
  const MatrixRM embedded = act.x;
  Recorder rec;
  block_forward(c, w, act, observing(&rec));
  using R = LinearRole;
  const std::vector<std::vector<R>> expected = {
      {R::q, R::k, R::v}, {R::o}, {R::gate, R::up}, {R::down}};
  ASSERT_EQ(rec.roles, expected);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(rec.inputs[i].rows(), static_cast<Eigen::Index>(ids.size()));
    EXPECT_EQ(rec.inputs[i].cols(), linear_in_features(c, expected[i].front()));
  }
  // The q/k/v input is RMSNorm(embedding) * input_norm, computed here in double.
  double worst = 0.0;
  for (Eigen::Index t = 0; t < embedded.rows(); ++t) {
    const double ms = embedded.row(t).cast<double>().squaredNorm() / c.hidden_size;
    for (Eigen::Index i = 0; i < embedded.cols(); ++i) {
      const double want = embedded(t, i) / std::sqrt(ms + c.rms_norm_eps) * w.input_norm[i];
      worst = std::max(worst, std::abs(want - rec.inputs[0](t, i)));
    }
  }
  EXPECT_LT(worst, 1e-4);
}

// Scales the input of `down` by 2: the same as doubling W_down.
struct DoubleDownInput : LinearInputTransform {
  void apply(int, std::span<const LinearRole> roles, MatrixRM& x) const override {
    if (roles.front() == LinearRole::down) x *= 2.0f;
  }
};

TEST(Forward, InputTransformAndReplacedWeightsAgree) {
  const Model tiny = Model::open(test::fixture("models/tiny"));
  const auto ids = prompt_ids();
  const int len = static_cast<int>(ids.size());
  BlockWeights w = tiny.load_block(1);
  Activations transformed{tiny.embed(ids), len}, replaced{tiny.embed(ids), len},
      plain{tiny.embed(ids), len};
  const DoubleDownInput doubler;
  block_forward(tiny.config(), w, transformed, transforming(&doubler));
  block_forward(tiny.config(), w, plain);
  w.weight(LinearRole::down) *= 2.0f;
  block_forward(tiny.config(), w, replaced);
  EXPECT_LT((transformed.x - replaced.x).cwiseAbs().maxCoeff(), 1e-5f);
  EXPECT_GT((transformed.x - plain.x).cwiseAbs().maxCoeff(), 1e-2f);
}

// A copy of tiny with one tensor renamed or reshaped.
std::filesystem::path broken_tiny(const std::filesystem::path& dir, const std::string& victim,
                                  bool drop) {
  const Checkpoint source = Checkpoint::open(test::fixture("models/tiny"));
  std::vector<TensorToWrite> out;
  for (const TensorView* t : source.tensors()) {
    TensorToWrite w{t->name, t->dtype, t->shape, t->bytes};
    if (t->name == victim && drop) continue;
    if (t->name == victim) std::swap(w.shape[0], w.shape[1]);
    out.push_back(w);
  }
  write_safetensors(dir / "model.safetensors", out);
  std::filesystem::copy_file(test::fixture("models/tiny/config.json"), dir / "config.json");
  return dir;
}

void expect_input_error(const std::function<void()>& f, const std::string& must_contain) {
  try {
    f();
    FAIL() << "expected InputError mentioning " << must_contain;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(must_contain), std::string::npos) << e.what();
  }
}

TEST(ModelCorrupt, MisShapedAndMissingTensorsAreInputErrors) {
  const std::string q = "model.layers.1.self_attn.k_proj.weight";
  const Model reshaped = Model::open(broken_tiny(test::temp_dir("reshaped"), q, false));
  expect_input_error([&] { reshaped.load_block(1); },
                     q + ": expected shape [128, 256], found [256, 128]");
  const Model missing = Model::open(broken_tiny(test::temp_dir("missing"), q, true));
  expect_input_error([&] { missing.load_block(1); }, q);
  expect_input_error(
      [&] { Model::open(broken_tiny(test::temp_dir("head"), "lm_head.weight", true)); },
      "lm_head.weight");
}

}  // namespace
}  // namespace ptq
