#pragma once
// Tokenizers of Llama-family checkpoints, matching Hugging Face `tokenizers`
// (add_special_tokens=False: no BOS/EOS is ever added by encode):
//  - byte-level BPE (GPT-2, Llama 3, Qwen2, our tiny/small models): GPT-2
//    byte<->unicode mapping, one of the known pre-tokenizer regexes, merges by rank;
//  - SentencePiece-style BPE from tokenizer.json (Llama 2, Mistral, Phi-3): "▁" for
//    spaces, merges by rank, byte fallback (<0xNN>), `legacy` of tokenizer_config.json.
// Added/special tokens found in the text are always split out before the model.
// Malformed files throw InputError naming the file, the expected and the found.
// A Tokenizer is immutable after load; encode/decode are safe to call concurrently.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ptq {

// The pre-tokenizer regexes we implement (as hand-written matchers, not regexes).
enum class SplitRegex {
  gpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  llama3,  // (?i:'s|...)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|...
  qwen2,   // as llama3 but \p{N} (one digit per piece)
};

// Whether a byte-level BPE word that is itself a vocabulary entry skips the merges
// (tokenizers' `ignore_merges`, set in Llama 3's tokenizer.json).
enum class WholeWordLookup { off, on };

// How load_gpt2_files (vocab.json/encoder.json + merges.txt/vocab.bpe) is configured;
// those files do not say which pre-tokenizer their family uses.
struct Gpt2FilesConfig {
  SplitRegex regex = SplitRegex::gpt2;
  WholeWordLookup whole_word_lookup = WholeWordLookup::off;
};

// The two tokenizer models we load.
enum class TokenizerFamily {
  byte_level_bpe,    // GPT-2 byte<->unicode mapping, a pre-tokenizer regex
  sentencepiece_bpe  // "▁" for spaces, optional <0xNN> byte fallback
};

// What tokenizer.json says an id is, for converters to other formats (llama.cpp's
// token types are derived from it in pipeline/formats/).
enum class TokenOrigin {
  model,          // an entry of the BPE model's vocab
  byte_fallback,  // a SentencePiece-style <0xNN> token (byte_fallback on)
  added,          // an added token not marked special
  added_special,  // an added token marked "special": true
  unused          // an id no token has (text is empty)
};

struct VocabEntry {
  std::string text;  // the vocabulary string ("Ġthe", "▁the", "<|endoftext|>")
  TokenOrigin origin = TokenOrigin::model;
};

class Tokenizer {
 public:
  // A model folder (tokenizer.json + optional tokenizer_config.json, or
  // vocab.json + merges.txt with the GPT-2 regex) or a tokenizer.json file.
  static Tokenizer load(const std::filesystem::path& dir_or_tokenizer_json);
  static Tokenizer load_gpt2_files(const std::filesystem::path& vocab_json,
                                   const std::filesystem::path& merges_txt,
                                   const Gpt2FilesConfig& config = {});

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text (UTF-8) to ids, no BOS/EOS added. Invalid UTF-8 is an InputError.
  std::vector<std::int32_t> encode(std::string_view text) const;
  // Ids to text (special tokens included verbatim). Ids outside [0, vocab_size())
  // are an InputError.
  std::string decode(std::span<const std::int32_t> ids) const;

  // One past the largest id (model vocabulary and added tokens).
  int vocab_size() const;
  // The id of a token given by its vocabulary string (e.g. "<s>", "Ġthe", "▁the").
  std::optional<std::int32_t> token_id(std::string_view token) const;
  // The vocabulary string of an id (InputError if out of range or unused).
  const std::string& token(std::int32_t id) const;
  // From tokenizer_config.json when present ("bos_token"/"eos_token").
  std::optional<std::int32_t> bos_id() const;
  std::optional<std::int32_t> eos_id() const;

  // The parts of the vocabulary a converter writes out (e.g. llama.cpp's GGUF):
  TokenizerFamily family() const;
  // transformers v5 builds the normalizer, pre-tokenizer and decoder of some
  // tokenizer classes itself (Qwen2Tokenizer, GemmaTokenizer), taking only the
  // vocabulary and merges from tokenizer.json; so does ptq when
  // tokenizer_config.json names one. A sentence saying so when tokenizer.json's
  // own pipeline differs from the class's; empty otherwise.
  const std::string& pipeline_note() const;
  // SentencePiece-style pipelines: whether a "▁" goes before the text (Llama 2's
  // Prepend or Metaspace); Gemma's puts none.
  bool prepends_space() const;
  // Byte-level BPE: the pre-tokenizer regex (nullopt: no word split, or SentencePiece).
  std::optional<SplitRegex> split_regex() const;
  // Every id in [0, vocab_size()), in id order.
  std::vector<VocabEntry> vocabulary() const;
  // The BPE merges in rank order, as (left, right) vocabulary strings.
  const std::vector<std::pair<std::string, std::string>>& merges() const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<const Impl> impl);
  std::unique_ptr<const Impl> impl_;
};

}  // namespace ptq
