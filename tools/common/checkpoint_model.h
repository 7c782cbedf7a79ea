#pragma once
// Reading the model out of a rewind-train checkpoint, shared by every tool that loads one
// (rewind-generate, rewind-train --resume): one place that turns each way a file can be wrong into
// an rw::Error naming the file and the problem.
//
// A rewind-train checkpoint is an nn::Checkpoint (one safetensors file) whose config holds the
// ReformerConfig as "model.<key>" entries (ReformerConfig::to_map) beside the trainer's own
// "train.*" entries, and whose model tensors are the ReformerLM's state_dict.
//
//   rw::tools::CheckpointModel loaded =
//   rw::tools::load_checkpoint_model("run/checkpoint.safetensors");
//   rw::reformer::generate(*loaded.model, prompt, {...});
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "core/device.h"
#include "models/reformer/reformer_config.h"
#include "models/reformer/reformer_lm.h"
#include "nn/checkpoint.h"

namespace rw::tools {

// The prefix of the model config's entries in a checkpoint's config.
inline constexpr const char* kModelConfigPrefix = "model.";

// The "model.<key>" entries that describe `config` in a checkpoint's config.
std::map<std::string, std::string> model_config_entries(const reformer::ReformerConfig& config);

// Reads a checkpoint file (tensors on the CPU). rw::Error naming the file when it does not exist,
// is not a regular file, or is not a readable rewind checkpoint (truncated, not safetensors,
// another format).
nn::Checkpoint read_checkpoint_file(const std::filesystem::path& path);

// The validated model config of a checkpoint read from `path` (named in errors): rw::Error when it
// holds none (a checkpoint not written by rewind-train) or an invalid one.
reformer::ReformerConfig checkpoint_model_config(const nn::Checkpoint& checkpoint,
                                                 const std::filesystem::path& path);

// Copies the checkpoint's parameters into `model` (strict: every parameter present, none extra,
// the same shapes); rw::Error naming the file and the offending names otherwise.
void load_checkpoint_parameters(reformer::ReformerLM& model, const nn::Checkpoint& checkpoint,
                                const std::filesystem::path& path);

struct CheckpointModel {
  std::shared_ptr<reformer::ReformerLM> model;  // in evaluation mode, on the requested device
  int64_t step = 0;                             // optimizer steps the parameters were trained for
};

// A ReformerLM with the config and parameters of the rewind-train checkpoint at `path`, in
// evaluation mode, on `device`. Every problem is an rw::Error naming the file.
CheckpointModel load_checkpoint_model(const std::filesystem::path& path,
                                      Device device = Device::cpu());

}  // namespace rw::tools
