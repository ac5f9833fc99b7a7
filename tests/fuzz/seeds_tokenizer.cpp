// Seeds of tokenizer and tokenizer_merges: the fixtures' tokenizers shrunk to
// their first ids (the byte tokens and the first merged pieces of every
// fixture lie there) and the merges among them, each section kept as it was.
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "fuzz_util.hpp"
#include "seeds.hpp"

namespace ptq::fuzz {

namespace {

using json = nlohmann::ordered_json;

constexpr int kKeptIds = 320;

// A merge "left right" (any of its spaces) or [left, right] whose halves and
// whole are all kept tokens.
bool merge_kept(const json& merge, const std::set<std::string>& kept) {
  const auto kept_pair = [&](const std::string& l, const std::string& r) {
    return kept.contains(l) && kept.contains(r) && kept.contains(l + r);
  };
  if (merge.is_array()) return merge.size() == 2 && kept_pair(merge[0], merge[1]);
  const auto text = merge.get<std::string>();
  for (auto space = text.find(' '); space != std::string::npos; space = text.find(' ', space + 1))
    if (kept_pair(text.substr(0, space), text.substr(space + 1))) return true;
  return false;
}

// The vocab's ids below kKeptIds; their tokens.
json shrunk_vocab(const json& vocab, std::set<std::string>& kept) {
  json out = json::object();
  for (const auto& [token, id] : vocab.items()) {
    if (id.get<int>() >= kKeptIds) continue;
    out[token] = id;
    kept.insert(token);
  }
  return out;
}

std::string shrunk_tokenizer_json(const std::filesystem::path& path) {
  json j = json::parse(read_file(path));
  json& model = j["model"];
  std::set<std::string> kept;
  model["vocab"] = shrunk_vocab(model["vocab"], kept);
  json merges = json::array();
  for (const auto& m : model["merges"])
    if (merge_kept(m, kept)) merges.push_back(m);
  model["merges"] = merges;
  // Added tokens beyond the kept ids follow them, so the ids stay dense.
  int next_id = kKeptIds;
  for (auto& added : j["added_tokens"])
    if (added["id"].get<int>() >= kKeptIds) added["id"] = next_id++;
  return j.dump();
}

std::string shrunk_merges_txt(const std::filesystem::path& path,
                              const std::set<std::string>& kept) {
  std::istringstream lines(read_file(path));
  std::string out;
  for (std::string line; std::getline(lines, line);)
    if (line.starts_with("#version") || merge_kept(json(line), kept)) out += line + "\n";
  return out;
}

// vocab.json (or encoder.json) + merges.txt (or vocab.bpe), joined.
std::string shrunk_gpt2_files(const std::filesystem::path& vocab,
                              const std::filesystem::path& merges) {
  std::set<std::string> kept;
  const std::string files[] = {shrunk_vocab(json::parse(read_file(vocab)), kept).dump(),
                               shrunk_merges_txt(merges, kept)};
  return join_files(files);
}

}  // namespace

void add_tokenizer_seeds(const Seeds& seeds) {
  seeds.add("tokenizer", "tiny.json", shrunk_tokenizer_json(fixture("models/tiny/tokenizer.json")));
  for (const char* name : {"gpt2", "llama2-hf", "phi-3-mini-hf"}) {
    const auto dir = fixture("tokenizers") / name;
    const std::string files[] = {shrunk_tokenizer_json(dir / "tokenizer.json"),
                                 read_file(dir / "tokenizer_config.json")};
    seeds.add("tokenizer", std::string(name) + ".json", files[0]);
    seeds.add("tokenizer", std::string(name) + "-with-config", join_files(files));
  }
  seeds.add("tokenizer_merges", "gpt2",
            shrunk_gpt2_files(fixture("tokenizers/gpt2/vocab.json"),
                              fixture("tokenizers/gpt2/merges.txt")));
  seeds.add("tokenizer_merges", "llama3.2",
            shrunk_gpt2_files(fixture("tokenizers/llama3.2-bpe/encoder.json"),
                              fixture("tokenizers/llama3.2-bpe/vocab.bpe")));
}

}  // namespace ptq::fuzz
