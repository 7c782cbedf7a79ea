// libFuzzer target for the safetensors reader: any byte string must either parse or fail with
// rw::Error; anything else (a crash, a sanitizer report, another exception, a hang) is a bug.
// A file that parses must also survive a write/read round trip unchanged, and writing what was
// read back must reproduce the same bytes: the writer's output is canonical.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "nn/safetensors.h"

namespace {

bool same_bytes(const rw::Tensor& a, const rw::Tensor& b) {
  if (a.dtype() != b.dtype() || a.shape() != b.shape()) return false;
  if (a.nbytes() == 0) return true;
  return std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) == 0;
}

bool same_contents(const rw::nn::SafetensorsContents& a, const rw::nn::SafetensorsContents& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  for (const auto& [name, t] : a.tensors) {
    auto it = b.tensors.find(name);
    if (it == b.tensors.end() || !same_bytes(t, it->second)) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rw::nn::SafetensorsContents parsed;
  try {
    parsed =
        rw::nn::parse_safetensors({reinterpret_cast<const std::byte*>(data), size}, "fuzz-input");
  } catch (const rw::Error&) {
    return 0;  // rejected with a proper error: the expected outcome for most inputs
  }
  // Accepted: the round trip must hold. Failing it aborts, which libFuzzer reports as a crash.
  std::vector<std::byte> written = rw::nn::serialize_safetensors(parsed.tensors, parsed.metadata);
  rw::nn::SafetensorsContents reread = rw::nn::parse_safetensors(written, "fuzz-rewritten");
  if (!same_contents(parsed, reread)) std::abort();
  if (rw::nn::serialize_safetensors(reread.tensors, reread.metadata) != written) std::abort();
  return 0;
}
