// Tokenizer::load_gpt2_files on vocab.json + merges.txt, then in use.
// GPT-2's separate files (or Llama 3's encoder.json + vocab.bpe), the merges
// being the input's second file.
#include "fuzz_util.hpp"
#include "use_tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace ptq;
  const auto files = fuzz::split_files(fuzz::as_text(data, size), 2);
  const auto vocab = fuzz::put_file("vocab.json", files[0]);
  const auto merges = fuzz::put_file("merges.txt", files[1]);
  fuzz::refuse_cleanly([&] { fuzz::use_tokenizer(Tokenizer::load_gpt2_files(vocab, merges)); });
  return 0;
}
