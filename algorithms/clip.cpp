#include "algorithms/clip.hpp"

#include <string>

#include "io/error.hpp"

namespace ptq {

void ClipConfig::validate() const {
  if (method == ClipMethod::None) return;
  if (method == ClipMethod::Mse) {
    if (steps < 1) throw input_error("ClipConfig.steps", ">= 1", std::to_string(steps));
    if (!(max_shrink > 0 && max_shrink < 1))
      throw input_error("ClipConfig.max_shrink", "a fraction in (0, 1)",
                        std::to_string(max_shrink));
    if (!(norm > 0))
      throw input_error("ClipConfig.norm", "a positive exponent", std::to_string(norm));
  }
  if (method == ClipMethod::Percentile && !(percentile > 0.5 && percentile <= 1))
    throw input_error("ClipConfig.percentile", "a quantile in (0.5, 1]",
                      std::to_string(percentile));
}

void require_clip_applies(const ClipConfig& clip, const QuantSpec& spec, const char* where) {
  clip.validate();
  if (clip.method != ClipMethod::None && spec.granularity == Granularity::Tensor)
    throw input_error(where, "channel or group granularity with clipping", "tensor granularity");
  if (clip.method != ClipMethod::None && ggml_range(spec.range))
    throw input_error(where, "no clipping on a ggml grid (its scale rule is fixed)",
                      "a clip method");
}

}  // namespace ptq
