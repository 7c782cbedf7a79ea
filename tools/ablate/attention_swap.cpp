#include "ablate/attention_swap.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"
#include "core/ops.h"
#include "nn/attention.h"

namespace rw::ablate {
namespace {

using reformer::AttentionKind;

const Tensor& entry(const nn::StateDict& state, const std::string& name) {
  auto it = state.find(name);
  RW_CHECK(it != state.end(), "with_attention: the trained model has no parameter '{}'", name);
  return it->second;
}

// One layer's attention parameters (prefix "layers.<i>.attention.") from kind `from` to `to`.
void map_layer(const nn::StateDict& source, nn::StateDict& mapped, const std::string& prefix,
               AttentionKind from, AttentionKind to, bool from_shared_qk, int64_t layer) {
  auto get = [&](const char* name) { return entry(source, prefix + name); };
  auto put = [&](const char* name, const Tensor& t) { mapped[prefix + name] = t; };
  const bool from_full = from == AttentionKind::full, to_full = to == AttentionKind::full;
  RW_CHECK((from_full || from == AttentionKind::lsh) && (to_full || to == AttentionKind::lsh),
           "with_attention: layer {}: only full and LSH attention map onto each other, got {} -> "
           "{}",
           layer, reformer::to_string(from), reformer::to_string(to));
  RW_CHECK(!from_full || from_shared_qk,
           "with_attention: layer {}: full attention with separate Q/K has no shared-QK weights "
           "to map (train it with shared_qk)",
           layer);
  for (const char* name : {"w_qk", "w_v", "w_o", "b_o"}) put(name, get(name));
  if (from_full && !to_full) {
    const Tensor b_qk = get("b_qk");
    const double largest = max(abs(b_qk)).item();
    RW_CHECK(largest == 0,
             "with_attention: layer {}: b_qk is not zero (max |b_qk| = {}); LSH attention has no "
             "query/key bias, so train the full-attention model with freeze_query_key_bias",
             layer, largest);
    const Tensor w_o = get("w_o"), b_v = get("b_v");
    // Every output row gets w_o b_v from the value bias (the weights of a row sum to one).
    put("b_o", add(get("b_o"), linear(b_v.reshape({1, b_v.size(0)}), w_o).reshape({w_o.size(0)})));
  } else if (!from_full && to_full) {
    const Tensor w_qk = get("w_qk");
    const Tensor none = zeros({w_qk.size(0)}, {.dtype = w_qk.dtype(), .device = w_qk.device()});
    put("b_qk", none);
    put("b_v", none);
  } else if (from_full) {
    put("b_qk", get("b_qk"));
    put("b_v", get("b_v"));
  }
}

}  // namespace

std::shared_ptr<reformer::ReformerLM> with_attention(const reformer::ReformerLM& trained,
                                                     const reformer::ReformerConfig& target) {
  const reformer::ReformerConfig& from = trained.config();
  RW_CHECK(target.n_layers == from.n_layers,
           "with_attention: the target config has {} layers, the trained model {}", target.n_layers,
           from.n_layers);
  RW_CHECK(
      target.shared_qk || std::all_of(target.attention.begin(), target.attention.end(),
                                      [](AttentionKind k) { return k != AttentionKind::full; }),
      "with_attention: the target's full attention must be shared-QK to take shared-QK weights");
  const nn::StateDict source = trained.state_dict();
  nn::StateDict mapped;
  for (const auto& [name, tensor] : source) {
    if (name.starts_with("layers.") && name.find(".attention.") != std::string::npos) continue;
    mapped[name] = tensor;
  }
  for (int64_t i = 0; i < from.n_layers; ++i) {
    map_layer(source, mapped, fmt::format("layers.{}.attention.", i), from.attention_of(i),
              target.attention_of(i), from.shared_qk, i);
  }
  Generator init(0);  // every value is overwritten
  auto model = std::make_shared<reformer::ReformerLM>(target, init);
  model->load_state_dict(mapped, /*strict=*/true);
  model->to(trained.embedding->weight.device());
  model->eval();
  return model;
}

void freeze_query_key_bias(reformer::ReformerLM& model) {
  for (int64_t i = 0; i < model.config().n_layers; ++i) {
    const reformer::ReformerLayer& layer = model.layer(i);
    if (layer.kind() != AttentionKind::full) continue;
    auto& attention = static_cast<nn::MultiHeadAttention&>(*layer.attention);
    if (attention.b_qk.defined()) attention.b_qk.requires_grad_(false);
  }
}

}  // namespace rw::ablate
