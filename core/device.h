#pragma once
// Where a tensor lives: the CPU or a CUDA device by index.
#include <cstdint>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace rw {

enum class DeviceType : uint8_t { cpu, cuda };
inline constexpr int kMaxDevicesPerType = 16;

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static constexpr Device cpu() { return {DeviceType::cpu, 0}; }
  static constexpr Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  friend constexpr bool operator==(Device, Device) = default;
  std::string str() const {
    return type == DeviceType::cpu ? std::string("cpu") : fmt::format("cuda:{}", index);
  }
  // Parses "cpu", "cuda", "cuda:1"; throws rw::Error otherwise.
  static Device parse(std::string_view s);
};

// Whether this build has the CUDA backend, and how many GPUs it can use (0 without the backend,
// without a GPU or without a usable driver).
bool cuda_is_built();
int cuda_device_count();

}  // namespace rw

template <>
struct fmt::formatter<rw::Device> : fmt::formatter<std::string_view> {
  auto format(rw::Device d, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(d.str(), ctx);
  }
};
