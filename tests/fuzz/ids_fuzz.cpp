// read_ids on an .ids file (raw little-endian int32) checked against a vocab_size.
// The input's first 4 bytes are the vocab_size (any int32, zero and negative
// included), the rest is the file. Oracle: an accepted file holds exactly its
// size / 4 ids, each in [0, vocab_size).
#include <cstring>
#include <string>

#include "fuzz_util.hpp"
#include "io/ids_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptq;
  if (size < sizeof(std::int32_t)) return 0;
  std::int32_t vocab_size;
  std::memcpy(&vocab_size, data, sizeof vocab_size);
  const auto file = fuzz::as_text(data + sizeof vocab_size, size - sizeof vocab_size);
  const auto path = fuzz::write_file("tokens.ids", file);
  fuzz::refuse_cleanly([&] {
    const auto ids = read_ids(path, vocab_size);
    if (ids.size() * sizeof(std::int32_t) != file.size()) fuzz::fail("ids lost or added");
    for (const std::int32_t id : ids)
      if (id < 0 || id >= vocab_size) fuzz::fail("id " + std::to_string(id) + " accepted");
  });
  return 0;
}
