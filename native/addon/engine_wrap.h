// engine_wrap.h - the Engine class: one sp_engine, used by one thread at a
// time.  A scan, a cache pass and the adding of a process or a dump run on
// the libuv thread pool and own the engine until they end; meanwhile
// synchronous methods throw (EBUSY), cancel() and close() work.  A pending scan keeps the object alive; close() waits for it; the
// environment's teardown (process exit, worker thread end) cancels it and
// waits before freeing the engine.
#ifndef SAMEPAGE_ADDON_ENGINE_WRAP_H
#define SAMEPAGE_ADDON_ENGINE_WRAP_H

#include <napi.h>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

extern "C" {
#include "samepage.h"
}

#include "memory_pin.h"

namespace samepage {

struct ScanJob;

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit EngineWrap(const Napi::CallbackInfo& info);
  ~EngineWrap() override;

  // Called by the scan slices.
  sp_engine* engine() { return engine_; }
  void NextSlice(std::shared_ptr<ScanJob> job);
  void ExecuteFinished();  // worker thread: a task's Execute() returned
  void ScanEnded();        // main thread: the task owning the engine is over
  bool WaitInterval(uint32_t ms);  // false when cancelled meanwhile
  bool cancelled();
  bool CanCallIntoJs(Napi::Env env);

 private:
  Napi::Value Configure(const Napi::CallbackInfo& info);
  Napi::Value Settings(const Napi::CallbackInfo& info);
  Napi::Value AddMemory(const Napi::CallbackInfo& info);
  Napi::Value AddProcess(const Napi::CallbackInfo& info);
  Napi::Value AddDump(const Napi::CallbackInfo& info);
  Napi::Value RemoveSource(const Napi::CallbackInfo& info);
  Napi::Value Sources(const Napi::CallbackInfo& info);
  Napi::Value SetHints(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);
  Napi::Value Groups(const Napi::CallbackInfo& info);
  Napi::Value Matrix(const Napi::CallbackInfo& info);
  Napi::Value UnmergeAll(const Napi::CallbackInfo& info);
  Napi::Value Scan(const Napi::CallbackInfo& info);
  Napi::Value CachePass(const Napi::CallbackInfo& info);
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Busy(const Napi::CallbackInfo& info);

  // Throws unless the engine is open and idle.
  sp_engine* Idle(Napi::Env env, const char* what);
  // Marks the engine owned by a thread-pool task about to be queued.
  void BeginTask();
  void Destroy();
  static void CleanupHook(void* arg);

  sp_engine* engine_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  bool busy_ = false;       // a worker owns the engine (main thread view)
  bool executing_ = false;  // Execute() is running (worker thread view)
  bool cancelled_ = false;
  bool hook_added_ = false;
  // What each addMemory() source reads, kept until the source goes: an
  // allocMergeable() buffer by reference (Node never detaches it), anything
  // else as a private copy (see AddMemory).
  struct MemorySource {
    Napi::Reference<Napi::Value> buffer;
    std::unique_ptr<MemoryCopy> copy;
  };
  std::map<uint32_t, MemorySource> memory_;
  std::vector<Napi::Promise::Deferred> close_waiters_;
  Napi::FunctionReference noop_;
};

}  // namespace samepage

#endif
