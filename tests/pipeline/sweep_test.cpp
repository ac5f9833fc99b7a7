// ptq sweep on tiny: its variants are the documented commands' outputs byte
// for byte (a share from the statistics file = ptq quantize --stats --mix; an
// exact share = ptq quantize --calib with the mixed weights), and its report
// holds every variant with the sweep's axis and the curve per text.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_paths.hpp"

namespace ptq {
namespace {

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(Sweep, VariantsAreTheDocumentedRunsAndTheReportHasTheCurve) {
  const auto dir = test::temp_dir("sweep");
  const std::string model = test::fixture("models/tiny").string();
  const std::string g = "g=" + test::fixture("goldens/tiny/calib_generic.ids").string();
  const std::string d = "d=" + test::fixture("goldens/tiny/calib_domain.ids").string();
  const std::string recipe = (test::source_dir() / "recipes/gptq-w4-g128.yaml").string();
  ASSERT_EQ(test::run_ptq("sweep --model " + model + " --calib " + g + " --calib " + d +
                              " --shares 0,50,100 --exact 50 --recipe " + recipe +
                              " --eval generic=" + test::fixture("goldens/tiny/eval_generic.ids").string() +
                              " --eval domain=" + test::fixture("goldens/tiny/eval_domain.ids").string() +
                              " --max-windows 4 --threads 2 --out " + (dir / "sweep").string(),
                          dir / "sweep.log"),
            0)
      << test::read_bytes(dir / "sweep.log");
  EXPECT_NE(test::read_bytes(dir / "sweep.log").find("from one file of per-source statistics"), std::string::npos);

  const std::string common = "quantize --model " + model + " --recipe " + recipe + " --threads 2 ";
  ASSERT_EQ(test::run_ptq(common + "--stats " + (dir / "sweep/stats.h5").string() + " --mix g=0.5 --mix d=0.5 --out " +
                              (dir / "stats-50").string(),
                          dir / "stats.log"),
            0)
      << test::read_bytes(dir / "stats.log");
  ASSERT_EQ(test::run_ptq(common + "--calib " + g + ":0.5 --calib " + d + ":0.5 --out " + (dir / "exact-50").string(),
                          dir / "exact.log"),
            0)
      << test::read_bytes(dir / "exact.log");
  EXPECT_EQ(test::read_bytes(dir / "sweep/d-50-stats/model.safetensors"),
            test::read_bytes(dir / "stats-50/model.safetensors"));
  EXPECT_EQ(test::read_bytes(dir / "sweep/d-50-exact/model.safetensors"),
            test::read_bytes(dir / "exact-50/model.safetensors"));

  const auto report = nlohmann::json::parse(test::read_bytes(dir / "sweep/report/report.json"));
  ASSERT_EQ(report["variants"].size(), 4u);
  EXPECT_EQ(report["variants"][3]["name"], "d-50-exact");
  EXPECT_EQ(report["config"]["sweep"]["x"], nlohmann::json({0.0, 50.0, 100.0, 50.0}));
  const std::string html = test::read_bytes(dir / "sweep/report/report.html");
  EXPECT_EQ(count(html, "class=\"series\""), 2 * 2);  // two texts, two series (statistics, exact)
  EXPECT_NE(test::read_bytes(dir / "sweep/report/report.md").find("## Sweep"), std::string::npos);
}

}  // namespace
}  // namespace ptq
