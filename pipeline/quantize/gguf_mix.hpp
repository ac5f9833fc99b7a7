#pragma once
// `--gguf-type auto`: every weight tensor's GGUF type (the block Linears, the
// token embedding and the head) chosen among ggml types to minimise the
// predicted KL under the file's bytes (--max-bytes: the header and float
// tensors counted from the file's own layout, each tensor padded as the writer
// pads it) or its bits per weight over all tensors (--bpw), by
// pipeline/quantize/sensitivity.hpp. A candidate is rounded as the final run
// rounds: GPTQ inside the ggml grid for a block Linear (method gptq), else
// ggml's own quantizer with the imatrix when given.
#include <string>

#include "calibrate/model.hpp"
#include "pipeline/formats/gguf_types.hpp"
#include "pipeline/quantize/quantize.hpp"
#include "pipeline/recipe/calib_data.hpp"
#include "pipeline/recipe/recipe.hpp"

namespace ptq {

struct GgufMix {
  GgufTypeMap types;
  std::string json;  // mix.json: the budget, each tensor's costs and type
};

// recipe.chooses_mix() with format gguf: the types for `model` (its folder
// holds the tokenizer the file's metadata is made from), from costs measured on
// `calibration` or read from recipe.mix.costs (then `calibration` may be null).
// InputError naming the budget when every tensor at its smallest candidate
// still exceeds it (before measuring), or naming a tensor no candidate fits.
GgufMix choose_gguf_mix(const Model& model, const Recipe& recipe,
                        const CalibrationSet* calibration, int batch_windows,
                        const QuantizeProgress& progress);

}  // namespace ptq
