// engine_wrap.h - the Engine class: one sp_engine, used by one thread at a
// time.  A scan runs on the libuv thread pool and owns the engine until it
// ends; meanwhile synchronous methods throw (EBUSY), cancel() and close()
// work.  A pending scan keeps the object alive; close() waits for it; the
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
  void ExecuteFinished();  // worker thread: a slice's Execute() returned
  void ScanEnded();        // main thread: the scan is over
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
  void Destroy();
  static void CleanupHook(void* arg);

  sp_engine* engine_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  bool busy_ = false;       // a worker owns the engine (main thread view)
  bool executing_ = false;  // Execute() is running (worker thread view)
  bool cancelled_ = false;
  bool hook_added_ = false;
  std::map<uint32_t, Napi::Reference<Napi::Value>> buffers_;
  std::vector<Napi::Promise::Deferred> close_waiters_;
  Napi::FunctionReference noop_;
};

}  // namespace samepage

#endif
