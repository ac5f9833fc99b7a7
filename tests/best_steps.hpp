#pragma once
// The shipped W4 g128 best recipe's rounding steps (recipes/w4-g128-best.yaml:
// the Hessian-weighted MSE clip inside GPTQ's grids, GPTQ toward the float
// model's outputs with its correction's damping) put on another recipe, for
// the tests that hold the device path's steps to the CPU's.
#include "pipeline/recipe/recipe.hpp"
#include "test_paths.hpp"

namespace ptq::test {

inline Recipe with_best_steps(Recipe recipe) {
  const Recipe best = load_recipe(source_dir() / "recipes" / "w4-g128-best.yaml");
  recipe.clip = best.clip;
  recipe.target = best.target;
  recipe.target_damp = best.target_damp;
  return recipe;
}

}  // namespace ptq::test
