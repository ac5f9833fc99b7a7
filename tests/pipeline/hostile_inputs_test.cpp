// Hostile and broken inputs, one test per class of failure: each must stop
// with exit 2 and a message naming the file (and where in it), never run on to
// a silently wrong output; and outputs keep the calibration text out unless
// asked (docs/hostile_inputs.md lists every case).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "io/error.hpp"
#include "io/hdf5.hpp"
#include "io/safetensors.hpp"
#include "test_paths.hpp"

namespace ptq {
namespace {

std::filesystem::path tiny() { return test::fixture("models/tiny"); }
std::string calib_ids() { return test::fixture("goldens/tiny/calib_generic.ids").string(); }

struct Run {
  int exit_code;
  std::string log;
};

Run ptq(const std::string& args) {
  const auto log = test::temp_dir("hostile-log") / "log.txt";
  const int code = test::run_ptq(args, log);
  return {code, test::read_bytes(log)};
}

// Exit 2, every fragment in the message, and no output folder left behind.
void expect_refused(const std::string& args, const std::vector<std::string>& fragments,
                    const std::filesystem::path& out = {}) {
  const Run r = ptq(args);
  EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.log;
  for (const auto& f : fragments)
    EXPECT_NE(r.log.find(f), std::string::npos) << "'" << f << "' not in:\n" << r.log;
  if (!out.empty()) {
    EXPECT_FALSE(std::filesystem::exists(out)) << out;
  }
}

std::string gptq_args(const std::filesystem::path& model, const std::string& calib,
                      const std::filesystem::path& out) {
  return "quantize --model " + model.string() + " --method gptq --bits 4 --group 32 --samples 4 " +
         "--seqlen 64 --calib " + calib + " --out " + out.string();
}

// A copy of tiny whose config.json is edited by `edit`.
std::filesystem::path tiny_with_config(const std::string& name,
                                       const std::function<void(nlohmann::json&)>& edit) {
  const auto dir = test::temp_dir(name);
  for (const auto& e : std::filesystem::directory_iterator(tiny()))
    std::filesystem::create_symlink(e.path(), dir / e.path().filename());
  std::filesystem::remove(dir / "config.json");
  nlohmann::json config = nlohmann::json::parse(test::read_bytes(tiny() / "config.json"));
  edit(config);
  std::ofstream(dir / "config.json") << config.dump(2);
  return dir;
}

TEST(HostileData, CalibrationWindowsStayOutOfTheOutputUnlessAsked) {
  const auto dir = test::temp_dir("hostile-leak");
  const std::string calib = "generic=" + calib_ids();
  ASSERT_EQ(ptq(gptq_args(tiny(), calib, dir / "default")).exit_code, 0);
  ASSERT_EQ(ptq(gptq_args(tiny(), calib, dir / "kept") + " --record-calibration-windows").exit_code,
            0);

  const H5Reader shared(dir / "default" / "quantized.h5");
  EXPECT_FALSE(shared.has("calibration/window_ids"));
  EXPECT_EQ(shared.read<std::int64_t>("calibration/window_hash").size(), 4u);
  EXPECT_EQ(shared.string_attribute("calibration/sources/generic", "path"), "calib_generic.ids");
  EXPECT_EQ(shared.string_attribute("/", "recipe").find(test::shared_dir().string()),
            std::string::npos);
  const std::string card = test::read_bytes(dir / "default" / "README.md");
  EXPECT_EQ(card.find(test::shared_dir().string()), std::string::npos);
  EXPECT_NE(card.find("not its tokens"), std::string::npos) << card;

  const H5Reader kept(dir / "kept" / "quantized.h5");
  EXPECT_EQ(kept.read<std::int32_t>("calibration/window_ids").size(), 4u * 64u);
  EXPECT_EQ(kept.read<std::int64_t>("calibration/window_hash"),
            shared.read<std::int64_t>("calibration/window_hash"));
  EXPECT_EQ(kept.string_attribute("calibration/sources/generic", "path"), calib_ids());
  EXPECT_NE(test::read_bytes(dir / "kept" / "README.md").find("sharing this folder shares"),
            std::string::npos);
}

TEST(HostileData, NonFiniteWeightsAreRefusedNamingTheTensor) {
  const auto dir = test::temp_dir("hostile-nan");
  for (const auto& e : std::filesystem::directory_iterator(tiny()))
    if (e.path().extension() != ".safetensors")
      std::filesystem::create_symlink(e.path(), dir / e.path().filename());
  // ptq's own writer refuses a NaN, so the file is patched in place.
  std::string file = test::read_bytes(tiny() / "model.safetensors");
  std::uint64_t header_length = 0;
  std::memcpy(&header_length, file.data(), sizeof header_length);
  const auto header = nlohmann::json::parse(file.substr(8, header_length));
  const std::string norm = "model.layers.1.post_attention_layernorm.weight";
  ASSERT_EQ(header[norm]["dtype"], "F16");
  const std::uint16_t nan = 0x7E00;  // float16 NaN
  const std::size_t at = 8 + header_length + header[norm]["data_offsets"][0].get<std::size_t>();
  std::memcpy(file.data() + at + 3 * sizeof nan, &nan, sizeof nan);
  std::ofstream(dir / "model.safetensors", std::ios::binary) << file;
  const auto out = test::temp_dir("hostile-nan-out") / "q";
  expect_refused(gptq_args(dir, "g=" + calib_ids(), out), {norm, "element 3", "NaN"}, out);
  expect_refused("eval --model " + dir.string() + " --ids " +
                     test::fixture("goldens/tiny/eval_generic.ids").string(),
                 {norm, "NaN"});
}

TEST(HostileData, NonFiniteOutputsAreNeverWritten) {
  const auto dir = test::temp_dir("hostile-nonfinite-out");
  const std::vector<std::uint16_t> values{0x3C00, 0x7C00};  // float16 1 and +infinity
  const TensorToWrite t{"w", DType::F16, {2}, std::as_bytes(std::span(values))};
  try {
    write_safetensors(dir / "x.safetensors", std::span(&t, 1));
    ADD_FAILURE() << "wrote an infinity";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("tensor w, element 1"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

TEST(HostileData, ConfigFieldsTheForwardDoesNotImplementAreRefused) {
  const auto out = test::temp_dir("hostile-config") / "q";
  const auto gelu =
      tiny_with_config("hostile-gelu", [](nlohmann::json& c) { c["hidden_act"] = "gelu"; });
  expect_refused("quantize --model " + gelu.string() + " --method rtn --out " + out.string(),
                 {"config.json: hidden_act", "\"silu\"", "gelu"}, out);
  const auto window = tiny_with_config("hostile-window", [](nlohmann::json& c) {
    c["model_type"] = "mistral";
    c["sliding_window"] = 32;
  });
  expect_refused(gptq_args(window, "g=" + calib_ids(), out), {"sliding_window", "32", "64 tokens"},
                 out);
}

TEST(HostileData, RecipeKeysGivenTwiceOrIgnoredAreRefused) {
  const auto dir = test::temp_dir("hostile-recipe");
  std::ofstream(dir / "twice.yaml") << "method: rtn\nbits: 4\ngroup: 32\nbits: 3\n";
  expect_refused("quantize --model " + tiny().string() + " --recipe " +
                     (dir / "twice.yaml").string() + " --out " + (dir / "a").string(),
                 {"twice.yaml: line 4", "\"bits\" again"}, dir / "a");
  expect_refused("quantize --model " + tiny().string() + " --method w8a8 --bits 3 --calib g=" +
                     calib_ids() + " --out " + (dir / "b").string(),
                 {"--bits", "method w8a8", "ignore"}, dir / "b");
  std::ofstream(dir / "actorder.yaml") << "method: rtn\nact_order: true\n";
  expect_refused("quantize --model " + tiny().string() + " --recipe " +
                     (dir / "actorder.yaml").string() + " --out " + (dir / "c").string(),
                 {"actorder.yaml: act_order", "method rtn"}, dir / "c");
}

TEST(HostileData, BadCalibrationDataIsNamedWithItsPlace) {
  const auto dir = test::temp_dir("hostile-calib");
  std::ofstream(dir / "latin1.txt", std::ios::binary)
      << std::string(300, 'a') << "\ncaf\xe9 au lait\n";
  expect_refused(gptq_args(tiny(), "t=" + (dir / "latin1.txt").string(), dir / "a"),
                 {"latin1.txt: line 2, byte 304", "UTF-8", "0xe9"}, dir / "a");
  std::ofstream(dir / "binary.jsonl", std::ios::binary) << "{\"text\": \"x\"}\n"
                                                        << std::string(3, '\0');
  expect_refused(gptq_args(tiny(), "t=" + (dir / "binary.jsonl").string(), dir / "b"),
                 {"binary.jsonl: line 2", "NUL"}, dir / "b");
  std::vector<std::int32_t> ids(64 * 4, 5);
  ids[2 * 64 + 7] = 99999;
  std::ofstream(dir / "other.ids", std::ios::binary)
      .write(reinterpret_cast<const char*>(ids.data()), std::streamsize(ids.size() * 4));
  expect_refused(gptq_args(tiny(), "o=" + (dir / "other.ids").string(), dir / "c"),
                 {"other.ids: window 2", "position 7", "vocab_size", "99999"}, dir / "c");
}

TEST(HostileData, EndlessStreamsAndSpecialFilesAreRefusedBeforeReading) {
  const auto dir = test::temp_dir("hostile-stream");
  expect_refused(gptq_args(tiny(), "z=/dev/zero", dir / "a"), {"/dev/zero", "a character device"},
                 dir / "a");
  ASSERT_EQ(::mkfifo((dir / "fifo.txt").c_str(), 0600), 0);
  expect_refused(gptq_args(tiny(), "f=" + (dir / "fifo.txt").string(), dir / "b"),
                 {"fifo.txt", "a FIFO"}, dir / "b");
  expect_refused("quantize --model " + tiny().string() + " --method rtn --threads -1 --out " +
                     (dir / "c").string(),
                 {"--threads", "-1"}, dir / "c");
}

}  // namespace
}  // namespace ptq
