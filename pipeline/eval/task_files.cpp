// Reading multiple-choice task files: the unified JSONL shape and llama.cpp's
// HellaSwag text layout (see tasks.hpp).
#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>
#include <string_view>

#include "io/error.hpp"
#include "io/input_file.hpp"
#include "io/json_strict.hpp"
#include "io/text_file.hpp"
#include "pipeline/eval/tasks.hpp"

namespace ptq {
namespace {

// llama.cpp's HellaSwag layout: context, gold index, then this many endings.
constexpr int hellaswag_endings = 4;
constexpr int hellaswag_lines_per_item = 2 + hellaswag_endings;

// Splits on '\n', dropping one trailing '\r' per line; a final newline does not
// start another line.
std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
  }
  return lines;
}

bool is_blank(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

std::string where(const std::filesystem::path& path, std::size_t line_index) {
  return path.string() + ":" + std::to_string(line_index + 1);
}

// The gold index of an item: a decimal integer in [0, choices).
int parse_gold(std::string_view text, std::size_t choices, const std::string& at) {
  const std::string expected = "a gold index in [0, " + std::to_string(choices) + ")";
  if (text.empty() || text.size() > 9 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    throw input_error(at, expected, "\"" + std::string(text) + "\"");
  }
  const int gold = std::stoi(std::string(text));
  if (static_cast<std::size_t>(gold) >= choices) throw input_error(at, expected, std::to_string(gold));
  return gold;
}

const nlohmann::ordered_json& require_field(const nlohmann::ordered_json& object,
                                            const char* key, const std::string& at) {
  const auto it = object.find(key);
  if (it == object.end()) throw input_error(at, std::string("a \"") + key + "\" field", "none");
  return *it;
}

std::string require_string(const nlohmann::ordered_json& value, const std::string& what) {
  if (!value.is_string()) throw input_error(what, "a string", json_type_name(value));
  return value.get<std::string>();
}

TaskItem parse_json_item(std::string_view line, const std::string& at) {
  const nlohmann::ordered_json j = parse_json_strict(line, at);
  if (!j.is_object()) throw input_error(at, "a JSON object", json_type_name(j));
  TaskItem item;
  item.id = require_string(require_field(j, "id", at), at + ": \"id\"");
  item.context = require_string(require_field(j, "context", at), at + ": \"context\"");
  const auto& choices = require_field(j, "choices", at);
  if (!choices.is_array() || choices.size() < 2) {
    throw input_error(at + ": \"choices\"", "an array of at least two strings",
                      choices.is_array() ? std::to_string(choices.size()) + " element(s)"
                                         : json_type_name(choices));
  }
  for (const auto& c : choices) item.choices.push_back(require_string(c, at + ": a choice"));
  const auto& gold = require_field(j, "gold", at);
  if (!gold.is_number_integer() || gold.get<std::int64_t>() < 0 ||
      gold.get<std::uint64_t>() >= item.choices.size()) {
    throw input_error(at + ": \"gold\"",
                      "an integer in [0, " + std::to_string(item.choices.size()) + ")", gold.dump());
  }
  item.gold = gold.get<int>();
  return item;
}

std::vector<TaskItem> parse_jsonl(const std::filesystem::path& path,
                                  std::span<const std::string_view> lines, int limit) {
  std::vector<TaskItem> items;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (limit > 0 && items.size() == static_cast<std::size_t>(limit)) break;
    if (is_blank(lines[i])) continue;
    items.push_back(parse_json_item(lines[i], where(path, i)));
  }
  return items;
}

std::vector<TaskItem> parse_hellaswag_text(const std::filesystem::path& path,
                                           std::span<const std::string_view> lines, int limit) {
  if (lines.size() % hellaswag_lines_per_item != 0) {
    throw input_error(path.string() + ": line count",
                      "a multiple of " + std::to_string(hellaswag_lines_per_item) +
                          " (context, gold index, " + std::to_string(hellaswag_endings) +
                          " endings per item)",
                      std::to_string(lines.size()));
  }
  std::vector<TaskItem> items;
  for (std::size_t first = 0; first < lines.size(); first += hellaswag_lines_per_item) {
    if (limit > 0 && items.size() == static_cast<std::size_t>(limit)) break;
    TaskItem item;
    item.id = std::to_string(items.size());
    item.context = std::string(lines[first]);
    item.gold = parse_gold(lines[first + 1], hellaswag_endings, where(path, first + 1));
    for (int e = 0; e < hellaswag_endings; ++e) item.choices.emplace_back(lines[first + 2 + e]);
    items.push_back(std::move(item));
  }
  return items;
}

// Items with an empty context cannot be scored: the first continuation token
// would have nothing to be predicted from (no BOS is added).
void check_contexts(const std::filesystem::path& path, const std::vector<TaskItem>& items) {
  for (const TaskItem& item : items) {
    if (item.context.empty()) {
      throw input_error(path.string() + ": item " + item.id, "a non-empty context", "\"\"");
    }
  }
}

}  // namespace

TaskFormat detect_task_format(const std::filesystem::path& path) {
  const std::string ext = path.extension().string();
  if (ext == ".jsonl" || ext == ".json") return TaskFormat::jsonl;
  if (ext == ".txt") return TaskFormat::hellaswag_text;
  std::ifstream in = open_input_file(path, "a readable task file");
  char c = 0;
  while (in.get(c) && std::isspace(static_cast<unsigned char>(c))) {
  }
  return c == '{' ? TaskFormat::jsonl : TaskFormat::hellaswag_text;
}

Task load_task(const std::filesystem::path& path, int limit) {
  if (limit < 0) throw input_error("--limit", ">= 0", std::to_string(limit));
  const TaskFormat format = detect_task_format(path);
  const std::string text = read_utf8_text_file(path);
  const std::vector<std::string_view> lines = split_lines(text);
  Task task{path.stem().string(), {}};
  task.items = format == TaskFormat::jsonl ? parse_jsonl(path, lines, limit)
                                           : parse_hellaswag_text(path, lines, limit);
  if (task.items.empty()) throw input_error(path.string(), "at least one item", "none");
  check_contexts(path, task.items);
  return task;
}

}  // namespace ptq
