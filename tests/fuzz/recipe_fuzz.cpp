// recipe_from_yaml on a recipe (YAML or JSON), then recipe_to_yaml and back.
// Every key of the recipe table, sections, calibration sources and the
// cross-field validation. A recipe that loads is written back as outputs
// record it, and must load again to the same text.
#include "fuzz_util.hpp"
#include "pipeline/recipe/recipe.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptq;
  std::string written;
  fuzz::refuse_cleanly([&] {
    written = recipe_to_yaml(recipe_from_yaml(std::string(fuzz::as_text(data, size)), "fuzz"));
  });
  if (written.empty()) return 0;
  try {
    if (recipe_to_yaml(recipe_from_yaml(written, "written")) != written)
      fuzz::fail("a written recipe reads back differently:\n" + written);
  } catch (const InputError& e) {
    fuzz::fail("a written recipe does not read back: " + std::string(e.what()) + "\n" + written);
  }
  return 0;
}
