#include "algorithms/int8.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>

#include "algorithms/rtn.hpp"

namespace ptq {

namespace {

// Runs f(row) over the rows of x in parallel; rows are independent, so the
// result does not depend on the thread count.
template <class F>
void for_each_row(Eigen::Index rows, F&& f) {
  tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, rows), [&](const auto& range) {
    for (Eigen::Index r = range.begin(); r < range.end(); ++r) f(r);
  });
}

}  // namespace

float int8_scale(float absmax) { return std::max(absmax, kInt8MinAbsmax) / kInt8Max; }

QuantizedMatrix int8_quantize_rows(const MatrixRM& W) {
  require_weights(W, "int8_quantize_rows: W");
  QuantSpec spec;
  spec.bits = 8;
  spec.symmetry = Symmetry::Symmetric;
  spec.granularity = Granularity::Channel;
  QuantizedMatrix out{spec, CodeMatrix(W.rows(), W.cols()), MatrixRM(W.rows(), 1),
                      MatrixRM::Constant(W.rows(), 1, kInt8Zero), std::vector<std::int32_t>(W.cols(), 0)};
  for_each_row(W.rows(), [&](Eigen::Index r) {
    const float scale = int8_scale(W.row(r).cwiseAbs().maxCoeff());
    out.scales(r, 0) = scale;
    // |w| <= absmax, so |round(w / scale)| <= 127: no clamp needed.
    out.codes.row(r) = ((W.row(r).array() / scale).rint() + kInt8Zero).cast<std::uint8_t>();
  });
  return out;
}

void fake_quant_int8_rows(MatrixRM& x) {
  for_each_row(x.rows(), [&](Eigen::Index r) {
    const float scale = int8_scale(x.row(r).cwiseAbs().maxCoeff());
    x.row(r) = (x.row(r).array() / scale).rint() * scale;
  });
}

void fake_quant_int8_tensor(MatrixRM& x, float scale) {
  for_each_row(x.rows(), [&](Eigen::Index r) {
    x.row(r) = (x.row(r).array() / scale).rint().max(-kInt8Max).min(kInt8Max) * scale;
  });
}

}  // namespace ptq
