#include "common/model_flags.h"

#include <sstream>

#include <fmt/format.h>

namespace rw::tools {

void ModelFlags::add_to(CLI::App& app) {
  reformer::ReformerConfig& c = base;
  const std::string group = "Model";
  app.add_option("--layers", c.n_layers, "reversible blocks")->group(group)->capture_default_str();
  app.add_option("--d-model", c.d_model, "model width")->group(group)->capture_default_str();
  app.add_option("--d-ff", c.d_ff, "feed-forward width")->group(group)->capture_default_str();
  app.add_option("--heads", c.n_heads, "attention heads")->group(group)->capture_default_str();
  app.add_option("--d-head", c.d_head, "width per head (0: d-model / heads)")
      ->group(group)
      ->capture_default_str();
  app.add_option("--attention", attention,
                 "attention kind: lsh, full or local; or one per layer, comma-separated")
      ->group(group)
      ->capture_default_str();
  app.add_flag("--shared-qk,!--no-shared-qk", c.shared_qk,
               "shared query/key projection for full and local attention (LSH always shares)")
      ->group(group);
  app.add_flag("--causal,!--no-causal", c.causal, "causal (language-model) attention")
      ->group(group);
  app.add_option("--chunk", c.chunk_len, "chunk length of LSH and local attention")
      ->group(group)
      ->capture_default_str();
  app.add_option("--chunks-before", c.chunks_before, "earlier chunks each chunk attends to")
      ->group(group)
      ->capture_default_str();
  app.add_option("--chunks-after", c.chunks_after, "later chunks each chunk attends to")
      ->group(group)
      ->capture_default_str();
  app.add_option("--hashes", c.n_hashes, "LSH hash rounds")->group(group)->capture_default_str();
  app.add_option("--buckets", c.n_buckets, "LSH buckets per round (0: about 2 L / chunk)")
      ->group(group)
      ->capture_default_str();
  app.add_flag("--count-duplicates", c.count_duplicates,
               "LSH: correct for keys attended several times across rounds")
      ->group(group);
  app.add_flag("--reversible,!--no-reversible", c.reversible,
               "reversible residual layers (off: the same two streams, kept for backward)")
      ->group(group);
  app.add_flag("--standard-residual", c.standard_residual,
               "the Transformer's one-stream residual x + F(x), x + G(x) (implies --no-reversible)")
      ->group(group);
  app.add_option("--ff-chunk", c.ff_chunk, "positions per feed-forward chunk (0: unchunked)")
      ->group(group)
      ->capture_default_str();
  app.add_option("--activation", activation, "feed-forward activation")
      ->group(group)
      ->check(CLI::IsMember({"relu", "gelu", "gelu_tanh", "silu", "swiglu"}))
      ->capture_default_str();
  app.add_option("--dropout", c.dropout, "dropout on embeddings and block outputs")
      ->group(group)
      ->capture_default_str();
  app.add_option("--attention-dropout", c.attention_dropout, "dropout on attention weights")
      ->group(group)
      ->capture_default_str();
  app.add_option("--ff-dropout", c.ff_dropout, "dropout on feed-forward hidden units")
      ->group(group)
      ->capture_default_str();
  app.add_option("--positions", positions, "position embedding")
      ->group(group)
      ->check(CLI::IsMember({"axial", "sinusoidal", "learned", "none"}))
      ->capture_default_str();
  app.add_option("--axial-shape", axial_shape,
                 "axial position grid, e.g. 32,64 (default: two factors of max-len)")
      ->group(group)
      ->delimiter(',');
  app.add_option("--max-len", max_len, "longest sequence the positions cover (0: the length)")
      ->group(group)
      ->capture_default_str();
  app.add_flag("--tie-embeddings", c.tie_embeddings, "tie the output projection to the embedding")
      ->group(group);
  app.add_option("--loss-chunk", c.loss_chunk, "positions per chunk of the chunked loss")
      ->group(group)
      ->capture_default_str();
}

reformer::ReformerConfig ModelFlags::config(int64_t vocab_size, int64_t length) const {
  reformer::ReformerConfig c = base;
  c.vocab_size = vocab_size;
  c.attention.clear();
  std::stringstream kinds(attention);
  for (std::string kind; std::getline(kinds, kind, ',');) {
    c.attention.push_back(reformer::parse_attention_kind(kind));
  }
  RW_CHECK(!c.attention.empty(), "--attention: give at least one kind (lsh, full or local)");
  c.ff_activation = reformer::parse_activation(activation);
  c.positions = reformer::parse_position_kind(positions);
  c.axial_shape = axial_shape;
  c.max_len = max_len > 0 ? max_len : length;
  if (c.standard_residual) c.reversible = false;
  c.validate();
  return c;
}

}  // namespace rw::tools
