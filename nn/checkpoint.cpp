#include "nn/checkpoint.h"

#include <charconv>
#include <limits>
#include <string_view>

#include "core/error.h"
#include "nn/safetensors.h"

namespace rw::nn {
namespace {

constexpr std::string_view kModelPrefix = "model.";
constexpr std::string_view kOptimizerPrefix = "optim.";
constexpr std::string_view kConfigPrefix = "config.";

[[noreturn]] void fail(const std::filesystem::path& path, std::string_view problem) {
  throw Error(fmt::format("checkpoint '{}': {}", path.string(), problem));
}

// A decimal integer filling the whole string (no sign, spaces or suffix), at most `max`.
template <typename T>
T parse_decimal(const std::filesystem::path& path, const SafetensorsMetadata& metadata,
                const std::string& key, T max) {
  auto it = metadata.find(key);
  if (it == metadata.end()) fail(path, fmt::format("metadata has no \"{}\" entry", key));
  const std::string& text = it->second;
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  bool digits_only = !text.empty() && text.front() != '-';
  if (!digits_only || ec != std::errc() || end != text.data() + text.size() || value > max) {
    fail(path, fmt::format("metadata \"{}\" is \"{}\", not a decimal integer in [0, {}]", key, text,
                           max));
  }
  return value;
}

}  // namespace

void save_checkpoint(const std::filesystem::path& path, const Checkpoint& checkpoint) {
  RW_CHECK(checkpoint.step >= 0, "save_checkpoint '{}': step {} is negative", path.string(),
           checkpoint.step);
  StateDict tensors;
  for (const auto& [name, t] : checkpoint.model)
    tensors.emplace(std::string(kModelPrefix) + name, t);
  for (const auto& [name, t] : checkpoint.optimizer) {
    tensors.emplace(std::string(kOptimizerPrefix) + name, t);
  }
  SafetensorsMetadata metadata;
  metadata["format"] = kCheckpointFormat;
  metadata["step"] = std::to_string(checkpoint.step);
  metadata["rng.seed"] = std::to_string(checkpoint.rng.seed);
  metadata["rng.stream"] = std::to_string(checkpoint.rng.stream);
  metadata["rng.counter"] = std::to_string(checkpoint.rng.counter);
  for (const auto& [key, value] : checkpoint.config) {
    metadata[std::string(kConfigPrefix) + key] = value;
  }
  save_safetensors(path, tensors, metadata);
}

Checkpoint load_checkpoint(const std::filesystem::path& path, Device device) {
  SafetensorsContents contents = read_safetensors(path, device);
  const SafetensorsMetadata& metadata = contents.metadata;

  auto format = metadata.find("format");
  if (format == metadata.end()) {
    fail(path, fmt::format("not a rewind checkpoint (its metadata has no \"format\" entry; "
                           "expected \"{}\")",
                           kCheckpointFormat));
  }
  if (format->second != kCheckpointFormat) {
    fail(path, fmt::format("unsupported format \"{}\" (expected \"{}\")", format->second,
                           kCheckpointFormat));
  }

  Checkpoint checkpoint;
  constexpr auto kU64Max = std::numeric_limits<uint64_t>::max();
  checkpoint.step =
      parse_decimal<int64_t>(path, metadata, "step", std::numeric_limits<int64_t>::max());
  checkpoint.rng.seed = parse_decimal<uint64_t>(path, metadata, "rng.seed", kU64Max);
  checkpoint.rng.stream = parse_decimal<uint64_t>(path, metadata, "rng.stream", kU64Max);
  checkpoint.rng.counter = parse_decimal<uint64_t>(path, metadata, "rng.counter", kU64Max);
  for (const auto& [key, value] : metadata) {
    if (key.starts_with(kConfigPrefix)) {
      checkpoint.config.emplace(key.substr(kConfigPrefix.size()), value);
    } else if (key != "format" && key != "step" && key != "rng.seed" && key != "rng.stream" &&
               key != "rng.counter") {
      // Strict: an entry this version does not know could be state it would silently drop.
      fail(path, fmt::format("unexpected metadata entry \"{}\"", key));
    }
  }

  for (auto& [name, tensor] : contents.tensors) {
    if (name.starts_with(kModelPrefix)) {
      checkpoint.model.emplace(name.substr(kModelPrefix.size()), std::move(tensor));
    } else if (name.starts_with(kOptimizerPrefix)) {
      checkpoint.optimizer.emplace(name.substr(kOptimizerPrefix.size()), std::move(tensor));
    } else {
      fail(path, fmt::format("unexpected tensor \"{}\" (checkpoint tensors start with \"{}\" or "
                             "\"{}\")",
                             name, kModelPrefix, kOptimizerPrefix));
    }
  }
  return checkpoint;
}

}  // namespace rw::nn
