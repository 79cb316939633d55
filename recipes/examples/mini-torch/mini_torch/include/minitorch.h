// The public C++ API of libminitorch: a stand-in for libc10/libtorch. Extensions compile against
// this header and link the shared library, so a changed signature here breaks them the way a torch
// upgrade breaks a torchvision built for the old one.
#pragma once
#include <memory>
#include <string>
#include <vector>

namespace minitorch {

struct Tensor {
  std::vector<float> data;
};

Tensor ones(long n);
double sum(const Tensor& t);
std::string version();

// Like c10::ListType::get: a C++ entry point whose mangled name encodes its signature.
// MINITORCH_ABI=2 changes the parameter type, which is what the abi check must catch.
struct ListType {
#if MINITORCH_ABI == 2
  static std::shared_ptr<ListType> get(const std::string& name, long size);
#else
  static std::shared_ptr<ListType> get(const std::string& name, int size);
#endif
  std::string name;
  long size;
};

// An operator registry shared by every extension loaded in the process (like torch's dispatcher):
// torchvision's ops exist only if torchvision's library registered them into *this* torch.
void register_op(const std::string& name);
bool has_op(const std::string& name);

}  // namespace minitorch
