#include "io/bpe.hpp"

#include <queue>

#include "io/error.hpp"

namespace ptq {

BpeModel::BpeModel(std::unordered_map<std::string, std::int32_t> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges,
                   std::int32_t id_limit, const std::string& where)
    : vocab_(std::move(vocab)), id_to_token_(static_cast<std::size_t>(id_limit)) {
  for (const auto& [token, id] : vocab_) {
    if (id < 0 || id >= id_limit) {
      throw input_error(where + ": vocab token '" + token + "'",
                        "an id in [0, " + std::to_string(id_limit) + ")",
                        "id " + std::to_string(id));
    }
    auto& slot = id_to_token_[static_cast<std::size_t>(id)];
    if (!slot.empty()) {
      throw input_error(where + ": vocab id " + std::to_string(id), "one token per id",
                        "both '" + slot + "' and '" + token + "'");
    }
    slot = token;
  }
  merges_.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const auto name = where + ": merge #" + std::to_string(rank) + " '" + left + " " + right + "'";
    const auto* l = find(left);
    const auto* r = find(right);
    const auto* m = find(left + right);
    if (!l || !r || !m) {
      const auto& missing = !l ? left : !r ? right : left + right;
      throw input_error(name, "tokens that are in the vocab", "unknown token '" + missing + "'");
    }
    // A later duplicate of a merge never applies: the first rank wins.
    merges_.try_emplace(pair_key(*l, *r), Merge{static_cast<std::int32_t>(rank), *m});
  }
}

const std::int32_t* BpeModel::find(std::string_view token) const {
  const auto it = vocab_.find(std::string(token));
  return it == vocab_.end() ? nullptr : &it->second;
}

const BpeModel::Merge* BpeModel::find_merge(std::int32_t left, std::int32_t right) const {
  const auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::merge(const std::vector<std::int32_t>& symbols,
                     std::vector<std::int32_t>& out) const {
  // Symbols form a linked list. Candidate merges sit in a min-heap by (rank,
  // position) and are re-checked when popped, since an earlier merge may have
  // consumed one of their halves.
  constexpr std::size_t none = static_cast<std::size_t>(-1);
  struct Symbol {
    std::int32_t id;
    std::size_t prev;
    std::size_t next;
  };
  struct Candidate {
    std::int32_t rank;
    std::size_t pos;
    std::int32_t left;
    std::int32_t right;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  const std::size_t n = symbols.size();
  std::vector<Symbol> list(n);
  for (std::size_t i = 0; i < n; ++i) list[i] = {symbols[i], i - 1, i + 1 < n ? i + 1 : none};
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
  auto push = [&](std::size_t pos) {
    const std::size_t next = list[pos].next;
    if (next == none) return;
    if (const auto* m = find_merge(list[pos].id, list[next].id)) {
      heap.push({m->rank, pos, list[pos].id, list[next].id});
    }
  };
  for (std::size_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const auto c = heap.top();
    heap.pop();
    auto& left = list[c.pos];
    if (left.id != c.left || left.next == none || list[left.next].id != c.right) continue;
    auto& right = list[left.next];
    left.id = find_merge(c.left, c.right)->result;
    right.id = -1;
    left.next = right.next;
    if (right.next != none) list[right.next].prev = c.pos;
    if (left.prev != none) push(left.prev);
    push(c.pos);
  }
  for (std::size_t i = n > 0 ? 0 : none; i != none; i = list[i].next) out.push_back(list[i].id);
}

}  // namespace ptq
