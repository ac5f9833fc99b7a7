#include "algorithms/quantized_weight.hpp"

namespace ptq {

MatrixRM dequantize(const QuantizedWeight& q) {
  return std::visit(
      [](const auto& m) -> MatrixRM {
        if constexpr (std::is_same_v<std::decay_t<decltype(m)>, GgmlBlocks>)
          return dequantize(m);
        else
          return m.dequantize();
      },
      q);
}

}  // namespace ptq
