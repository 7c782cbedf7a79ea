#include "device_option.h"

#include <fmt/format.h>

#include "core/device_sync.h"
#include "core/error.h"

namespace rw::bench {

void add_device_option(CLI::App& cmd, std::string& value) {
  cmd.add_option("--device", value, "cpu, cuda or cuda:N (timed with device synchronisation)")
      ->capture_default_str();
}

Device usable_device(const std::string& value) {
  Device device;
  try {
    device = Device::parse(value);
  } catch (const Error& e) {
    throw Error(fmt::format("--device {}: {}", value, e.what()));
  }
  if (device.is_cpu()) return device;
  RW_CHECK(cuda_is_built(),
           "--device {}: this rewind-bench was built without CUDA support (configure with "
           "-DREWIND_CUDA=ON on a machine with the CUDA toolkit)",
           value);
  const int count = cuda_device_count();
  RW_CHECK(device.index < count, "--device {}: no such CUDA device ({} visible{})", value, count,
           count == 0 ? "; no GPU or no usable NVIDIA driver on this machine" : "");
  return device;
}

std::string device_label(Device device) {
  if (device.is_cpu()) return "cpu";
  return fmt::format("{} ({})", device.str(), device_name(device));
}

}  // namespace rw::bench
