// `ptq quantize --format compressed-tensors --bpw B`: each block Linear on its
// own grid. The folder keeps the budget (ptq inspect's bits per Linear weight,
// from the tensors as written), states one config group per grid whose targets
// name every Linear once with the grid mix.json chose, reads back through
// ptq's own compressed-tensors reader at the loss the mix measured, and its
// mix.json replays to the same bytes.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "test_paths.hpp"

namespace ptq {
namespace {

using json = nlohmann::json;

json read_json(const std::filesystem::path& path) { return json::parse(test::read_bytes(path)); }

// "w4-g128", "w8-pc": mix_scheme's names. Built by appending: GCC 12's
// -Wrestrict misfires on chained operator+.
std::string scheme_name(const json& weights) {
  std::string name = "w";
  name.append(std::to_string(weights["num_bits"].get<int>()));
  if (weights["strategy"] == "channel") return name.append("-pc");
  return name.append("-g").append(std::to_string(weights["group_size"].get<int>()));
}

TEST(LinearMix, FitsTheBudgetStatesEachGridAndReplays) {
  const auto dir = test::temp_dir("linear-mix");
  const std::string common = "quantize --model " + test::fixture("models/tiny").string() +
                             " --method rtn --format compressed-tensors ";
  ASSERT_EQ(test::run_ptq(common + "--bpw 5 --sensitivity-windows 2 --samples 16 --seqlen 128 "
                                   "--calib-ids " +
                              test::fixture("goldens/tiny/calib_generic.ids").string() +
                              " --out " + (dir / "mix").string(),
                          dir / "mix.log"),
            0)
      << test::read_bytes(dir / "mix.log");

  ASSERT_EQ(test::run_ptq("inspect --json " + (dir / "mix").string(), dir / "inspect.json"), 0);
  const double bits = read_json(dir / "inspect.json")["quantization"]["linear_bits_per_weight"];
  EXPECT_LE(bits, 5.0);
  EXPECT_GT(bits, 4.5);  // the budget is used: more than every Linear at 4 bits

  const json record = read_json(dir / "mix/mix.json");
  std::map<std::string, std::string> chosen;
  for (const auto& t : record["tensors"]) chosen[t["name"]] = t["type"];
  EXPECT_EQ(chosen.size(), 4u * 7u);
  std::map<std::string, std::string> stated;
  const json q = read_json(dir / "mix/config.json")["quantization_config"];
  std::set<std::string> grids;
  for (const auto& [name, group] : q["config_groups"].items()) {
    grids.insert(scheme_name(group["weights"]));
    for (const auto& target : group["targets"])
      EXPECT_TRUE(stated.emplace(target, scheme_name(group["weights"])).second) << target;
  }
  EXPECT_EQ(stated, chosen);
  EXPECT_GE(grids.size(), 2u);

  // ptq's reader: the model as written, at about the loss the mix predicted
  // (the sum of each Linear's KL alone, measured on the calibration windows).
  ASSERT_EQ(test::run_ptq("eval --model " + (dir / "mix").string() + " --reference " +
                              test::fixture("models/tiny").string() + " --ids " +
                              test::fixture("goldens/tiny/eval_generic.ids").string() +
                              " --max-windows 8 --json " + (dir / "eval.json").string(),
                          dir / "eval.log"),
            0)
      << test::read_bytes(dir / "eval.log");
  const double kl = read_json(dir / "eval.json")["kl"];
  const double predicted = record["predicted"];
  EXPECT_GT(kl, predicted / 3);
  EXPECT_LT(kl, predicted * 3);

  ASSERT_EQ(test::run_ptq(common + "--mix-types " + (dir / "mix/mix.json").string() + " --out " +
                              (dir / "replay").string(),
                          dir / "replay.log"),
            0)
      << test::read_bytes(dir / "replay.log");
  EXPECT_EQ(test::read_bytes(dir / "replay/model.safetensors"),
            test::read_bytes(dir / "mix/model.safetensors"));
}

TEST(LinearMix, RefusesWhatNoGridFits) {
  const auto dir = test::temp_dir("linear-mix-refused");
  const std::string common = "quantize --model " + test::fixture("models/tiny").string() +
                             " --method rtn --calib-ids " +
                             test::fixture("goldens/tiny/calib_generic.ids").string() + " ";
  const std::string ct = "--format compressed-tensors ";
  const std::pair<std::string, std::string> cases[] = {
      {ct + "--bpw 3", "--bpw 3.000000: expected a budget of at least"},
      {ct + "--max-bytes 3000000", "mix.max_bytes"},
      {ct + "--bpw 5 --mix-candidates w4-g128,w3-g128", "\"w3-g128\""},
      {"--bpw 5 --format gptq", "format gguf or compressed-tensors"},
  };
  for (const auto& [args, message] : cases) {
    SCOPED_TRACE(args);
    EXPECT_NE(test::run_ptq(common + args + " --out " + (dir / "out").string(), dir / "log"), 0);
    EXPECT_NE(test::read_bytes(dir / "log").find(message), std::string::npos)
        << test::read_bytes(dir / "log");
    EXPECT_FALSE(std::filesystem::exists(dir / "out"));
  }
}

}  // namespace
}  // namespace ptq
