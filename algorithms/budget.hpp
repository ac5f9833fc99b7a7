#pragma once
// Choosing one option per item (a type per tensor) to minimise the summed loss
// under a byte budget: the multiple-choice knapsack, solved exactly by dynamic
// programming over bytes. Bytes are counted in units of `unit` above each
// item's smallest option, each option's excess rounded up: the choice always
// fits the budget, and can miss the optimum only by the bytes lost to that
// rounding (under one unit per item).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace ptq {

struct BudgetOption {
  std::uint64_t bytes = 0;
  double loss = 0;
};

// Index of the chosen option per item; nullopt when even every item's smallest
// option exceeds `budget`. Ties go to the lower option index. `max_units`
// bounds the table (items x (units + 1) bytes): unit = ceil(spare bytes /
// max_units), spare being the budget above the smallest choice.
std::optional<std::vector<std::size_t>> choose_within_budget(
    std::span<const std::vector<BudgetOption>> items, std::uint64_t budget,
    std::uint64_t max_units = 1u << 16);

}  // namespace ptq
