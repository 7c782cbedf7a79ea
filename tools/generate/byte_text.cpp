#include "byte_text.h"

#include <fmt/format.h>

#include "core/error.h"

namespace rw::tools {

PromptTokens prompt_tokens(std::string_view prompt, const std::string& source,
                           const reformer::ReformerConfig& config, int64_t length) {
  PromptTokens out;
  if (prompt.empty()) {
    out.tokens.push_back(kStartByte);
    out.printed_from = 1;
  }
  for (char c : prompt) out.tokens.push_back(static_cast<unsigned char>(c));
  for (std::size_t i = 0; i < out.tokens.size(); ++i) {
    const int64_t t = out.tokens[i];
    RW_CHECK(t < config.vocab_size,
             "{}: byte 0x{:02x} at offset {} is outside the model's vocabulary of {} tokens (its "
             "tokens are the bytes 0x00 to 0x{:02x})",
             prompt.empty() ? source + " (empty: the start byte)" : source, t,
             prompt.empty() ? 0 : i, config.vocab_size, config.vocab_size - 1);
  }
  const auto P = static_cast<int64_t>(out.tokens.size());
  if (config.positions == reformer::PositionKind::axial ||
      config.positions == reformer::PositionKind::learned) {
    RW_CHECK(P + length <= config.max_len,
             "{} ({} token{}{}) plus --length {} is {}, more than the model's max_len {} ({} "
             "positions cover no longer sequences): shorten the prompt or lower --length",
             source, P, P == 1 ? "" : "s", prompt.empty() ? ": the start byte" : "", length,
             P + length, config.max_len, reformer::to_string(config.positions));
  }
  return out;
}

std::string escape_bytes(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    if (b == '\\') {
      out += "\\\\";
    } else if (b == '\n' || b == '\t' || (b >= 0x20 && b < 0x7f)) {
      out += c;
    } else {
      out += fmt::format("\\x{:02x}", b);
    }
  }
  return out;
}

}  // namespace rw::tools
