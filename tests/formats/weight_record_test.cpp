// The HDF5 record of a uniform-grid weight read back as it was written: the
// grid spec (every range rule, ggml's two included) and the codes, scales,
// zeros and g_idx, exactly; Q4_1's zeros (-m / d, not integers) too, which an
// integer dataset would round. A stored range flag other than 0/1 is refused.
#include "pipeline/formats/weight_record.hpp"

#include <gtest/gtest.h>

#include "algorithms/rtn.hpp"
#include "io/error.hpp"
#include "io/hdf5.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

MatrixRM weights() {
  MatrixRM W(4, 64);
  for (Eigen::Index i = 0; i < W.size(); ++i) W.data()[i] = std::sin(0.37f * i) * 0.05f + 0.01f;
  return W;
}

QuantizedMatrix round_trip(const QuantizedMatrix& m, const std::string& name) {
  const auto path = test::temp_dir("weight_record_" + name) / "w.h5";
  H5Writer out(path);
  write_weight(out, "w", m);
  out.commit();
  return std::get<QuantizedMatrix>(read_weight(H5Reader(path), "w"));
}

TEST(WeightRecord, UniformGridsComeBackExactly) {
  QuantSpec awq;
  awq.range = RangeRule::MinMax;
  awq.granularity = Granularity::Group;
  awq.group_size = 32;
  const std::pair<const char*, QuantSpec> specs[] = {{"q4_0", *ggml_uniform_spec(GgmlGrid::q4_0)},
                                                     {"q4_1", *ggml_uniform_spec(GgmlGrid::q4_1)},
                                                     {"q5_1", *ggml_uniform_spec(GgmlGrid::q5_1)},
                                                     {"min_max", awq},
                                                     {"gptq", QuantSpec{}}};
  for (const auto& [name, spec] : specs) {
    SCOPED_TRACE(name);
    const QuantizedMatrix m = rtn_quantize(weights(), spec);
    const QuantizedMatrix back = round_trip(m, name);
    EXPECT_EQ(back.spec, m.spec);
    EXPECT_EQ(back.codes, m.codes);
    EXPECT_EQ(back.scales, m.scales);
    EXPECT_EQ(back.zeros, m.zeros);
    EXPECT_EQ(back.g_idx, m.g_idx);
  }
  // Q4_1's offsets are fractional: the record must not have rounded them.
  const QuantizedMatrix q41 = rtn_quantize(weights(), *ggml_uniform_spec(GgmlGrid::q4_1));
  EXPECT_NE(q41.zeros, q41.zeros.array().round().matrix());
}

TEST(WeightRecord, RefusesARangeFlagOutOfRange) {
  const auto path = test::temp_dir("weight_record_bad_flag") / "w.h5";
  H5Writer out(path);
  write_weight(out, "w", rtn_quantize(weights(), *ggml_uniform_spec(GgmlGrid::q4_1)));
  out.set_attribute("w", "ggml_min_range", std::int64_t{2});
  out.commit();
  try {
    read_weight(H5Reader(path), "w");
    ADD_FAILURE() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("ggml_min_range"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ptq
