#pragma once
// JSON parsing for untrusted files: syntax errors, duplicate object keys
// (which nlohmann would silently resolve by keeping the last) and nesting
// deeper than 128 (which copies and dumps would recurse through) become InputError.
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace ptq {

// Parses `text`, keeping object keys in file order. `where` names the source
// (a file path) in error messages.
nlohmann::ordered_json parse_json_strict(std::string_view text, const std::string& where);

// The same into nlohmann::json (std::map, keys sorted): for large objects such
// as a tokenizer's vocabulary, where ordered_json's linear key search on each
// insertion would be quadratic.
nlohmann::json parse_json_strict_sorted(std::string_view text, const std::string& where);

// Reads a whole (small) file and parses it with parse_json_strict.
nlohmann::ordered_json read_json_file(const std::string& path);

// The JSON type name as users read it: "object", "string", "number", ...
std::string json_type_name(const nlohmann::ordered_json& value);

// "<type> <short text>" for error messages: the value itself when it is small
// and flat, else only its size, so a hostile file cannot blow up a message
// (or the stack: dumping deeply nested JSON recurses).
std::string describe_json(const nlohmann::ordered_json& value);

}  // namespace ptq
