#include "algorithms/budget.hpp"

#include <algorithm>
#include <limits>

#include "io/error.hpp"

namespace ptq {

std::optional<std::vector<std::size_t>> choose_within_budget(
    std::span<const std::vector<BudgetOption>> items, std::uint64_t budget,
    std::uint64_t max_units) {
  PTQ_ASSERT(max_units >= 1);
  std::vector<std::uint64_t> smallest(items.size());
  std::uint64_t floor = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    PTQ_ASSERT(!items[i].empty());
    smallest[i] = std::min_element(items[i].begin(), items[i].end(),
                                   [](const auto& a, const auto& b) { return a.bytes < b.bytes; })
                      ->bytes;
    floor += smallest[i];
  }
  if (floor > budget) return std::nullopt;
  const std::uint64_t spare = budget - floor;
  const std::uint64_t unit = std::max<std::uint64_t>(1, (spare + max_units - 1) / max_units);
  const std::size_t units = static_cast<std::size_t>(spare / unit);

  // best[u]: least loss of the items so far using at most u units; pick[i][u]
  // the option item i takes there.
  constexpr double kNone = std::numeric_limits<double>::infinity();
  std::vector<double> best(units + 1, 0.0), next(units + 1);
  std::vector<std::vector<std::uint8_t>> pick(items.size(), std::vector<std::uint8_t>(units + 1));
  for (std::size_t i = 0; i < items.size(); ++i) {
    PTQ_ASSERT(items[i].size() <= 255);
    std::fill(next.begin(), next.end(), kNone);
    for (std::size_t k = 0; k < items[i].size(); ++k) {
      const std::uint64_t excess = items[i][k].bytes - smallest[i];
      const std::uint64_t cost = (excess + unit - 1) / unit;
      if (cost > units) continue;
      for (std::size_t u = cost; u <= units; ++u) {
        const double loss = best[u - cost] + items[i][k].loss;
        if (loss < next[u]) {
          next[u] = loss;
          pick[i][u] = static_cast<std::uint8_t>(k);
        }
      }
    }
    best.swap(next);
  }
  std::vector<std::size_t> choice(items.size());
  std::size_t u = units;
  for (std::size_t i = items.size(); i-- > 0;) {
    choice[i] = pick[i][u];
    u -= static_cast<std::size_t>((items[i][choice[i]].bytes - smallest[i] + unit - 1) / unit);
  }
  return choice;
}

}  // namespace ptq
