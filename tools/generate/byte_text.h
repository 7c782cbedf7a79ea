#pragma once
// Bytes in and out of a byte-level language model: a prompt's bytes as tokens (checked against
// the model's vocabulary and length limit), and generated tokens as bytes for stdout, raw or
// escaped for a terminal.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "models/reformer/reformer_config.h"

namespace rw::tools {

// What an empty prompt starts from: a newline, the byte that begins a line of text, so the model
// samples as if at the start of a fresh line. It is not part of the output.
inline constexpr unsigned char kStartByte = '\n';

struct PromptTokens {
  std::vector<int64_t> tokens;  // what the model is fed (never empty)
  int64_t printed_from = 0;     // tokens before this index are not written out (the start byte)
};

// The tokens of `prompt` (its bytes; kStartByte alone when empty) for a model with `config`,
// asked for `length` new tokens. rw::Error naming `source` (the flag) when a byte lies outside
// the vocabulary or when prompt plus length exceed max_len for axial or learned positions.
PromptTokens prompt_tokens(std::string_view prompt, const std::string& source,
                           const reformer::ReformerConfig& config, int64_t length);

// `bytes` with everything but printable ASCII, newline and tab written as \xNN, and a backslash
// as \\ (so the escaped text reads back unambiguously).
std::string escape_bytes(std::string_view bytes);

}  // namespace rw::tools
