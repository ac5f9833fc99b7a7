#include "io/json_strict.hpp"

#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "io/error.hpp"

namespace ptq {

nlohmann::ordered_json parse_json_strict(std::string_view text, const std::string& where) {
  using json = nlohmann::ordered_json;
  // One set of seen keys per open object, innermost last.
  std::vector<std::set<std::string>> open_objects;
  auto check_keys = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == json::parse_event_t::key) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) {
        throw input_error(where, "unique object keys", "key \"" + key + "\" twice");
      }
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), check_keys);
  } catch (const json::exception& e) {
    throw input_error(where, "valid JSON", std::string("a syntax error (") + e.what() + ")");
  }
}

nlohmann::ordered_json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw input_error(path, "a readable JSON file", "a file that cannot be opened");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_json_strict(text.str(), path);
}

std::string json_type_name(const nlohmann::ordered_json& value) {
  if (value.is_number_float()) return "a number with a fraction";
  if (value.is_number_unsigned() || value.is_number_integer()) return "an integer";
  return value.type_name();
}

std::string describe_json(const nlohmann::ordered_json& value) {
  constexpr std::size_t kMaxFlatEntries = 16;
  constexpr std::size_t kMaxChars = 80;
  bool flat = !value.is_structured() || value.size() <= kMaxFlatEntries;
  for (const auto& child : value)
    flat = flat && !child.is_structured();  // a primitive iterates over itself
  std::string text = flat ? value.dump() : "with " + std::to_string(value.size()) + " entries";
  if (text.size() > kMaxChars) text = text.substr(0, kMaxChars) + "...";
  return json_type_name(value) + " " + text;
}

}  // namespace ptq
