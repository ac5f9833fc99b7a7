#include "calibrate/quantile_sketch.hpp"

#include <bit>
#include <cmath>

#include "io/error.hpp"

namespace ptq {

namespace {
constexpr int kExponentBias = 127;
constexpr int kFloatMantissaBits = 23;
// Bits of a positive float with the smallest counted magnitude, 2^kMinExponent.
constexpr std::uint32_t kLowBits = static_cast<std::uint32_t>(QuantileSketch::kMinExponent + kExponentBias)
                                   << kFloatMantissaBits;
constexpr int kShift = kFloatMantissaBits - QuantileSketch::kMantissaBits;
}  // namespace

int QuantileSketch::bucket_of(float magnitude) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(std::fabs(magnitude));
  if (bits < kLowBits) return 0;
  // For positive floats the bit pattern is monotone in the value: exponent and
  // top mantissa bits index log-spaced buckets directly.
  const std::uint32_t index = ((bits - kLowBits) >> kShift) + 1;
  return static_cast<int>(std::min<std::uint32_t>(index, kBuckets));  // NaN and inf land on top
}

double QuantileSketch::bucket_value(int bucket) {
  if (bucket == 0) return 0.0;
  const int offset = bucket - 1;
  const int exponent = kMinExponent + (offset >> kMantissaBits);
  const double lo = std::ldexp(1.0 + (offset & ((1 << kMantissaBits) - 1)) * std::ldexp(1.0, -kMantissaBits), exponent);
  const double hi = lo + std::ldexp(1.0, exponent - kMantissaBits);
  return std::sqrt(lo * hi);
}

void QuantileSketch::add(std::span<const float> values) {
  for (float v : values) ++counts_[static_cast<std::size_t>(bucket_of(v))];
  total_ += values.size();
}

void QuantileSketch::merge(const QuantileSketch& other) {
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
}

double QuantileSketch::quantile(double q) const {
  PTQ_ASSERT(q >= 0.0 && q <= 1.0);
  if (total_ == 0) return 0.0;
  // The value of rank ceil(q * n) (1-based), i.e. the smallest x with F(x) >= q.
  const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_))));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return bucket_value(static_cast<int>(i));
  }
  return bucket_value(kBuckets);
}

double QuantileSketch::weighted_quantile(std::span<const QuantileSketch* const> sketches,
                                         std::span<const double> weights, double q) {
  PTQ_ASSERT(sketches.size() == weights.size() && q >= 0.0 && q <= 1.0);
  std::vector<double> mass(kBuckets + 1, 0.0);
  double total = 0.0;
  for (std::size_t s = 0; s < sketches.size(); ++s) {
    for (std::size_t i = 0; i < mass.size(); ++i) mass[i] += weights[s] * static_cast<double>(sketches[s]->counts_[i]);
  }
  for (double m : mass) total += m;
  if (total <= 0.0) return 0.0;
  double seen = 0.0;
  for (std::size_t i = 0; i < mass.size(); ++i) {
    seen += mass[i];
    if (seen >= q * total && mass[i] > 0.0) return bucket_value(static_cast<int>(i));
  }
  return bucket_value(kBuckets);
}

QuantileSketch QuantileSketch::from_counts(std::vector<std::uint64_t> counts) {
  if (counts.size() != static_cast<std::size_t>(kBuckets + 1))
    throw input_error("quantile sketch", std::to_string(kBuckets + 1) + " buckets", std::to_string(counts.size()));
  QuantileSketch s;
  s.counts_ = std::move(counts);
  for (auto c : s.counts_) s.total_ += c;
  return s;
}

}  // namespace ptq
