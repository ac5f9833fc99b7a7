#include "algorithms/rtn.hpp"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "io/error.hpp"

namespace ptq {

void require_weights(const MatrixRM& W, const char* what) {
  if (W.size() == 0) {
    throw input_error(what, "a non-empty matrix",
                      std::to_string(W.rows()) + " x " + std::to_string(W.cols()));
  }
  // x - x is 0 for finite x and NaN otherwise: one vectorized pass.
  if (!std::isnan((W.array() - W.array()).sum())) return;
  Eigen::Index r = 0;
  Eigen::Index c = 0;
  (W.array().isFinite() == false).maxCoeff(&r, &c);
  throw input_error(
      what, "finite weights",
      std::to_string(W(r, c)) + " at [" + std::to_string(r) + ", " + std::to_string(c) + "]");
}

QuantizedMatrix rtn_quantize(const MatrixRM& W, const QuantSpec& spec, const ClipConfig& clip) {
  spec.validate();
  require_clip_applies(clip, spec, "rtn_quantize: clip");
  require_weights(W, "rtn_quantize: W");
  const GridTable<float> grids = fit_clipped_grids(W, spec, clip, Eigen::VectorXf());
  QuantizedMatrix out{spec, CodeMatrix(W.rows(), W.cols()), grids.scales, grids.zeros,
                      std::vector<std::int32_t>(W.cols(), 0)};
  if (spec.granularity == Granularity::Group) {
    for (Eigen::Index c = 0; c < W.cols(); ++c) out.g_idx[c] = c / spec.group_size;
  }
  const int width = spec.granularity == Granularity::Group ? spec.group_size : W.cols();
  const auto maxq = static_cast<float>(spec.maxq());
  tbb::parallel_for(tbb::blocked_range<Eigen::Index>(0, W.rows()), [&](const auto& rows) {
    for (Eigen::Index r = rows.begin(); r < rows.end(); ++r) {
      for (Eigen::Index begin = 0; begin < W.cols(); begin += width) {
        const auto w = W.row(r).segment(begin, std::min<Eigen::Index>(width, W.cols() - begin));
        const GridParams<float> grid = grids.at(r, out.g_idx[begin]);
        auto codes = out.codes.row(r).segment(begin, w.size());
        if (grid.scale == 0.0f) {
          codes.setConstant(static_cast<std::uint8_t>(grid.zero));
          continue;
        }
        // quantize_code, vectorized: rint rounds half to even like std::nearbyint.
        const Eigen::ArrayXf x = w.array().transpose() / grid.scale;
        const Eigen::ArrayXf code = offset_zero(grid) ? Eigen::ArrayXf((x + grid.zero).rint())
                                                      : Eigen::ArrayXf(x.rint() + grid.zero);
        codes = code.max(0.0f).min(maxq).cast<std::uint8_t>().transpose();
      }
    }
  });
  return out;
}

}  // namespace ptq
