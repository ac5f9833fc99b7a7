#include "pipeline/eval/llamacpp_base.hpp"

#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "calibrate/logprobs.hpp"
#include "io/error.hpp"

namespace ptq {
namespace {

constexpr char kMagic[8] = {'_', 'l', 'o', 'g', 'i', 't', 's', '_'};
constexpr std::uint64_t kHeaderBytes = sizeof(kMagic) + 3 * sizeof(std::int32_t);
// Bounds that no real file reaches, so that a corrupted count is refused
// before it sizes an allocation.
constexpr std::int32_t kMaxCtx = 1 << 20, kMaxVocab = 1 << 24, kMaxChunks = 1 << 20;
// llama.cpp's KL skips base log-probabilities at or below this (perplexity.cpp).
constexpr float kBaseLogProbFloor = -16.0f;

std::uint64_t row_stride(int n_vocab) {
  return 2 * ((static_cast<std::uint64_t>(n_vocab) + 1) / 2) + 4;
}

std::int32_t read_i32(std::ifstream& in) {
  std::int32_t v = 0;
  in.read(reinterpret_cast<char*>(&v), sizeof(v));
  return v;
}

void check_count(const std::filesystem::path& path, const char* name, std::int32_t value,
                 std::int32_t lo, std::int32_t hi) {
  if (value < lo || value > hi) {
    throw input_error(path.string() + ": " + name, std::to_string(lo) + " .. " + std::to_string(hi),
                      std::to_string(value));
  }
}

// Per-position sums of one comparison, added in position order.
struct Totals {
  double kl = 0.0, nll = 0.0, base_nll = 0.0;
  std::int64_t agree = 0, positions = 0;
};

struct PositionScore {
  double kl = 0.0, nll = 0.0, base_nll = 0.0;
  bool agree = false;
};

// One position as llama.cpp's kl_divergence scores it: `logits` ptq's row,
// `base` the decoded base row, `next` the token predicted.
PositionScore score_position(std::span<const float> logits, std::span<const float> base,
                             std::int32_t next) {
  const float peak = *std::max_element(logits.begin(), logits.end());
  double sum_exp = 0.0;
  for (float x : logits) sum_exp += std::exp(static_cast<double>(x - peak));
  const double log_norm = peak + std::log(sum_exp);  // log q(v) = logits[v] - log_norm
  PositionScore s;
  for (std::size_t v = 0; v < base.size(); ++v) {
    if (base[v] <= kBaseLogProbFloor) continue;
    s.kl += std::exp(static_cast<double>(base[v])) * (base[v] - (logits[v] - log_norm));
  }
  s.nll = log_norm - logits[next];
  s.base_nll = -base[next];
  s.agree = argmax(logits) == argmax(base);
  return s;
}

void score_chunk(const MatrixRM& logits, const MatrixRM& base, std::span<const std::int32_t> next,
                 Totals& totals) {
  const auto positions = static_cast<int>(logits.rows());
  std::vector<PositionScore> scores(positions);
  const auto row = [](const MatrixRM& m, int r) {
    return std::span<const float>(m.row(r).data(), static_cast<std::size_t>(m.cols()));
  };
  tbb::parallel_for(0, positions, [&](int p) {
    scores[p] = score_position(row(logits, p), row(base, p), next[p]);
  });
  for (const PositionScore& s : scores) {
    totals.kl += s.kl;
    totals.nll += s.nll;
    totals.base_nll += s.base_nll;
    totals.agree += s.agree;
  }
  totals.positions += positions;
}

}  // namespace

LlamacppBase LlamacppBase::open(const std::filesystem::path& path) {
  LlamacppBase base;
  base.path_ = path;
  base.in_.open(path, std::ios::binary);
  if (!base.in_) throw input_error(path.string(), "a readable llama-perplexity base file", "none");
  char magic[sizeof(kMagic)] = {};
  base.in_.read(magic, sizeof(magic));
  if (!base.in_ || std::memcmp(magic, kMagic, sizeof(kMagic)) != 0) {
    throw input_error(path.string(),
                      "a llama-perplexity --kl-divergence-base file (starting with \"_logits_\")",
                      "other bytes");
  }
  base.n_ctx_ = read_i32(base.in_);
  base.n_vocab_ = read_i32(base.in_);
  base.n_chunk_ = read_i32(base.in_);
  if (!base.in_) throw input_error(path.string(), "a 20-byte header", "a shorter file");
  check_count(path, "n_ctx", base.n_ctx_, 3, kMaxCtx);
  check_count(path, "n_vocab", base.n_vocab_, 1, kMaxVocab);
  check_count(path, "n_chunk", base.n_chunk_, 1, kMaxChunks);
  const auto tokens = static_cast<std::uint64_t>(base.n_ctx_) * base.n_chunk_;
  base.rows_offset_ = kHeaderBytes + tokens * sizeof(std::int32_t);
  const std::uint64_t rows = static_cast<std::uint64_t>(base.n_chunk_) * base.scored_positions();
  const std::uint64_t expected = base.rows_offset_ + rows * row_stride(base.n_vocab_) * 2;
  const std::uint64_t actual = std::filesystem::file_size(path);
  if (actual != expected) {
    throw input_error(path.string(),
                      std::to_string(expected) + " bytes for n_ctx " + std::to_string(base.n_ctx_) +
                          ", n_vocab " + std::to_string(base.n_vocab_) + ", n_chunk " +
                          std::to_string(base.n_chunk_),
                      std::to_string(actual) + " bytes (truncated, or not a base file)");
  }
  base.tokens_.resize(tokens);
  base.in_.read(reinterpret_cast<char*>(base.tokens_.data()),
                static_cast<std::streamsize>(tokens * sizeof(std::int32_t)));
  const auto bad = std::find_if(base.tokens_.begin(), base.tokens_.end(),
                                [&](std::int32_t t) { return t < 0 || t >= base.n_vocab_; });
  if (bad != base.tokens_.end()) {
    throw input_error(path.string() + ": token " + std::to_string(bad - base.tokens_.begin()),
                      "an id below n_vocab " + std::to_string(base.n_vocab_), std::to_string(*bad));
  }
  return base;
}

MatrixRM LlamacppBase::read_log_probs(int chunk) {
  PTQ_ASSERT(chunk >= 0 && chunk < n_chunk_);
  const std::uint64_t stride = row_stride(n_vocab_);
  std::vector<std::uint16_t> rows(stride * scored_positions());
  in_.seekg(static_cast<std::streamoff>(rows_offset_ + chunk * rows.size() * 2));
  in_.read(reinterpret_cast<char*>(rows.data()), static_cast<std::streamsize>(rows.size() * 2));
  if (!in_)
    throw input_error(path_.string(), "readable rows of chunk " + std::to_string(chunk),
                      "a read error");
  MatrixRM out(scored_positions(), n_vocab_);
  for (int r = 0; r < scored_positions(); ++r) {
    const std::uint16_t* row = rows.data() + r * stride;
    float scale = 0.0f, min_log_prob = 0.0f;
    std::memcpy(&scale, row, sizeof(float));
    std::memcpy(&min_log_prob, row + 2, sizeof(float));
    if (!std::isfinite(scale) || scale < 0.0f || !std::isfinite(min_log_prob)) {
      throw input_error(
          path_.string() + ": chunk " + std::to_string(chunk) + " row " + std::to_string(r),
          "a finite scale >= 0 and minimum",
          std::to_string(scale) + " and " + std::to_string(min_log_prob));
    }
    // As llama.cpp decodes it, in float.
    for (int v = 0; v < n_vocab_; ++v) out(r, v) = scale * row[4 + v] + min_log_prob;
  }
  return out;
}

LlamacppEvalResult evaluate_against_llamacpp(const Model& model, LlamacppBase& base,
                                             const LlamacppEvalConfig& config,
                                             const EvalProgress& progress) {
  if (model.config().vocab_size != base.n_vocab()) {
    throw input_error(base.path().string() + ": n_vocab",
                      std::to_string(model.config().vocab_size) + " (the model's vocab_size)",
                      std::to_string(base.n_vocab()));
  }
  if (config.batch_chunks < 1)
    throw input_error("batch_chunks", ">= 1", std::to_string(config.batch_chunks));
  const int bos = model.config().bos_token_id;
  LlamacppEvalResult result;
  result.bos_replaced = bos >= 0 && base.tokens()[0] == bos;
  result.chunks =
      config.max_chunks > 0 ? std::min(config.max_chunks, base.n_chunk()) : base.n_chunk();
  const auto n_ctx = static_cast<std::size_t>(base.n_ctx());
  BlockSource blocks(model, config.resident_budget_bytes);
  Totals totals;
  for (int first = 0; first < result.chunks; first += config.batch_chunks) {
    const int count = std::min(config.batch_chunks, result.chunks - first);
    const auto chunks = base.tokens().subspan(first * n_ctx, count * n_ctx);
    std::vector<std::int32_t> ids(chunks.begin(), chunks.end());
    for (int c = 0; result.bos_replaced && c < count; ++c) ids[c * n_ctx] = bos;
    const MatrixRM hidden =
        final_hidden(model, blocks, ids, base.n_ctx(), transforming(config.input_transform));
    for (int c = 0; c < count; ++c) {
      const Eigen::Index row0 = static_cast<Eigen::Index>(c * n_ctx) + base.first_scored();
      const MatrixRM logits = model.head(hidden, row0, base.scored_positions());
      // The tokens predicted: positions first_scored()+1 .. n_ctx-1 of the file's chunk.
      const auto next =
          chunks.subspan(c * n_ctx + base.first_scored() + 1, base.scored_positions());
      score_chunk(logits, base.read_log_probs(first + c), next, totals);
    }
    if (progress) progress(first + count, result.chunks);
  }
  const auto n = static_cast<double>(totals.positions);
  result.positions = totals.positions;
  result.kl = totals.kl / n;
  result.top1 = static_cast<double>(totals.agree) / n;
  result.ppl = std::exp(totals.nll / n);
  result.base_ppl = std::exp(totals.base_nll / n);
  return result;
}

nlohmann::json llamacpp_eval_json(const LlamacppEvalResult& r, const LlamacppBase& base) {
  return {{"file", base.path().string()},
          {"n_ctx", base.n_ctx()},
          {"chunks", r.chunks},
          {"positions", r.positions},
          {"bos", r.bos_replaced},
          {"kl", r.kl},
          {"top1", r.top1},
          {"ppl", r.ppl},
          {"base_ppl", r.base_ppl}};
}

std::optional<std::size_t> first_token_difference(const LlamacppBase& base,
                                                  std::span<const std::int32_t> ids,
                                                  std::optional<std::int32_t> bos) {
  std::vector<std::int32_t> expected;
  if (bos) expected.push_back(*bos);
  expected.insert(expected.end(), ids.begin(), ids.end());
  const auto tokens = base.tokens();
  const auto theirs =
      std::mismatch(expected.begin(), expected.end(), tokens.begin(), tokens.end()).second;
  if (theirs == tokens.end()) return std::nullopt;
  return static_cast<std::size_t>(theirs - tokens.begin());
}

}  // namespace ptq
