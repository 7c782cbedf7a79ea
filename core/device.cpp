#include "core/device.h"

#include <charconv>

#include "core/error.h"

namespace rw {

Device Device::parse(std::string_view s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s.starts_with("cuda:")) {
    std::string_view num = s.substr(5);
    int index = -1;
    auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), index);
    if (ec == std::errc() && ptr == num.data() + num.size() && index >= 0 &&
        index < kMaxDevicesPerType) {
      return cuda(index);
    }
  }
  throw Error(fmt::format("unknown device '{}' (expected cpu, cuda or cuda:N)", s));
}

}  // namespace rw
