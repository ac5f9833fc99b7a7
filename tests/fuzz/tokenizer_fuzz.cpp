// Tokenizer::load on tokenizer.json (+ tokenizer_config.json), then in use.
// The config is the input's optional second file. Byte-level BPE and
// SentencePiece-style BPE models, added tokens, normalizers, pre-tokenizers,
// decoders, `legacy` and the bos/eos tokens.
#include "fuzz_util.hpp"
#include "use_tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptq;
  const auto files = fuzz::split_files(fuzz::as_text(data, size), 2);
  const auto path = fuzz::put_file("tokenizer.json", files[0]);
  fuzz::put_file("tokenizer_config.json", files[1]);
  fuzz::refuse_cleanly([&] { fuzz::use_tokenizer(Tokenizer::load(path)); });
  return 0;
}
