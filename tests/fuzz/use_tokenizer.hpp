#pragma once
// What callers do with a loaded tokenizer, so that a file that loads but
// leaves inconsistent tables is caught: encode a text touching every
// pre-tokenizer and normalizer path, decode ids, list the vocabulary.
#include <algorithm>
#include <numeric>

#include "fuzz_util.hpp"
#include "io/tokenizer.hpp"

namespace ptq::fuzz {

inline void use_tokenizer(const Tokenizer& tokenizer) {
  static constexpr std::string_view kText =
      "Hello world!  It's 2024: x=3.14, caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\n"
      "\tint main() { return 0; }\r\n<s></s><|endoftext|> <unk>   end";
  refuse_cleanly([&] { tokenizer.decode(tokenizer.encode(kText)); });
  // The first ids, added and special tokens among them in the seeds.
  std::vector<std::int32_t> ids(static_cast<std::size_t>(std::min(tokenizer.vocab_size(), 512)));
  std::iota(ids.begin(), ids.end(), 0);
  refuse_cleanly([&] { tokenizer.decode(ids); });
  tokenizer.vocabulary();
}

}  // namespace ptq::fuzz
