// memory_pin.h - keeping the memory of an addMemory() source valid while the
// engine reads it on the thread pool, whatever JavaScript does to the buffer.
//
// Node never detaches an ArrayBuffer over external memory: transferring one
// (structuredClone, postMessage) copies it, and napi_detach_arraybuffer
// refuses it.  So allocMergeable()'s buffers, kept referenced, stay mapped at
// the same address and length: they are scanned in place.  Any other buffer
// can be detached (its memory then belongs to the receiver, which may free
// it) or, if resizable, shrunk (V8 decommits the tail), so the engine scans a
// private copy of it taken when it is added.
#ifndef SAMEPAGE_ADDON_MEMORY_PIN_H
#define SAMEPAGE_ADDON_MEMORY_PIN_H

#include <cstddef>
#include <cstdint>
#include <memory>

namespace samepage {

// allocMergeable() registers its mappings; the ArrayBuffer's finalizer
// unregisters them before unmapping.  Safe from any thread.
void RegisterMergeable(const void* base, size_t len);
void UnregisterMergeable(const void* base);
// Whether [data, data + len) lies inside one registered mapping.
bool InMergeableAllocation(const void* data, size_t len);

// A private anonymous mapping holding a copy of caller memory at the same
// offset within its first page as the original, so the engine sees the same
// whole pages.  Unmapped when destroyed.
class MemoryCopy {
 public:
  // nullptr with *err = -errno when the mapping cannot be made.
  static std::unique_ptr<MemoryCopy> Of(const void* data, size_t len, int* err);
  ~MemoryCopy();
  MemoryCopy(const MemoryCopy&) = delete;
  MemoryCopy& operator=(const MemoryCopy&) = delete;
  const uint8_t* data() const { return data_; }

 private:
  MemoryCopy(void* base, size_t mapped, const uint8_t* data) : base_(base), mapped_(mapped), data_(data) {}
  void* base_;
  size_t mapped_;
  const uint8_t* data_;
};

}  // namespace samepage

#endif
