#include "pipeline/batch/jobs_file.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <set>

#include "io/error.hpp"
#include "io/hash.hpp"
#include "pipeline/recipe/calib_data.hpp"
#include "pipeline/recipe/yaml_strict.hpp"

namespace ptq {
namespace {

struct Named {
  std::string name;
  std::filesystem::path path;
  YAML::Node keys;  // recipes only: inline keys instead of a file
};

std::filesystem::path resolve(const std::filesystem::path& base, const std::string& path) {
  const std::filesystem::path p(path);
  return p.is_absolute() ? p : base / p;
}

std::string stem_of(const std::filesystem::path& p) {
  std::filesystem::path q = p;
  while (!q.empty() && q.filename().empty()) q = q.parent_path();
  return q.stem().string();
}

// One entry of models: or recipes:, a plain path or a mapping.
Named named_entry(const YAML::Node& n, const std::filesystem::path& base, const std::string& where,
                  const char* path_key) {
  if (n.IsScalar()) {
    const auto path = resolve(base, n.as<std::string>());
    return {stem_of(path), path, {}};
  }
  if (!n.IsMap() || !n["name"])
    throw input_error(where, std::string("a path or {name, ") + path_key + "}", YAML::Dump(n));
  Named out{n["name"].as<std::string>(), {}, n["keys"]};
  if (n[path_key]) out.path = resolve(base, n[path_key].as<std::string>());
  if (out.path.empty() == !out.keys)
    throw input_error(where + " " + out.name, std::string("exactly one of ") + path_key + " and keys",
                      out.keys ? "both" : "neither");
  return out;
}

std::vector<Named> entries(const YAML::Node& root, const char* key, const std::filesystem::path& file,
                           const char* path_key) {
  const YAML::Node list = root[key];
  if (!list || !list.IsSequence() || list.size() == 0)
    throw input_error(file.string() + ": " + key, "a non-empty list", list ? YAML::Dump(list) : "nothing");
  std::vector<Named> out;
  for (std::size_t i = 0; i < list.size(); ++i)
    out.push_back(named_entry(list[i], file.parent_path(),
                              file.string() + ": " + key + "[" + std::to_string(i) + "]", path_key));
  return out;
}

std::vector<std::string> strings(const YAML::Node& n, const std::string& where) {
  std::vector<std::string> out;
  if (!n) return out;
  if (!n.IsSequence()) throw input_error(where, "a list", YAML::Dump(n));
  for (const auto& item : n) out.push_back(item.as<std::string>());
  return out;
}

// The recipe of one job: the file or inline keys, then the job's format, then
// the batch's calibration where the recipe names none; checked as `ptq quantize` does.
Recipe job_recipe(const Named& recipe, const std::string& format, const std::vector<CalibSourceSpec>& calib,
                  const std::string& where) {
  Recipe r = recipe.keys ? recipe_from_yaml(YAML::Dump(recipe.keys), where) : load_recipe(recipe.path);
  if (!format.empty()) {
    const auto colon = format.find(':');
    r.format = parse_output_format(format.substr(0, colon), where + " format");
    r.format_given = true;
    if (colon != std::string::npos) r.gguf_type = format.substr(colon + 1);
  }
  r.resolve_format();
  r.apply_implied_defaults();
  if (r.sources.empty() && r.needs_calibration()) r.sources = calib;
  r.validate();
  check_given_keys_apply(r);
  if (r.needs_calibration() && r.sources.empty())
    throw input_error(where, "calibration data (the recipe's sources or the batch's calib:)", "none");
  return r;
}

std::string fingerprint(const std::string& model_hash, const Recipe& r,
                        std::map<std::filesystem::path, std::string>& hashes) {
  Fnv1a64 h;
  h.update(model_hash);
  h.update(recipe_to_yaml(r));
  for (const CalibSourceSpec& s : r.sources) {
    auto [it, added] = hashes.try_emplace(s.path);
    if (added) it->second = hash_path(s.path);
    h.update(it->second);
  }
  return h.hex();
}

std::optional<ReportConfig> report_section(const YAML::Node& n, const std::filesystem::path& file) {
  if (!n) return std::nullopt;
  const std::string where = file.string() + ": report";
  ReportConfig c;
  for (const std::string& t : strings(n["texts"], where + ".texts")) {
    NamedPath text = parse_named_path(t);
    text.path = resolve(file.parent_path(), text.path.string());
    c.texts.push_back(text);
  }
  for (const std::string& t : strings(n["tasks"], where + ".tasks")) c.tasks.push_back(resolve(file.parent_path(), t));
  if (n["limit"]) c.task_limit = n["limit"].as<int>();
  if (n["max_windows"]) c.eval.max_windows = n["max_windows"].as<int>();
  if (c.texts.empty() && c.tasks.empty()) throw input_error(where, "texts or tasks", "neither");
  return c;
}

}  // namespace

BatchPlan load_batch_plan(const std::filesystem::path& jobs_file) {
  const YAML::Node root = load_yaml_file(jobs_file);
  BatchPlan plan{.jobs_file = jobs_file, .jobs = {}, .threads = 0, .report = {}};
  try {
    const auto models = entries(root, "models", jobs_file, "path");
    const auto recipes = entries(root, "recipes", jobs_file, "recipe");
    std::vector<std::string> formats = strings(root["formats"], jobs_file.string() + ": formats");
    if (formats.empty()) formats.push_back("");
    std::vector<CalibSourceSpec> calib;
    for (const std::string& s : strings(root["calib"], jobs_file.string() + ": calib")) {
      calib.push_back(parse_calib_spec(s));
      calib.back().path = resolve(jobs_file.parent_path(), calib.back().path.string());
    }
    if (root["threads"]) plan.threads = root["threads"].as<int>();
    plan.report = report_section(root["report"], jobs_file);
    std::map<std::filesystem::path, std::string> hashes;
    std::set<std::string> ids;
    for (const Named& m : models) {
      if (!std::filesystem::is_directory(m.path))
        throw input_error(jobs_file.string() + ": models " + m.name, "a checkpoint folder", m.path.string());
      const std::string model_hash = hash_path(m.path);
      for (const Named& r : recipes)
        for (const std::string& f : formats) {
          std::string name = r.name;  // "gptq-w4.gguf-Q4_K_M" for format gguf:Q4_K_M
          if (!f.empty()) (name += '.') += f;
          std::replace(name.begin(), name.end(), ':', '-');
          const std::string where = jobs_file.string() + ": job " + m.name + "/" + name;
          Recipe recipe;
          try {
            recipe = job_recipe(r, f, calib, where);
          } catch (const InputError& e) {  // says which job the recipe error is in
            throw InputError(where + ": " + e.what());
          }
          BatchJob job{m.name, name, m.path, recipe, fingerprint(model_hash, recipe, hashes)};
          if (!ids.insert(job.id()).second)
            throw input_error(where, "a job name not used before", "\"" + job.id() + "\" twice");
          plan.jobs.push_back(std::move(job));
        }
    }
  } catch (const YAML::Exception& e) {
    throw input_error(jobs_file.string(), "the keys of docs/batch.md", e.what());
  }
  return plan;
}

}  // namespace ptq
