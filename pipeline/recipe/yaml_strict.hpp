#pragma once
// YAML for the files users write (recipes, batch jobs): a regular file read
// whole, parsed by yaml-cpp, and refused when a mapping holds a key twice —
// yaml-cpp keeps both and a lookup silently takes the first.
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <string>

namespace ptq {

// InputError naming the file (and the line of a repeated key) on bad input.
YAML::Node load_yaml_file(const std::filesystem::path& path);
// The same from text; `where` names its source in errors.
YAML::Node parse_yaml(const std::string& text, const std::string& where);

}  // namespace ptq
