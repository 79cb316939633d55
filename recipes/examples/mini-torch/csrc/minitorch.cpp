#include "minitorch.h"

#include <mutex>
#include <set>

#ifndef MINITORCH_ABI
#define MINITORCH_ABI 1
#endif

namespace minitorch {

Tensor ones(long n) { return Tensor{std::vector<float>(static_cast<size_t>(n), 1.0f)}; }

double sum(const Tensor& t) {
  double s = 0;
  for (float x : t.data) s += x;
  return s;
}

std::string version() { return "mini-torch abi " + std::to_string(MINITORCH_ABI); }

#if MINITORCH_ABI == 2
std::shared_ptr<ListType> ListType::get(const std::string& name, long size) {
#else
std::shared_ptr<ListType> ListType::get(const std::string& name, int size) {
#endif
  auto t = std::make_shared<ListType>();
  t->name = name;
  t->size = size;
  return t;
}

static std::mutex registry_mutex;
static std::set<std::string>& registry() {
  static std::set<std::string> ops;
  return ops;
}

void register_op(const std::string& name) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  registry().insert(name);
}

bool has_op(const std::string& name) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  return registry().count(name) != 0;
}

}  // namespace minitorch
