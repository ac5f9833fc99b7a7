#include "pipeline/recipe/yaml_strict.hpp"

#include <set>
#include <vector>

#include "io/error.hpp"
#include "io/text_file.hpp"

namespace ptq {

namespace {

// Walks the tree with an explicit stack: a hostile file nests deeply.
void reject_repeated_keys(const YAML::Node& root, const std::string& where) {
  std::vector<YAML::Node> pending{root};
  while (!pending.empty()) {
    const YAML::Node node = pending.back();
    pending.pop_back();
    if (node.IsSequence()) {
      for (const auto& item : node) pending.push_back(item);
      continue;
    }
    if (!node.IsMap()) continue;
    std::set<std::string> seen;
    for (const auto& kv : node) {
      if (kv.first.IsScalar() && !seen.insert(kv.first.Scalar()).second)
        throw input_error(where + ": line " + std::to_string(kv.first.Mark().line + 1),
                          "each key once in a mapping", "key \"" + kv.first.Scalar() + "\" again");
      pending.push_back(kv.second);
    }
  }
}

}  // namespace

YAML::Node parse_yaml(const std::string& text, const std::string& where) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw input_error(where, "YAML or JSON", std::string("a parse error: ") + e.what());
  }
  reject_repeated_keys(root, where);
  return root;
}

YAML::Node load_yaml_file(const std::filesystem::path& path) {
  return parse_yaml(read_text_file(path), path.string());
}

}  // namespace ptq
