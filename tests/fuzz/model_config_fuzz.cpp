// load_model_config on a config.json, validate() included.
// Every field's type and range, rope parameters old and new style, and the
// consistency checks between sizes.
#include "fuzz_util.hpp"
#include "io/model_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptq;
  const auto path = fuzz::write_file("config.json", fuzz::as_text(data, size));
  fuzz::refuse_cleanly([&] { load_model_config(path); });
  return 0;
}
