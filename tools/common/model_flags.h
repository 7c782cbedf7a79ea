#pragma once
// The ReformerLM switches as command-line flags, defined once for every tool (rewind-train,
// rewind-ablate) so they read the same everywhere: --layers, --d-model, --attention lsh,full, ...
//
//   rw::tools::ModelFlags flags;
//   flags.add_to(app);             // before parsing
//   CLI11_PARSE(app, argc, argv);
//   ReformerConfig cfg = flags.config(vocab_size, length);   // validated
#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "models/reformer/reformer_config.h"

namespace rw::tools {

struct ModelFlags {
  reformer::ReformerConfig base;  // the defaults the flags start from (and show in --help)
  std::string attention = "lsh";  // one kind, or one per layer, comma-separated
  std::string activation = "gelu";
  std::string positions = "axial";
  std::vector<int64_t> axial_shape;
  int64_t max_len = 0;  // 0: the training length

  void add_to(CLI::App& app);
  // The config the flags describe, for this vocabulary and training length; rw::Error naming the
  // flag's field when a value is invalid.
  reformer::ReformerConfig config(int64_t vocab_size, int64_t length) const;
};

}  // namespace rw::tools
