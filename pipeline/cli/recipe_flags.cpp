#include "pipeline/cli/recipe_flags.hpp"

namespace ptq::cli {

namespace {

bool selected(const RecipeKey& key, KeySet set) {
  const bool calibration = key.path.starts_with("calibration.");
  return key.flag_kind != FlagKind::none && calibration == (set == KeySet::calibration);
}

}  // namespace

void add_recipe_flags(CLI::App& cmd, RecipeFlags& flags, KeySet set) {
  for (const RecipeKey& key : recipe_keys()) {
    if (!selected(key, set)) continue;
    const std::string flag(key.flag), help(key.help);
    if (key.flag_kind == FlagKind::value)
      cmd.add_option(flag, flags.values[flag], help);
    else
      cmd.add_flag(flag, flags.switches[flag], help);
  }
}

void apply_recipe_flags(const RecipeFlags& flags, const CLI::App& cmd, Recipe& recipe, KeySet set) {
  for (const RecipeKey& key : recipe_keys()) {
    if (!selected(key, set)) continue;
    const std::string flag(key.flag);
    if (cmd.get_option(flag)->count() == 0) continue;
    switch (key.flag_kind) {
      case FlagKind::value:
        key.set(recipe, flags.values.at(flag), flag);
        break;
      case FlagKind::set_true:
        key.set(recipe, "true", flag);
        break;
      case FlagKind::set_false:
        key.set(recipe, "false", flag);
        break;
      case FlagKind::none:
        break;
    }
    recipe.given_keys.emplace_back(key.path, flag);
  }
}

}  // namespace ptq::cli
