#pragma once
// The command-line flags of recipe fields, registered from the recipe key
// table (pipeline/recipe/recipe.hpp: recipe_keys()) so that a field's flag,
// help text and parsing are written once.
#include <CLI/CLI.hpp>
#include <map>
#include <string>

#include "pipeline/recipe/recipe.hpp"

namespace ptq::cli {

struct RecipeFlags {
  std::map<std::string, std::string> values;  // by flag, for FlagKind::value
  std::map<std::string, bool> switches;       // by flag, for set_true / set_false
};

// Which keys' flags a command takes: the calibration.* keys (shared with
// `ptq calibrate`, through calib_flags.hpp) or all the others.
enum class KeySet { calibration, method };

// Adds a flag for every key of `set` that has one.
void add_recipe_flags(CLI::App& cmd, RecipeFlags& flags, KeySet set);
// Sets, on top of `recipe`, the field of every such flag given on the command line.
void apply_recipe_flags(const RecipeFlags& flags, const CLI::App& cmd, Recipe& recipe, KeySet set);

}  // namespace ptq::cli
