#include "algorithms/quant_grid.hpp"

#include <string>

#include "io/error.hpp"

namespace ptq {

void QuantSpec::validate() const {
  if (bits < 2 || bits > 8) {
    throw input_error("QuantSpec.bits", "2..8", std::to_string(bits));
  }
  if (range == RangeRule::MinMax && symmetry == Symmetry::Symmetric) {
    throw input_error("QuantSpec.range", "an asymmetric grid with the min/max range rule",
                      "symmetric");
  }
  if (range == RangeRule::Ggml &&
      (symmetry != Symmetry::Symmetric || granularity != Granularity::Group || group_size != 32 ||
       (bits != 4 && bits != 5 && bits != 8))) {
    throw input_error("QuantSpec.range",
                      "ggml's grid with symmetric groups of 32 and 4, 5 or 8 bits",
                      std::to_string(bits) + " bits, group " + std::to_string(group_size));
  }
  if (range == RangeRule::GgmlMin &&
      (symmetry != Symmetry::Asymmetric || granularity != Granularity::Group || group_size != 32 ||
       (bits != 4 && bits != 5))) {
    throw input_error("QuantSpec.range",
                      "ggml's min grid with asymmetric groups of 32 and 4 or 5 bits",
                      std::to_string(bits) + " bits, group " + std::to_string(group_size));
  }
  if (granularity == Granularity::Group && group_size < 1) {
    throw input_error("QuantSpec.group_size", "a positive number of columns",
                      std::to_string(group_size));
  }
}

int QuantSpec::groups_per_row(int columns) const {
  if (granularity != Granularity::Group) return 1;
  return (columns + group_size - 1) / group_size;
}

}  // namespace ptq
