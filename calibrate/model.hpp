#pragma once
// A Llama-family checkpoint opened for a block-by-block float32 forward:
// embed -> block 0 -> ... -> block n-1 -> final norm -> head. The checkpoint
// stays memory-mapped; a block's weights are converted to float32 only when
// load_block() is called. The final norm is converted at open(); the head (the
// embedding when tied) once, when logits are first formed.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>

#include "calibrate/block.hpp"
#include "io/model_config.hpp"
#include "io/safetensors.hpp"

namespace ptq {

class Model {
 public:
  // `path`: a folder with config.json and safetensors weights.
  static Model open(const std::filesystem::path& path);
  // A model from weights already in a Checkpoint (e.g. decoded from GGUF);
  // `path` names it in messages.
  static Model from_checkpoint(const std::filesystem::path& path, ModelConfig config,
                               Checkpoint checkpoint);

  const ModelConfig& config() const { return config_; }
  const std::filesystem::path& path() const { return path_; }
  int num_layers() const { return config_.num_layers; }

  // Block `layer`'s weights in float32; InputError on missing/mis-shaped tensors.
  BlockWeights load_block(int layer) const;
  // Rows of the embedding for `ids`: [ids.size(), hidden]; InputError if an id >= vocab.
  MatrixRM embed(std::span<const std::int32_t> ids) const;
  // Final RMSNorm of hidden states, in place.
  void final_norm(MatrixRM& x) const;
  // logits = x head^T for rows [begin, begin+count) of normalized x: [count, vocab]
  // (soft-capped for Gemma 2).
  MatrixRM head(const MatrixRM& x, Eigen::Index begin, Eigen::Index count) const;

 private:
  Model(std::filesystem::path path, ModelConfig config, Checkpoint checkpoint);

  std::filesystem::path path_;
  ModelConfig config_;
  Checkpoint checkpoint_;
  const TensorView* embedding_ = nullptr;  // [vocab, hidden], in checkpoint_
  VectorF final_norm_;                     // [hidden]
  // [vocab, hidden] in float32, converted on first use: quantizing never forms
  // logits (but for a GGUF mix's probes), and at 7B the head is 0.5 GB.
  struct Head {
    const TensorView* tensor = nullptr;  // in checkpoint_
    std::once_flag converted;
    MatrixRM weights;
  };
  std::shared_ptr<Head> head_;
  const MatrixRM& head_weights() const;
  // A norm's weights as the forward multiplies by them (Gemma's 1 + w).
  VectorF norm_vector(const std::string& name, std::int64_t size) const;
};

// Where eval gets block weights: all blocks stay resident when their float32
// size fits `budget_bytes` (loaded once, reused for every batch of windows),
// else one block at a time is loaded on demand and replaced by the next.
class BlockSource {
 public:
  BlockSource(const Model& model, std::size_t budget_bytes);
  // Whether a model of `config` stays resident under `budget_bytes`.
  static bool keeps_resident(const ModelConfig& config, std::size_t budget_bytes);
  const BlockWeights& block(int layer);
  bool all_resident() const { return resident_; }

 private:
  const Model& model_;
  bool resident_ = false;
  std::vector<BlockWeights> blocks_;  // all layers, or one slot holding `current_`
  int current_ = -1;
};

// The evaluators' default budget for BlockSource. Converting a streamed block
// costs far less than running a batch of windows through it once blocks are
// this large, so a model past it is streamed and its peak memory is that of one
// block whatever its depth; small models stay resident and convert once.
inline constexpr std::size_t kResidentBlocksBudget = std::size_t{1} << 30;

// What a ptq process allocates besides its model and data (binary, libraries,
// thread stacks, allocator slack), for the --dry-run estimates: RTN on tiny
// peaks at ~40 MiB with a 8 MiB checkpoint.
inline constexpr double kProcessOverheadBytes = 32.0 * 1048576.0;

// Final hidden states (after the final norm) of a batch of sequences:
// `ids` holds ids.size()/seq_len sequences back to back; returns
// [ids.size(), hidden]. Runs each block over the whole batch.
MatrixRM final_hidden(const Model& model, BlockSource& blocks, std::span<const std::int32_t> ids,
                      int seq_len, const ForwardOptions& options = {});

// Logits [ids.size(), vocab] of one or more sequences of length seq_len,
// streaming the blocks from the checkpoint one at a time.
MatrixRM logits(const Model& model, std::span<const std::int32_t> ids, int seq_len,
                const ForwardOptions& options = {});

}  // namespace ptq
