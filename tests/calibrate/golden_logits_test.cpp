// Logits of the fixture models against the goldens computed with HF
// transformers in float32 (shared/fixtures/goldens/<m>/logits_prompt.*).
#include <gtest/gtest.h>

#include <fstream>

#include "calibrate/model.hpp"
#include "io/ids_file.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

constexpr float golden_logits_tolerance = 1e-3f;  // PROTOCOL.md: expect |diff| < 1e-3

std::vector<float> read_f32(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<float> v(std::filesystem::file_size(path) / sizeof(float));
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(float)));
  return v;
}

// Max |ours - golden| over all logits of ids in one sequence.
float max_logit_error(const std::filesystem::path& model_dir, const std::filesystem::path& ids_file,
                      const std::filesystem::path& logits_file) {
  const Model model = Model::open(model_dir);
  const std::vector<std::int32_t> ids = read_ids(ids_file);
  const std::vector<float> golden = read_f32(logits_file);
  const RowMatrix ours = logits(model, ids, static_cast<int>(ids.size()));
  EXPECT_EQ(static_cast<std::size_t>(ours.size()), golden.size());
  const Eigen::Map<const RowMatrix> expected(golden.data(), ours.rows(), ours.cols());
  return (ours - expected).cwiseAbs().maxCoeff();
}

class GoldenLogits : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenLogits, PromptLogitsMatchFloat32Reference) {
  const std::string m = GetParam();
  const float err = max_logit_error(test::fixture("models/" + m),
                                    test::fixture("goldens/" + m + "/logits_prompt.ids"),
                                    test::fixture("goldens/" + m + "/logits_prompt.f32"));
  EXPECT_LT(err, golden_logits_tolerance) << m;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenLogits, ::testing::Values("tiny", "small"));

}  // namespace
}  // namespace ptq
