#include "models/reformer/reformer_config.h"

#include <charconv>
#include <cmath>
#include <functional>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"

namespace rw::reformer {

std::string to_string(AttentionKind kind) {
  switch (kind) {
    case AttentionKind::full:
      return "full";
    case AttentionKind::lsh:
      return "lsh";
    case AttentionKind::local:
      return "local";
  }
  return "unknown";
}

std::string to_string(PositionKind kind) {
  switch (kind) {
    case PositionKind::axial:
      return "axial";
    case PositionKind::sinusoidal:
      return "sinusoidal";
    case PositionKind::learned:
      return "learned";
    case PositionKind::none:
      return "none";
  }
  return "unknown";
}

AttentionKind parse_attention_kind(const std::string& name) {
  for (AttentionKind k : {AttentionKind::full, AttentionKind::lsh, AttentionKind::local}) {
    if (to_string(k) == name) return k;
  }
  throw Error(fmt::format("unknown attention kind '{}' (expected full, lsh or local)", name));
}

PositionKind parse_position_kind(const std::string& name) {
  for (PositionKind k :
       {PositionKind::axial, PositionKind::sinusoidal, PositionKind::learned, PositionKind::none}) {
    if (to_string(k) == name) return k;
  }
  throw Error(fmt::format(
      "unknown position kind '{}' (expected axial, sinusoidal, learned or none)", name));
}

nn::Activation parse_activation(const std::string& name) {
  for (nn::Activation a : {nn::Activation::relu, nn::Activation::gelu, nn::Activation::gelu_tanh,
                           nn::Activation::silu, nn::Activation::swiglu}) {
    if (nn::to_string(a) == name) return a;
  }
  throw Error(fmt::format(
      "unknown activation '{}' (expected relu, gelu, gelu_tanh, silu or swiglu)", name));
}

namespace {

// Two factors a * b >= n with a <= b, both near sqrt(n) (powers of two when n is one).
std::vector<int64_t> default_axial_shape(int64_t n) {
  int64_t a = 1;
  while (a * a < n) a *= 2;
  // a is the smallest power of two with a^2 >= n; the second factor just covers n.
  const int64_t first = std::max<int64_t>(1, a / 2);
  const int64_t second = (n + first - 1) / first;
  return {first, second};
}

}  // namespace

AttentionKind ReformerConfig::attention_of(int64_t layer) const {
  RW_CHECK(layer >= 0 && layer < n_layers, "ReformerConfig: layer {} out of range (n_layers {})",
           layer, n_layers);
  return attention.size() == 1 ? attention[0] : attention[static_cast<std::size_t>(layer)];
}

std::vector<int64_t> ReformerConfig::resolved_axial_shape() const {
  return axial_shape.empty() ? default_axial_shape(max_len) : axial_shape;
}

void ReformerConfig::validate() const {
  auto positive = [](const char* name, int64_t v) {
    RW_CHECK(v > 0, "ReformerConfig: {} must be > 0, got {}", name, v);
  };
  positive("vocab_size", vocab_size);
  positive("d_model", d_model);
  positive("d_ff", d_ff);
  positive("n_layers", n_layers);
  positive("n_heads", n_heads);
  positive("chunk_len", chunk_len);
  positive("n_hashes", n_hashes);
  positive("max_len", max_len);
  positive("loss_chunk", loss_chunk);
  RW_CHECK(d_head >= 0, "ReformerConfig: d_head must be >= 0 (0: d_model / n_heads), got {}",
           d_head);
  RW_CHECK(d_head > 0 || d_model % n_heads == 0,
           "ReformerConfig: n_heads {} must divide d_model {} (or set d_head)", n_heads, d_model);
  RW_CHECK(chunks_before >= 0 && chunks_after >= 0,
           "ReformerConfig: chunks_before and chunks_after must be >= 0, got {} and {}",
           chunks_before, chunks_after);
  RW_CHECK(n_buckets == 0 || n_buckets == 1 || (n_buckets > 0 && n_buckets % 2 == 0),
           "ReformerConfig: n_buckets must be 0 (automatic), 1 or even, got {}", n_buckets);
  RW_CHECK(!(standard_residual && reversible),
           "ReformerConfig: standard_residual needs reversible = false (a one-stream residual "
           "x + F(x) cannot be inverted)");
  RW_CHECK(ff_chunk >= 0, "ReformerConfig: ff_chunk must be >= 0 (0: unchunked), got {}", ff_chunk);
  RW_CHECK(attention.size() == 1 || static_cast<int64_t>(attention.size()) == n_layers,
           "ReformerConfig: attention lists {} kinds; give one for every layer or one per layer "
           "(n_layers {})",
           attention.size(), n_layers);
  for (const auto& [name, p] : {std::pair<const char*, double>{"dropout", dropout},
                                {"attention_dropout", attention_dropout},
                                {"ff_dropout", ff_dropout}}) {
    RW_CHECK(p >= 0 && p < 1, "ReformerConfig: {} must be in [0, 1), got {}", name, p);
  }
  if (positions == PositionKind::axial) {
    const std::vector<int64_t> shape = resolved_axial_shape();
    int64_t product = 1;
    for (int64_t a : shape) {
      RW_CHECK(a > 0, "ReformerConfig: axial_shape entries must be > 0, got {}", shape);
      product *= a;
    }
    RW_CHECK(product >= max_len,
             "ReformerConfig: axial_shape {} covers {} positions, fewer than max_len {}", shape,
             product, max_len);
    RW_CHECK(static_cast<int64_t>(shape.size()) <= d_model,
             "ReformerConfig: axial_shape {} has more axes than d_model {} has dims", shape,
             d_model);
  }
  RW_CHECK(!tie_embeddings || d_model > 0, "ReformerConfig: tie_embeddings needs d_model > 0");
}

namespace {

std::string join(const std::vector<std::string>& parts) {
  return fmt::format("{}", fmt::join(parts, ","));
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(item);
  return out;
}

int64_t parse_int(const std::string& key, const std::string& v) {
  int64_t out = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  RW_CHECK(ec == std::errc() && end == v.data() + v.size() && !v.empty(),
           "ReformerConfig: {} must be an integer, got '{}'", key, v);
  return out;
}

double parse_double(const std::string& key, const std::string& v) {
  double out = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  RW_CHECK(ec == std::errc() && end == v.data() + v.size() && !v.empty() && std::isfinite(out),
           "ReformerConfig: {} must be a number, got '{}'", key, v);
  return out;
}

bool parse_bool(const std::string& key, const std::string& v) {
  RW_CHECK(v == "true" || v == "false", "ReformerConfig: {} must be true or false, got '{}'", key,
           v);
  return v == "true";
}

// One field: how to write it and how to read it back.
struct Field {
  std::function<std::string(const ReformerConfig&)> write;
  std::function<void(ReformerConfig&, const std::string& key, const std::string&)> read;
};

Field int_field(int64_t ReformerConfig::*member) {
  return {[member](const ReformerConfig& c) { return std::to_string(c.*member); },
          [member](ReformerConfig& c, const std::string& k, const std::string& v) {
            c.*member = parse_int(k, v);
          }};
}
Field double_field(double ReformerConfig::*member) {
  return {[member](const ReformerConfig& c) { return fmt::format("{}", c.*member); },
          [member](ReformerConfig& c, const std::string& k, const std::string& v) {
            c.*member = parse_double(k, v);
          }};
}
Field bool_field(bool ReformerConfig::*member) {
  return {[member](const ReformerConfig& c) { return std::string(c.*member ? "true" : "false"); },
          [member](ReformerConfig& c, const std::string& k, const std::string& v) {
            c.*member = parse_bool(k, v);
          }};
}

const std::map<std::string, Field>& fields() {
  static const std::map<std::string, Field> table = {
      {"vocab_size", int_field(&ReformerConfig::vocab_size)},
      {"d_model", int_field(&ReformerConfig::d_model)},
      {"d_ff", int_field(&ReformerConfig::d_ff)},
      {"n_layers", int_field(&ReformerConfig::n_layers)},
      {"n_heads", int_field(&ReformerConfig::n_heads)},
      {"d_head", int_field(&ReformerConfig::d_head)},
      {"attention",
       {[](const ReformerConfig& c) {
          std::vector<std::string> names;
          for (AttentionKind k : c.attention) names.push_back(to_string(k));
          return join(names);
        },
        [](ReformerConfig& c, const std::string& k, const std::string& v) {
          c.attention.clear();
          for (const std::string& name : split(v))
            c.attention.push_back(parse_attention_kind(name));
          RW_CHECK(!c.attention.empty(), "ReformerConfig: {} lists no attention kind", k);
        }}},
      {"shared_qk", bool_field(&ReformerConfig::shared_qk)},
      {"causal", bool_field(&ReformerConfig::causal)},
      {"chunk_len", int_field(&ReformerConfig::chunk_len)},
      {"chunks_before", int_field(&ReformerConfig::chunks_before)},
      {"chunks_after", int_field(&ReformerConfig::chunks_after)},
      {"n_hashes", int_field(&ReformerConfig::n_hashes)},
      {"n_buckets", int_field(&ReformerConfig::n_buckets)},
      {"count_duplicates", bool_field(&ReformerConfig::count_duplicates)},
      {"reversible", bool_field(&ReformerConfig::reversible)},
      {"standard_residual", bool_field(&ReformerConfig::standard_residual)},
      {"ff_chunk", int_field(&ReformerConfig::ff_chunk)},
      {"ff_activation",
       {[](const ReformerConfig& c) { return nn::to_string(c.ff_activation); },
        [](ReformerConfig& c, const std::string&, const std::string& v) {
          c.ff_activation = parse_activation(v);
        }}},
      {"dropout", double_field(&ReformerConfig::dropout)},
      {"attention_dropout", double_field(&ReformerConfig::attention_dropout)},
      {"ff_dropout", double_field(&ReformerConfig::ff_dropout)},
      {"positions",
       {[](const ReformerConfig& c) { return to_string(c.positions); },
        [](ReformerConfig& c, const std::string&, const std::string& v) {
          c.positions = parse_position_kind(v);
        }}},
      {"max_len", int_field(&ReformerConfig::max_len)},
      {"axial_shape",
       {[](const ReformerConfig& c) {
          std::vector<std::string> parts;
          for (int64_t a : c.axial_shape) parts.push_back(std::to_string(a));
          return join(parts);
        },
        [](ReformerConfig& c, const std::string& k, const std::string& v) {
          c.axial_shape.clear();
          for (const std::string& part : split(v)) c.axial_shape.push_back(parse_int(k, part));
        }}},
      {"tie_embeddings", bool_field(&ReformerConfig::tie_embeddings)},
      {"loss_chunk", int_field(&ReformerConfig::loss_chunk)},
  };
  return table;
}

}  // namespace

std::map<std::string, std::string> ReformerConfig::to_map() const {
  std::map<std::string, std::string> out;
  for (const auto& [key, field] : fields()) out[key] = field.write(*this);
  return out;
}

ReformerConfig ReformerConfig::from_map(const std::map<std::string, std::string>& values) {
  ReformerConfig c;
  for (const auto& [key, value] : values) {
    auto it = fields().find(key);
    RW_CHECK(it != fields().end(), "ReformerConfig: unknown key '{}' (value '{}')", key, value);
    it->second.read(c, key, value);
  }
  return c;
}

}  // namespace rw::reformer
