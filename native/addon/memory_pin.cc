// memory_pin.cc - see memory_pin.h.
#include "memory_pin.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>

namespace samepage {
namespace {

constexpr uintptr_t kPage = 4096;

// Mappings by start address.  A worker thread's allocMergeable() and the
// finalizers (which run on the owning thread) share it.
std::mutex g_mu;
std::map<uintptr_t, size_t> g_mergeable;

}  // namespace

void RegisterMergeable(const void* base, size_t len) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_mergeable[(uintptr_t)base] = len;
}

void UnregisterMergeable(const void* base) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_mergeable.erase((uintptr_t)base);
}

bool InMergeableAllocation(const void* data, size_t len) {
  uintptr_t a = (uintptr_t)data;
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_mergeable.upper_bound(a);
  if (it == g_mergeable.begin()) return false;
  --it;
  return a >= it->first && len <= it->second && a - it->first <= it->second - len;
}

std::unique_ptr<MemoryCopy> MemoryCopy::Of(const void* data, size_t len, int* err) {
  uintptr_t offset = (uintptr_t)data & (kPage - 1);
  size_t mapped = (offset + len + kPage - 1) & ~(size_t)(kPage - 1);
  if (!mapped) mapped = kPage;
  void* base = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) {
    *err = -errno;
    return nullptr;
  }
  uint8_t* copy = static_cast<uint8_t*>(base) + offset;
  if (len) memcpy(copy, data, len);
  // Read-only from now on: the engine never writes what it scans.
  mprotect(base, mapped, PROT_READ);
  return std::unique_ptr<MemoryCopy>(new MemoryCopy(base, mapped, copy));
}

MemoryCopy::~MemoryCopy() { munmap(base_, mapped_); }

}  // namespace samepage
