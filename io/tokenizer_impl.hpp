#pragma once
// The parts of a Tokenizer (internal to io/): what tokenizer.json's sections say,
// as data. Loading (tokenizer_load.cpp) fills it; tokenizer.cpp runs it.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "io/bpe.hpp"
#include "io/tokenizer.hpp"

namespace ptq {

// "▁" (U+2581), SentencePiece's visible space.
inline constexpr std::string_view k_space_marker = "\xE2\x96\x81";

// Normalizer steps, applied in order to each piece between added tokens.
enum class NormalizerStep {
  nfc,              // Unicode NFC
  prepend_marker,   // Prepend("▁") on a non-empty piece
  spaces_to_marker  // Replace(" ", "▁")
};

// When the Metaspace pre-tokenizer puts "▁" before a piece not starting with one.
enum class PrependScheme { always, first, never };
enum class MetaspaceSplit { off, on };  // on: a word starts at every "▁"

enum class PreTokenizerKind { none, byte_level, metaspace };

struct PreTokenizerConfig {
  PreTokenizerKind kind = PreTokenizerKind::none;
  std::optional<SplitRegex> regex;               // byte_level: the word split (none: one word)
  PrependScheme prepend = PrependScheme::never;  // metaspace; byte_level: a " "
  MetaspaceSplit split = MetaspaceSplit::off;    // metaspace
  bool operator==(const PreTokenizerConfig&) const = default;
};

enum class DecoderKind { byte_level, sentencepiece };

struct DecoderConfig {
  DecoderKind kind = DecoderKind::byte_level;
  int strip_leading_spaces = 0;  // sentencepiece: Strip(" ", start=N)
  bool operator==(const DecoderConfig&) const = default;
};

enum class ByteFallback { off, on };

struct ModelConfig {
  ByteFallback byte_fallback = ByteFallback::off;
  WholeWordLookup whole_word_lookup = WholeWordLookup::off;
  std::optional<std::int32_t> unk_id;
};

enum class AddedTokenStage { raw, normalized };  // matched before or after the normalizer

struct AddedToken {
  std::string content;
  std::int32_t id = 0;
  AddedTokenStage stage = AddedTokenStage::raw;
  bool lstrip = false;  // swallows whitespace before it (tokenizer.json's field)
  bool rstrip = false;  // swallows whitespace after it
  // tokenizer.json's "special": converters to other formats mark it a control token.
  bool special = false;
};

// Added tokens of one stage, indexed by first byte for the leftmost-longest scan.
struct AddedTokenIndex {
  std::vector<std::pair<std::string, std::size_t>> patterns;  // (text as matched, index in added)
  std::array<std::vector<std::size_t>, 256> by_first_byte;
  void add(std::string pattern, std::size_t token);
};

struct Tokenizer::Impl {
  Impl(std::string source_, BpeModel bpe_) : source(std::move(source_)), bpe(std::move(bpe_)) {}

  std::string source;  // the file(s) it came from, for error messages
  // Non-empty when tokenizer_config.json's class set the pipeline and
  // tokenizer.json's own differs (Tokenizer::pipeline_note).
  std::string pipeline_note;
  BpeModel bpe;
  // The merges as the file lists them, in rank order: BpeModel keeps only its
  // lookup table, converters to other formats need the list.
  std::vector<std::pair<std::string, std::string>> merges;
  ModelConfig model;
  std::vector<NormalizerStep> normalizer;
  PreTokenizerConfig pre_tokenizer;
  DecoderConfig decoder;
  std::vector<AddedToken> added;
  std::optional<std::int32_t> bos;
  std::optional<std::int32_t> eos;

  // Derived by finish(): every id's string, and the <0xNN> byte-fallback ids.
  std::vector<std::string> id_to_token;
  std::unordered_map<std::string, std::int32_t> added_by_content;
  std::array<std::int32_t, 256> byte_fallback_ids{};  // -1 where absent
  std::unordered_map<std::int32_t, unsigned char> byte_of_fallback_id;
  AddedTokenIndex raw_added;
  AddedTokenIndex normalized_added;  // patterns are the normalized contents
  // Checks the parts against each other and derives the tables above.
  void finish();

  std::string normalize(std::string_view piece) const;
};

}  // namespace ptq
