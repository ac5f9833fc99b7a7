#include "pipeline/output/quantized_model.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "io/error.hpp"
#include "pipeline/formats/weight_record.hpp"

namespace ptq {

std::string linear_group_path(const LinearKey& k) {
  return "layers/" + std::to_string(k.layer) + "/" +
         (k.expert < 0 ? "" : "experts/" + std::to_string(k.expert) + "/") +
         std::string(linear_role_name(k.role));
}

namespace {

constexpr std::string_view kAllTokens = "all_tokens", kRouted = "routed";

}  // namespace

std::string_view expert_hessian_name(ExpertHessian h) {
  return h == ExpertHessian::all_tokens ? kAllTokens : kRouted;
}

namespace {

LinearKey key_of(const LinearReport& r) { return {r.layer, r.role, r.expert}; }

}  // namespace

void write_quantized_linear(H5Writer& out, const QuantizedLinear& q, Timing timing) {
  write_weight(out, linear_group_path(q.key()), q.weight);
  write_linear_report(out, q.report, timing);
}

void write_linear_report(H5Writer& out, const LinearReport& r, Timing timing) {
  const std::string p = linear_group_path(key_of(r));
  out.set_attribute(p, "weight_mse", r.weight_mse);
  out.set_attribute(p, "gptq_loss", r.gptq_loss);
  out.set_attribute(p, "damping", r.damping);
  out.set_attribute(p, "damping_retries", std::int64_t{r.damping_retries});
  out.set_attribute(p, "cholesky_failed", std::int64_t{r.cholesky_failed});
  if (r.expert >= 0) {
    out.set_attribute(p, "routed_tokens", r.routed_tokens);
    out.set_attribute(p, "expert_hessian", std::string(expert_hessian_name(r.expert_hessian)));
  }
  if (timing == Timing::record) out.set_attribute(p, "seconds", r.seconds);
}

LinearReport read_linear_report(const H5Reader& in, const LinearKey& k) {
  const std::string p = linear_group_path(k);
  LinearReport r;
  r.layer = k.layer;
  r.role = k.role;
  r.expert = k.expert;
  r.weight_mse = in.float_attribute(p, "weight_mse");
  r.gptq_loss = in.float_attribute(p, "gptq_loss");
  r.damping = in.float_attribute(p, "damping");
  r.damping_retries = static_cast<int>(in.int_attribute(p, "damping_retries"));
  r.cholesky_failed = in.int_attribute(p, "cholesky_failed") != 0;
  if (k.expert >= 0) {
    r.routed_tokens = in.int_attribute(p, "routed_tokens");
    r.expert_hessian = in.string_attribute(p, "expert_hessian") == kAllTokens
                           ? ExpertHessian::all_tokens
                           : ExpertHessian::routed;
  }
  if (in.has_attribute(p, "seconds")) r.seconds = in.float_attribute(p, "seconds");
  return r;
}

QuantizedLinears::QuantizedLinears(std::vector<QuantizedLinear> held) {
  for (auto& q : held) add(std::move(q));
}

namespace {

// The weight error is non-finite exactly when a quantized value (a scale, a
// dequantized weight) is: the Linear is refused before any output holds it.
void require_finite(const LinearReport& r) {
  if (!std::isfinite(r.weight_mse) || !std::isfinite(r.gptq_loss))
    throw input_error(linear_key_text(key_of(r)), "a finite quantization error",
                      "NaN or infinity (non-finite scales or weights)");
}

}  // namespace

void QuantizedLinears::add(QuantizedLinear q) {
  q.report.layer = q.layer;
  q.report.role = q.role;
  q.report.expert = q.expert;
  require_finite(q.report);
  LinearReport report = q.report;
  entries_.push_back({report, std::make_shared<const QuantizedLinear>(std::move(q)), {}});
}

void QuantizedLinears::add_stored(const std::filesystem::path& file, const LinearReport& report) {
  require_finite(report);
  entries_.push_back({report, nullptr, file});
}

std::shared_ptr<const QuantizedLinear> QuantizedLinears::get(std::size_t i) const {
  const Entry& e = entries_.at(i);
  if (e.held) return e.held;
  return std::make_shared<const QuantizedLinear>(
      read_quantized_linear(H5Reader(e.file), key_of(e.report)));
}

void QuantizedLinears::for_each(const std::function<void(const QuantizedLinear&)>& f) const {
  for (std::size_t i = 0; i < entries_.size(); ++i) f(*get(i));
}

std::map<std::string, std::vector<std::size_t>> QuantizedLinears::by_weight_name(
    const ModelConfig& config) const {
  std::map<std::string, std::vector<std::pair<std::int64_t, std::size_t>>> rows;
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const LinearReport& r = entries_[i].report;
    const std::int64_t first_row = r.expert < 0 ? linear_storage(config, r.role).first_row : 0;
    rows[linear_weight_module(config, key_of(r)) + ".weight"].emplace_back(first_row, i);
  }
  std::map<std::string, std::vector<std::size_t>> index;
  for (auto& [name, parts] : rows) {
    std::sort(parts.begin(), parts.end());
    for (const auto& part : parts) index[name].push_back(part.second);
  }
  return index;
}

std::shared_ptr<const QuantizedLinear> QuantizedLinears::get(std::span<const std::size_t> indices,
                                                             const std::string& where) const {
  PTQ_ASSERT(!indices.empty());
  if (indices.size() == 1) return get(indices.front());
  std::vector<QuantizedWeight> parts;
  for (std::size_t i : indices) parts.push_back(get(i)->weight);
  const Entry& first = entries_.at(indices.front());
  return std::make_shared<const QuantizedLinear>(
      QuantizedLinear{first.report.layer, first.report.role, stack_rows(parts, where), first.report,
                      first.report.expert});
}

std::vector<QuantizedLinear> QuantizedLinears::load_all() const {
  std::vector<QuantizedLinear> out;
  for_each([&](const QuantizedLinear& q) { out.push_back(q); });
  return out;
}

QuantizedLinear read_quantized_linear(const H5Reader& in, const LinearKey& k) {
  return {k.layer, k.role, read_weight(in, linear_group_path(k)), read_linear_report(in, k),
          k.expert};
}

}  // namespace ptq
