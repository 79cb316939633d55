// Device code for mini_cuda: nvcc compiles it for the archs in TORCH_CUDA_ARCH_LIST, so the
// fatbin carries exactly what a torch/vLLM extension would carry.
#include <cuda_runtime.h>

__global__ void add_one(float* x, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] += 1.0f;
}

// Returns 0 and the sum in *out, or the CUDA error code ("no kernel image is available ..." is 209).
extern "C" int mini_cuda_add_one(int n, double* out, const char** message) {
  float* d = nullptr;
  cudaError_t err = cudaMalloc(&d, n * sizeof(float));
  if (err == cudaSuccess) err = cudaMemset(d, 0, n * sizeof(float));
  if (err == cudaSuccess) {
    add_one<<<(n + 255) / 256, 256>>>(d, n);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  float* h = new float[n];
  if (err == cudaSuccess) err = cudaMemcpy(h, d, n * sizeof(float), cudaMemcpyDeviceToHost);
  double s = 0;
  if (err == cudaSuccess)
    for (int i = 0; i < n; ++i) s += h[i];
  delete[] h;
  if (d) cudaFree(d);
  *out = s;
  *message = cudaGetErrorString(err);
  return static_cast<int>(err);
}
