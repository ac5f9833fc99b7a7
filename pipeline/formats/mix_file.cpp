#include "pipeline/formats/mix_file.hpp"

#include "io/error.hpp"
#include "io/json_strict.hpp"

namespace ptq {

namespace {

using json = nlohmann::ordered_json;

const json& member(const json& object, const char* key, const std::string& where,
                   const char* expected) {
  if (!object.is_object() || !object.contains(key))
    throw input_error(where, std::string("key \"") + key + "\" (" + expected + ")",
                      object.is_object() ? "none" : describe_json(object));
  return object[key];
}

const std::string& text(const json& value, const std::string& where) {
  if (!value.is_string()) throw input_error(where, "a string", describe_json(value));
  return value.get_ref<const std::string&>();
}

}  // namespace

json read_mix_record(const std::filesystem::path& path, std::string_view output) {
  const std::string file = path.string();
  json j = read_json_file(file);
  const json& format = member(j, "format", file, "\"ptq-mix\"");
  if (format != kMixFormat)
    throw input_error(file + ": format", "\"ptq-mix\"", describe_json(format));
  const json& version = member(j, "version", file, "1");
  if (version != kMixVersion)
    throw input_error(file + ": version", std::to_string(kMixVersion), describe_json(version));
  const json& out = member(j, "output", file, "the output format");
  if (out != output)
    throw input_error(file + ": output", "\"" + std::string(output) + "\"", describe_json(out));
  const json& tensors = member(j, "tensors", file, "a list of {name, type}");
  if (!tensors.is_array())
    throw input_error(file + ": tensors", "a list of {name, type}", describe_json(tensors));
  return j;
}

MixTypes read_mix_types(const std::filesystem::path& path, std::string_view output) {
  const json j = read_mix_record(path, output);
  const json& tensors = j["tensors"];
  MixTypes types;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::string where = path.string() + ": tensors[" + std::to_string(i) + "]";
    const std::string& name = text(member(tensors[i], "name", where, "a tensor name"), where + ".name");
    const std::string& type = text(member(tensors[i], "type", where, "its type"), where + ".type");
    if (!types.emplace(name, type).second)
      throw input_error(where, "each tensor once", name + " again");
  }
  return types;
}

std::string mix_types_json(const MixTypes& types, std::string_view output) {
  json tensors = json::array();
  for (const auto& [name, type] : types) tensors.push_back({{"name", name}, {"type", type}});
  const json j = {{"format", kMixFormat}, {"version", kMixVersion}, {"output", output},
                  {"tensors", tensors}};
  return j.dump(1) + "\n";
}

}  // namespace ptq
