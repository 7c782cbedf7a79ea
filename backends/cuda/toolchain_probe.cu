// Toolchain probe for the CUDA build: generates Philox words on the GPU with the same header the
// CPU uses and checks the known answer (counter 0, key 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8).
// Exit codes: 0 match, 1 mismatch or CUDA error, 77 no CUDA device (ctest reports it as skipped).
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>

#include "core/philox.h"

namespace {

__global__ void philox_kernel(uint32_t* out) {
  rw::PhiloxBlock b = rw::philox_block(rw::PhiloxState{}, 0);
  for (int i = 0; i < 4; ++i) out[i] = b.w[i];
}

}  // namespace

int main() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("no CUDA device: probe skipped (the toolchain compiled and linked it)\n");
    return 77;
  }
  uint32_t* d_out = nullptr;
  uint32_t h_out[4] = {};
  if (cudaMalloc(&d_out, sizeof(h_out)) != cudaSuccess) return 1;
  philox_kernel<<<1, 1>>>(d_out);
  cudaError_t err = cudaMemcpy(h_out, d_out, sizeof(h_out), cudaMemcpyDeviceToHost);
  cudaFree(d_out);
  if (err != cudaSuccess) {
    std::printf("CUDA error: %s\n", cudaGetErrorString(err));
    return 1;
  }
  const uint32_t expected[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
  for (int i = 0; i < 4; ++i) {
    if (h_out[i] != expected[i]) {
      std::printf("philox on the GPU: word %d is %08x, expected %08x\n", i, h_out[i], expected[i]);
      return 1;
    }
  }
  std::printf("philox on the GPU matches the known answer\n");
  return 0;
}
