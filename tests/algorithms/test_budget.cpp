// choose_within_budget against brute force over every combination of small
// random instances: with one-byte units it must find the least loss that fits;
// with coarse units its choice must still fit and lose little.
#include <gtest/gtest.h>

#include <random>

#include "algorithms/budget.hpp"

namespace ptq {
namespace {

using Items = std::vector<std::vector<BudgetOption>>;

Items random_items(std::mt19937& rng, std::size_t count) {
  std::uniform_int_distribution<int> options(1, 4), bytes(1, 40);
  std::uniform_real_distribution<double> loss(0.0, 1.0);
  Items items(count);
  for (auto& item : items)
    for (int k = options(rng); k-- > 0;) item.push_back({std::uint64_t(bytes(rng)), loss(rng)});
  return items;
}

struct Total {
  std::uint64_t bytes = 0;
  double loss = 0;
};

Total total(const Items& items, const std::vector<std::size_t>& choice) {
  Total t;
  for (std::size_t i = 0; i < items.size(); ++i) {
    t.bytes += items[i][choice[i]].bytes;
    t.loss += items[i][choice[i]].loss;
  }
  return t;
}

// The least loss within `budget` over every combination (infinity if none fits).
double brute_force(const Items& items, std::uint64_t budget) {
  std::vector<std::size_t> choice(items.size(), 0);
  double best = std::numeric_limits<double>::infinity();
  while (true) {
    const Total t = total(items, choice);
    if (t.bytes <= budget) best = std::min(best, t.loss);
    std::size_t i = 0;
    while (i < items.size() && ++choice[i] == items[i].size()) choice[i++] = 0;
    if (i == items.size()) return best;
  }
}

TEST(Budget, ExactWithByteUnits) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const Items items = random_items(rng, 1 + trial % 6);
    const std::uint64_t budget = std::uniform_int_distribution<std::uint64_t>(0, 160)(rng);
    const double want = brute_force(items, budget);
    const auto got = choose_within_budget(items, budget);
    if (std::isinf(want)) {
      EXPECT_FALSE(got.has_value()) << trial;
      continue;
    }
    ASSERT_TRUE(got.has_value()) << trial;
    const Total t = total(items, *got);
    EXPECT_LE(t.bytes, budget) << trial;
    EXPECT_NEAR(t.loss, want, 1e-12) << trial;
  }
}

TEST(Budget, CoarseUnitsStillFitAndLoseOnlyTheRoundedBytes) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 100; ++trial) {
    const Items items = random_items(rng, 6);
    const std::uint64_t budget = std::uniform_int_distribution<std::uint64_t>(60, 200)(rng);
    const auto got = choose_within_budget(items, budget, 8);
    if (!got) continue;
    const Total t = total(items, *got);
    EXPECT_LE(t.bytes, budget) << trial;
    // Rounding costs each item under one unit: the optimum of a budget smaller
    // by that much is never better than the coarse choice.
    const std::uint64_t unit = (budget + 7) / 8;
    const std::uint64_t lower = budget > 6 * unit ? budget - 6 * unit : 0;
    EXPECT_LE(t.loss, brute_force(items, lower) + 1e-12) << trial;
  }
}

TEST(Budget, TiesGoToTheLowerIndexAndTooSmallBudgetsAreRefused) {
  const Items items = {{{10, 1.0}, {10, 1.0}, {5, 2.0}}, {{3, 0.5}}};
  EXPECT_EQ(*choose_within_budget(items, 13), (std::vector<std::size_t>{0, 0}));
  EXPECT_EQ(*choose_within_budget(items, 12), (std::vector<std::size_t>{2, 0}));
  EXPECT_FALSE(choose_within_budget(items, 7).has_value());
}

}  // namespace
}  // namespace ptq
