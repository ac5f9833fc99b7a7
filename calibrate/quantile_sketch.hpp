#pragma once
// A mergeable streaming sketch of |x| for percentiles (e.g. the 99.9th
// percentile of activation magnitudes used by percentile clipping).
//
// Buckets are the float's own exponent and top kMantissaBits mantissa bits, so
// bucket boundaries are log-spaced with a relative width of at most
// 2^-kMantissaBits (1.6 %): the reported quantile is the geometric midpoint of
// its bucket, within ±0.8 % of the exact order statistic. Counting is
// integer-only, so sketches merge exactly and the result does not depend on the
// order in which data arrives (or on the thread count).
#include <cstdint>
#include <span>
#include <vector>

namespace ptq {

class QuantileSketch {
 public:
  static constexpr int kMantissaBits = 6;
  // Magnitudes below 2^kMinExponent count as zero, above 2^kMaxExponent as the top bucket.
  static constexpr int kMinExponent = -24;
  static constexpr int kMaxExponent = 24;
  static constexpr int kBuckets = (kMaxExponent - kMinExponent) << kMantissaBits;

  QuantileSketch() : counts_(kBuckets + 1, 0) {}

  void add(std::span<const float> values);
  void merge(const QuantileSketch& other);
  // q in [0, 1]: the magnitude below which a fraction q of the values lie.
  double quantile(double q) const;
  std::uint64_t count() const { return total_; }

  // The q-quantile of a mixture: each sketch's values weighted by weights[i]
  // per value (e.g. share / count for a mix of sources).
  static double weighted_quantile(std::span<const QuantileSketch* const> sketches,
                                  std::span<const double> weights, double q);

  // Raw counts (bucket 0 = zero and tiny magnitudes), for saving and loading.
  const std::vector<std::uint64_t>& counts() const { return counts_; }
  static QuantileSketch from_counts(std::vector<std::uint64_t> counts);

 private:
  static int bucket_of(float magnitude);
  static double bucket_value(int bucket);
  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
};

}  // namespace ptq
