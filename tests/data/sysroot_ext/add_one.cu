// The smallest CUDA torch extension: one kernel and its op, registered into the sysroot's torch.
// tests/test_aarch64_cuda.py cross-compiles it for sm_87, links it against the sysroot's
// libtorch_cuda.so and loads it in the arm64 container.
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>
#include <ATen/ATen.h>

__global__ void add_one_kernel(float* x, int64_t n) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] += 1.0f;
}

at::Tensor add_one(const at::Tensor& x) {
  TORCH_CHECK(x.is_cuda() && x.scalar_type() == at::kFloat, "add_one takes a float CUDA tensor");
  at::Tensor y = x.clone();
  int64_t n = y.numel();
  add_one_kernel<<<(n + 255) / 256, 256, 0, c10::cuda::getCurrentCUDAStream()>>>(y.data_ptr<float>(), n);
  return y;
}

TORCH_LIBRARY(jw_sysroot, m) { m.def("add_one(Tensor x) -> Tensor"); }
TORCH_LIBRARY_IMPL(jw_sysroot, CUDA, m) { m.impl("add_one", &add_one); }
