#pragma once
// Training checkpoints: everything needed to resume a run, in ONE safetensors file, so a
// checkpoint is replaced atomically as a whole (no model file from step N beside an optimizer
// file from step N-1) and stays readable by any safetensors tool.
//
// Layout: model tensors as "model.<name>", optimizer state as "optim.<name>"; in __metadata__,
// "format": "rewind-checkpoint-1", "step", "rng.seed", "rng.stream", "rng.counter" (decimal
// integers) and each config entry as "config.<key>".
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "core/device.h"
#include "core/philox.h"
#include "nn/module.h"

namespace rw::nn {

inline constexpr const char* kCheckpointFormat = "rewind-checkpoint-1";

struct Checkpoint {
  StateDict model;
  StateDict optimizer;
  int64_t step = 0;
  PhiloxState rng;
  std::map<std::string, std::string> config;
};

// Writes atomically: on failure the previous file at `path` is unchanged. Throws rw::Error on a
// negative step.
void save_checkpoint(const std::filesystem::path& path, const Checkpoint& checkpoint);
// Validates the format marker, every metadata entry and every tensor name; each problem is an
// rw::Error naming the file and the key.
Checkpoint load_checkpoint(const std::filesystem::path& path, Device device = Device::cpu());

}  // namespace rw::nn
