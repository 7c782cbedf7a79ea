#pragma once
// Helpers the ReformerLM tests share: random token ids, and gradcheck of a model's loss with
// respect to a few parameters spread through it.
#include <cstdint>
#include <vector>

#include "autograd/gradcheck.h"
#include "core/generator_scope.h"
#include "core/ops.h"
#include "models/reformer/reformer_lm.h"

namespace rw::test {

// i64 [batch, length] token ids, uniform over [0, vocab), from `seed`.
inline Tensor random_tokens(int64_t batch, int64_t length, int64_t vocab, uint64_t seed) {
  Generator gen(seed);
  Tensor u = rand({batch, length}, gen, {.dtype = DType::f64});
  // u < 1, so the truncating conversion stays below vocab.
  return mul(u, static_cast<double>(vocab)).to(DType::i64);
}

// gradcheck (float64 model) of model.loss(tokens, targets) with respect to the token embedding,
// layer 0's attention norm, layer 1's first feed-forward weight and the output weight (the model
// needs 2 layers and an untied output), under the same LSH rotations at every evaluation.
inline GradcheckResult gradcheck_reformer_lm(reformer::ReformerLM& model, const Tensor& tokens,
                                             const Tensor& targets) {
  auto& l0 = const_cast<reformer::ReformerLayer&>(model.layer(0));
  auto& l1 = const_cast<reformer::ReformerLayer&>(model.layer(1));
  std::vector<Tensor*> slots{&model.embedding->weight, &l0.attention_norm->weight,
                             &l1.ff->w1->weight, &model.output->weight};
  std::vector<Tensor> originals, inputs;
  for (Tensor* s : slots) {
    originals.push_back(*s);
    inputs.push_back(s->detach().requires_grad_());
  }
  // The slots keep gradcheck's tensors after each call: the reversible backward recomputes the
  // blocks with the modules' parameters as they are when backward runs.
  GradcheckResult r = gradcheck(
      [&](const std::vector<Tensor>& in) {
        for (std::size_t i = 0; i < slots.size(); ++i) *slots[i] = in[i];
        Generator rotations(5);
        GeneratorScope scope(rotations);
        return model.loss(tokens, targets);
      },
      inputs, {.full_jacobian_max = 0, .num_projections = 4});
  for (std::size_t i = 0; i < slots.size(); ++i) *slots[i] = originals[i];
  return r;
}

}  // namespace rw::test
