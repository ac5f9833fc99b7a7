#pragma once
// The BPE model shared by byte-level and SentencePiece-style tokenizers
// (internal to io/): a vocabulary and merges ranked by their order in the file.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ptq {

class BpeModel {
 public:
  // vocab: token -> id, ids unique, in [0, id_limit). merges: pairs of tokens in
  // rank order; both halves and their concatenation must be in the vocabulary.
  // `where` names the source file in InputErrors.
  BpeModel(std::unordered_map<std::string, std::int32_t> vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, std::int32_t id_limit,
           const std::string& where);

  const std::unordered_map<std::string, std::int32_t>& vocab() const { return vocab_; }
  // "" for ids no model token uses (e.g. taken by added tokens).
  const std::string& token(std::int32_t id) const {
    return id_to_token_[static_cast<std::size_t>(id)];
  }
  std::int32_t id_limit() const { return static_cast<std::int32_t>(id_to_token_.size()); }
  const std::int32_t* find(std::string_view token) const;

  // Applies the merges to a word given as its initial symbol ids: always the
  // lowest-ranked adjacent pair first, leftmost among equals (as `tokenizers`).
  // Appends the resulting ids to `out`.
  void merge(const std::vector<std::int32_t>& symbols, std::vector<std::int32_t>& out) const;

 private:
  struct Merge {
    std::int32_t rank;
    std::int32_t result;
  };
  static std::uint64_t pair_key(std::int32_t left, std::int32_t right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) |
           static_cast<std::uint32_t>(right);
  }
  const Merge* find_merge(std::int32_t left, std::int32_t right) const;

  std::unordered_map<std::string, std::int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::uint64_t, Merge> merges_;
};

}  // namespace ptq
