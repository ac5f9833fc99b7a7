#pragma once
// Calibration windows cut in order from a fixture's calibration ids, for
// tests that call the quantize drivers directly (no calibration file).
#include <string>

#include "io/ids_file.hpp"
#include "pipeline/recipe/calib_data.hpp"
#include "test_paths.hpp"

namespace ptq::test {

inline CalibrationSet fixture_windows(const std::string& model, int windows, int seq_len) {
  const std::vector<std::int32_t> ids =
      read_ids(fixture("goldens/" + model + "/calib_generic.ids"));
  CalibrationSet set;
  set.config.seqlen = seq_len;
  set.config.samples = windows;
  for (int i = 0; i < windows; ++i)
    set.windows.push_back(
        {0, i * seq_len, {ids.begin() + i * seq_len, ids.begin() + (i + 1) * seq_len}});
  return set;
}

}  // namespace ptq::test
