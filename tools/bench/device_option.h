#pragma once
// The --device flag of the benchmarks that run on either device (attention, model): "cpu" (the
// default), "cuda" or "cuda:N", as rewind-train parses it (rw::Device::parse). The value is checked
// when the benchmark runs, not while the flags are parsed, so that a missing GPU is a plain
// `rewind-bench: error: --device cuda: ...` with exit status 1 like every other runtime error.
#include <string>

#include <CLI/CLI.hpp>

#include "core/device.h"

namespace rw::bench {

// Adds --device to `cmd`, bound to `value`.
void add_device_option(CLI::App& cmd, std::string& value);

// The device `value` names, checked usable: rw::Error naming the flag and the value for an unknown
// name, for CUDA in a build without it, and for a GPU this machine does not have.
Device usable_device(const std::string& value);

// For table titles: "cpu" or the GPU's name with its index, "cuda:0 (NVIDIA H100 80GB HBM3)".
std::string device_label(Device device);

}  // namespace rw::bench
