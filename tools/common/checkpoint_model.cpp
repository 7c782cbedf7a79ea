#include "common/checkpoint_model.h"

#include <system_error>

#include <fmt/format.h>

#include "core/error.h"

namespace rw::tools {
namespace {

const std::string kPrefix = kModelConfigPrefix;

}  // namespace

std::map<std::string, std::string> model_config_entries(const reformer::ReformerConfig& config) {
  std::map<std::string, std::string> entries;
  for (const auto& [key, value] : config.to_map()) entries[kPrefix + key] = value;
  return entries;
}

nn::Checkpoint read_checkpoint_file(const std::filesystem::path& path) {
  // The common mistakes first, in words a user acts on; the reader's own messages for the rest.
  std::error_code ec;
  const std::filesystem::file_status status = std::filesystem::status(path, ec);
  RW_CHECK(std::filesystem::exists(status), "checkpoint '{}': no such file", path.string());
  if (std::filesystem::is_directory(status)) {
    const std::filesystem::path inside = path / "checkpoint.safetensors";
    RW_CHECK(!std::filesystem::exists(inside),
             "checkpoint '{}' is a directory, not a file (a run directory? its checkpoint is '{}')",
             path.string(), inside.string());
    throw Error(fmt::format("checkpoint '{}' is a directory, not a file", path.string()));
  }
  RW_CHECK(std::filesystem::is_regular_file(status), "checkpoint '{}' is not a regular file",
           path.string());
  try {
    return nn::load_checkpoint(path, Device::cpu());
  } catch (const Error& e) {
    // The reader names the file and the defect; say what was being done (a safetensors message
    // alone does not tell the user that the file is damaged or is not a checkpoint at all).
    throw Error(
        fmt::format("cannot load the checkpoint (truncated, corrupt or not a rewind-train "
                    "checkpoint): {}",
                    e.what()));
  }
}

reformer::ReformerConfig checkpoint_model_config(const nn::Checkpoint& checkpoint,
                                                 const std::filesystem::path& path) {
  std::map<std::string, std::string> values;
  for (const auto& [key, value] : checkpoint.config) {
    if (key.starts_with(kPrefix)) values[key.substr(kPrefix.size())] = value;
  }
  RW_CHECK(!values.empty(),
           "checkpoint '{}' holds no model config (no \"{}*\" entries): it was not written by "
           "rewind-train",
           path.string(), kPrefix);
  try {
    reformer::ReformerConfig config = reformer::ReformerConfig::from_map(values);
    config.validate();
    return config;
  } catch (const Error& e) {
    throw Error(fmt::format("checkpoint '{}': invalid model config: {}", path.string(), e.what()));
  }
}

void load_checkpoint_parameters(reformer::ReformerLM& model, const nn::Checkpoint& checkpoint,
                                const std::filesystem::path& path) {
  try {
    model.load_state_dict(checkpoint.model, /*strict=*/true);
  } catch (const Error& e) {
    throw Error(fmt::format("checkpoint '{}': its parameters do not fit the model it describes: {}",
                            path.string(), e.what()));
  }
}

CheckpointModel load_checkpoint_model(const std::filesystem::path& path, Device device) {
  const nn::Checkpoint checkpoint = read_checkpoint_file(path);
  reformer::ReformerConfig config = checkpoint_model_config(checkpoint, path);
  // The initial values are overwritten: any generator will do, and a local one leaves the
  // caller's randomness untouched.
  Generator init(0);
  auto model = std::make_shared<reformer::ReformerLM>(std::move(config), init);
  load_checkpoint_parameters(*model, checkpoint, path);
  model->to(device);
  model->eval();
  return {std::move(model), checkpoint.step};
}

}  // namespace rw::tools
