#include "io/json_strict.hpp"

#include <set>
#include <vector>

#include "io/error.hpp"
#include "io/text_file.hpp"

namespace ptq {

namespace {

// Far deeper than any file ptq reads; copying or dumping a value recurses once
// per level, so a hostile file nested a million deep would overflow the stack.
constexpr int kMaxDepth = 128;

template <class json>
json parse_strict(std::string_view text, const std::string& where) {
  // One set of seen keys per open object, innermost last.
  std::vector<std::set<std::string>> open_objects;
  auto check_keys = [&](int depth, typename json::parse_event_t event, json& parsed) {
    if (depth > kMaxDepth) {
      throw input_error(where, "JSON nested at most " + std::to_string(kMaxDepth) + " deep",
                        "deeper nesting");
    }
    if (event == json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == json::parse_event_t::key) {
      const auto& key = parsed.template get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) {
        throw input_error(where, "unique object keys", "key \"" + key + "\" twice");
      }
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), check_keys);
  } catch (const typename json::exception& e) {
    throw input_error(where, "valid JSON", std::string("a syntax error (") + e.what() + ")");
  }
}

}  // namespace

nlohmann::ordered_json parse_json_strict(std::string_view text, const std::string& where) {
  return parse_strict<nlohmann::ordered_json>(text, where);
}

nlohmann::json parse_json_strict_sorted(std::string_view text, const std::string& where) {
  return parse_strict<nlohmann::json>(text, where);
}

nlohmann::ordered_json read_json_file(const std::string& path) {
  return parse_json_strict(read_text_file(path), path);
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
