// engine_wrap.cc - see engine_wrap.h.
#include "engine_wrap.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "convert.h"

namespace samepage {

// The state of one scan() call, kept on the main thread between slices.
struct ScanJob {
  Napi::Promise::Deferred deferred;
  Napi::FunctionReference on_progress;
  uint64_t passes_left;      // full passes still to run (pass mode)
  uint64_t pages_left;       // pages still to charge (step mode), else 0
  bool step_mode;
  uint32_t interval_ms;
  double sleep_until_ms = 0; // between passes
  uint64_t passes_done = 0;
  int error = 0;
  bool finished = false;
};

namespace {

// Node waits for a thread-pool task to finish before it can tear an
// environment down (a worker's terminate(), process exit), and only runs the
// cleanup hooks after that.  So a scan is a chain of short tasks (about
// SLICE_MS each): teardown waits one slice at most, and each slice's
// completion, on the main thread, decides whether to go on.
constexpr double SLICE_MS = 50;
constexpr uint64_t STEP_PAGES = 4096;

double NowMs() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

// One slice: inputs are the job's plain fields (copied in), Execute()
// touches only the engine (owned while busy) and those fields, results are
// converted on the main thread in OnOK().
class SliceWorker : public Napi::AsyncWorker {
 public:
  SliceWorker(EngineWrap* owner, Napi::Object self, std::shared_ptr<ScanJob> job)
      : Napi::AsyncWorker(self.Env(), "samepage:scan", self), owner_(owner), job_(std::move(job)) {}

  void Execute() override {
    sp_engine* e = owner_->engine();
    ScanJob& j = *job_;
    double start = NowMs();
    while (!j.finished && !j.error && NowMs() - start < SLICE_MS) {
      if (owner_->cancelled()) {
        j.error = -ECANCELED;
        break;
      }
      if (j.sleep_until_ms > 0) {
        double left = j.sleep_until_ms - NowMs();
        if (left > 0 && !owner_->WaitInterval((uint32_t)std::min(left, SLICE_MS) + 1)) {
          j.error = -ECANCELED;
          break;
        }
        if (NowMs() >= j.sleep_until_ms) j.sleep_until_ms = 0;
        continue;
      }
      uint64_t before = scans(e);
      uint64_t budget = j.step_mode ? std::min(j.pages_left, STEP_PAGES) : STEP_PAGES;
      int64_t r = sp_engine_step(e, budget);
      if (r < 0) {
        j.error = (int)r;
        break;
      }
      if (j.step_mode) {
        j.pages_left -= (uint64_t)r;
        // A step ends at the end of a pass, as ksmd's batch does.
        if (!j.pages_left || scans(e) != before) j.finished = true;
      } else if (scans(e) != before) {
        j.passes_done++;
        if (--j.passes_left == 0) j.finished = true;
        else if (j.interval_ms) j.sleep_until_ms = NowMs() + j.interval_ms;
      }
    }
    sp_engine_counters(e, &counters_);
    sp_engine_progress(e, &progress_);
    owner_->ExecuteFinished();
  }

  void OnOK() override {
    Napi::Env env = Env();
    ScanJob& j = *job_;
    if (!owner_->CanCallIntoJs(env)) {
      // The environment is being torn down: stop here; the cleanup hook
      // frees the engine.
      owner_->ScanEnded();
      return;
    }
    // Progress after every slice, the last one included, so a progress
    // bar always reaches its end.
    if (!j.error && !j.on_progress.IsEmpty()) {
      try {
        j.on_progress.Call({ProgressToJs(env, progress_, counters_)});
      } catch (const Napi::Error& e) {
        // A throwing progress callback ends the scan with its error.
        owner_->ScanEnded();
        j.deferred.Reject(e.Value());
        return;
      }
    }
    if (j.error || j.finished) {
      owner_->ScanEnded();
      Settle(env);
      return;
    }
    owner_->NextSlice(job_);
  }

  void OnError(const Napi::Error& err) override {
    owner_->ScanEnded();
    job_->deferred.Reject(err.Value());
  }

 private:
  static uint64_t scans(sp_engine* e) {
    sp_progress p;
    sp_engine_progress(e, &p);  // constant cost, unlike the counters
    return p.pass;
  }

  void Settle(Napi::Env env) {
    ScanJob& j = *job_;
    if (j.error) {
      j.deferred.Reject(ErrnoError(env, j.error, "scan").Value());
      return;
    }
    sp_engine* e = owner_->engine();
    Napi::Object result = Napi::Object::New(env);
    if (e) {
      sp_counters c;
      sp_engine_counters(e, &c);
      result.Set("counters", CountersToJs(env, c));
      Napi::Array sources = Napi::Array::New(env);
      for (size_t i = 0; i < sp_source_count(e); i++) {
        sp_source_info info;
        if (sp_source_get(e, i, &info) == 0) sources.Set((uint32_t)i, SourceToJs(env, info));
      }
      result.Set("sources", sources);
    }
    result.Set("passes", Napi::Number::New(env, (double)j.passes_done));
    j.deferred.Resolve(result);
  }

  EngineWrap* owner_;
  std::shared_ptr<ScanJob> job_;
  sp_counters counters_{};
  sp_progress progress_{};
};

// One exclusive-cache pass over files, with the engine owned meanwhile.
// cancel() stops it between runs of cached pages (-ECANCELED); the file being
// examined then has nothing dropped, the files before it stay as dropped.
class CacheWorker : public Napi::AsyncWorker {
 public:
  CacheWorker(EngineWrap* owner, Napi::Object self, std::vector<std::string> paths, bool act)
      : Napi::AsyncWorker(self.Env(), "samepage:cache", self),
        owner_(owner),
        deferred_(Napi::Promise::Deferred::New(self.Env())),
        paths_(std::move(paths)),
        act_(act) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    std::vector<const char*> ptrs;
    for (auto& p : paths_) ptrs.push_back(p.c_str());
    err_ = sp_cache_pass(owner_->engine(), ptrs.data(), ptrs.size(), act_ ? SP_CACHE_ACT : 0, &result_);
    owner_->ExecuteFinished();
  }
  void OnOK() override {
    owner_->ScanEnded();
    if (err_) deferred_.Reject(ErrnoError(Env(), err_, "cache pass").Value());
    else deferred_.Resolve(CacheResultToJs(Env(), result_));
  }
  void OnError(const Napi::Error& e) override {
    owner_->ScanEnded();
    deferred_.Reject(e.Value());
  }

 private:
  EngineWrap* owner_;
  Napi::Promise::Deferred deferred_;
  std::vector<std::string> paths_;
  bool act_;
  sp_cache_result result_{};
  int err_ = 0;
};

// Adds a process or a dump source: opening /proc/PID/* or the dump, reading
// smaps or the ELF headers (and, for soft-dirty, a fork to probe the kernel)
// happen here on the thread pool, with the engine owned meanwhile.  The
// inputs were copied into `add_`; the id or the error is converted back on
// the main thread.
class AddSourceWorker : public Napi::AsyncWorker {
 public:
  using AddFn = std::function<int(sp_engine*, uint32_t*)>;
  AddSourceWorker(EngineWrap* owner, Napi::Object self, AddFn add, std::string what)
      : Napi::AsyncWorker(self.Env(), "samepage:add", self),
        owner_(owner),
        deferred_(Napi::Promise::Deferred::New(self.Env())),
        add_(std::move(add)),
        what_(std::move(what)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    err_ = add_(owner_->engine(), &id_);
    owner_->ExecuteFinished();
  }
  void OnOK() override {
    owner_->ScanEnded();
    if (err_) deferred_.Reject(ErrnoError(Env(), err_, what_).Value());
    else deferred_.Resolve(Napi::Number::New(Env(), id_));
  }
  void OnError(const Napi::Error& e) override {
    owner_->ScanEnded();
    deferred_.Reject(e.Value());
  }

 private:
  EngineWrap* owner_;
  Napi::Promise::Deferred deferred_;
  AddFn add_;
  std::string what_;
  uint32_t id_ = 0;
  int err_ = 0;
};

uint64_t OptionalCount(const Napi::Object& opts, const char* key, uint64_t fallback, uint64_t max) {
  Napi::Value v = opts.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(opts.Env(), std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d < 0 || d != std::floor(d) || d > (double)max)
    throw Napi::RangeError::New(opts.Env(), std::string(key) + " must be an integer from 0 to " +
                                                std::to_string(max));
  return (uint64_t)d;
}

}  // namespace

Napi::Function EngineWrap::Init(Napi::Env env) {
  return DefineClass(env, "Engine",
                     {
                         InstanceMethod("configure", &EngineWrap::Configure),
                         InstanceMethod("settings", &EngineWrap::Settings),
                         InstanceMethod("addMemory", &EngineWrap::AddMemory),
                         InstanceMethod("addProcess", &EngineWrap::AddProcess),
                         InstanceMethod("addDump", &EngineWrap::AddDump),
                         InstanceMethod("removeSource", &EngineWrap::RemoveSource),
                         InstanceMethod("sources", &EngineWrap::Sources),
                         InstanceMethod("setHints", &EngineWrap::SetHints),
                         InstanceMethod("counters", &EngineWrap::Counters),
                         InstanceMethod("groups", &EngineWrap::Groups),
                         InstanceMethod("matrix", &EngineWrap::Matrix),
                         InstanceMethod("unmergeAll", &EngineWrap::UnmergeAll),
                         InstanceMethod("scan", &EngineWrap::Scan),
                         InstanceMethod("cachePass", &EngineWrap::CachePass),
                         InstanceMethod("cancel", &EngineWrap::Cancel),
                         InstanceMethod("close", &EngineWrap::Close),
                         InstanceAccessor("busy", &EngineWrap::Busy, nullptr),
                     });
}

EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
  Napi::Env env = info.Env();
  sp_settings s;
  sp_settings_default(&s);
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "settings must be an object");
    s = SettingsFromJs(info[0].As<Napi::Object>(), s);
  }
  int err = sp_engine_create(&s, &engine_);
  if (err) ThrowErrno(env, err, "creating the engine");
  noop_ = Napi::Persistent(Napi::Function::New(env, [](const Napi::CallbackInfo& i) { return i.Env().Undefined(); }));
  napi_add_env_cleanup_hook(env, &EngineWrap::CleanupHook, this);
  hook_added_ = true;
}

EngineWrap::~EngineWrap() {
  if (hook_added_) napi_remove_env_cleanup_hook(Env(), &EngineWrap::CleanupHook, this);
  // A pending scan holds a reference to this object, so it cannot be
  // collected while busy; the cleanup hook handles teardown.
  if (engine_) sp_engine_destroy(engine_);
  engine_ = nullptr;
}

// The environment is going away (process exit or worker thread end): stop
// a running scan and wait for the thread-pool task before freeing.
void EngineWrap::CleanupHook(void* arg) {
  auto* self = static_cast<EngineWrap*>(arg);
  self->hook_added_ = false;
  std::unique_lock<std::mutex> lock(self->mu_);
  self->cancelled_ = true;
  if (self->engine_) sp_engine_cancel(self->engine_);
  self->cv_.notify_all();
  self->cv_.wait(lock, [self] { return !self->executing_; });
  if (self->engine_) sp_engine_destroy(self->engine_);
  self->engine_ = nullptr;
}

void EngineWrap::ExecuteFinished() {
  std::lock_guard<std::mutex> lock(mu_);
  executing_ = false;
  cv_.notify_all();
}

void EngineWrap::ScanEnded() {
  busy_ = false;
  Unref();
  if (!close_waiters_.empty()) {
    Destroy();
    for (auto& d : close_waiters_) d.Resolve(Env().Undefined());
    close_waiters_.clear();
  }
}

bool EngineWrap::WaitInterval(uint32_t ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return cancelled_; });
  return !cancelled_;
}

bool EngineWrap::cancelled() {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

sp_engine* EngineWrap::Idle(Napi::Env env, const char* what) {
  if (!engine_) throw Napi::Error::New(env, std::string(what) + ": the engine is closed");
  if (busy_) {
    Napi::Error err = Napi::Error::New(
        env, std::string(what) + ": a scan is in progress (wait for it, or cancel() it)");
    err.Set("code", Napi::String::New(env, "EBUSY"));
    throw err;
  }
  return engine_;
}

void EngineWrap::Destroy() {
  if (engine_) sp_engine_destroy(engine_);
  engine_ = nullptr;
  memory_.clear();
}

void EngineWrap::BeginTask() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    busy_ = true;
    executing_ = true;
    cancelled_ = false;
    sp_engine_clear_cancel(engine_);
  }
  Ref();  // alive while the task runs
}

Napi::Value EngineWrap::Configure(const Napi::CallbackInfo& info) {
  sp_engine* e = Idle(info.Env(), "configure");
  if (info.Length() < 1 || !info[0].IsObject())
    throw Napi::TypeError::New(info.Env(), "configure(settings): settings must be an object");
  sp_settings s;
  sp_engine_settings(e, &s);
  s = SettingsFromJs(info[0].As<Napi::Object>(), s);
  int err = sp_engine_configure(e, &s);
  if (err) ThrowErrno(info.Env(), err, "configure");
  return info.Env().Undefined();
}

Napi::Value EngineWrap::Settings(const Napi::CallbackInfo& info) {
  sp_settings s;
  sp_engine_settings(Idle(info.Env(), "settings"), &s);
  return SettingsToJs(info.Env(), s);
}

// addMemory(name, memory): scanned in place when allocMergeable() made it,
// else from a copy taken now (see memory_pin.h): a detached, transferred or
// shrunk buffer can never leave the engine reading freed memory.
Napi::Value EngineWrap::AddMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sp_engine* e = Idle(env, "addMemory");
  std::string name = OptionalString(info[0], "name");
  Napi::Value mem = info[1];
  void* data = nullptr;
  size_t len = 0;
  napi_value buffer = nullptr;
  if (mem.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = mem.As<Napi::ArrayBuffer>();
    if (ab.IsDetached())
      throw Napi::TypeError::New(env, "addMemory: the ArrayBuffer is detached (it was transferred): pass memory this thread owns");
    data = ab.Data();
    len = ab.ByteLength();
    buffer = ab;
  } else if (mem.IsTypedArray()) {
    napi_typedarray_type type;
    size_t length, offset;
    NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, mem, &type, &length, &data, &buffer, &offset), Napi::Value());
    len = mem.As<Napi::TypedArray>().ByteLength();
  } else if (mem.IsDataView()) {
    size_t offset;
    NAPI_THROW_IF_FAILED(env, napi_get_dataview_info(env, mem, &len, &data, &buffer, &offset), Napi::Value());
  } else {
    throw Napi::TypeError::New(env, "addMemory(name, memory): memory must be an ArrayBuffer or a typed array");
  }
  if (!data && len == 0 && Napi::Value(env, buffer).IsArrayBuffer() && Napi::Value(env, buffer).As<Napi::ArrayBuffer>().IsDetached())
    throw Napi::TypeError::New(env, "addMemory: the view's ArrayBuffer is detached (it was transferred): pass memory this thread owns");
  MemorySource kept;
  const void* scanned = data;
  if (len && InMergeableAllocation(data, len)) {
    kept.buffer = Napi::Persistent(Napi::Value(env, buffer));
  } else if (len) {
    int err = 0;
    kept.copy = MemoryCopy::Of(data, len, &err);
    if (!kept.copy) ThrowErrno(env, err, "addMemory: copying the buffer");
    scanned = kept.copy->data();
  }
  uint32_t id;
  int err = sp_add_memory(e, name.empty() ? nullptr : name.c_str(), scanned, len, &id);
  if (err) ThrowErrno(env, err, "addMemory");
  memory_[id] = std::move(kept);
  return Napi::Number::New(env, id);
}

// addProcess(name, pid, flags): Promise<id>
Napi::Value EngineWrap::AddProcess(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Idle(env, "addProcess");
  std::string name = OptionalString(info[0], "name");
  if (!info[1].IsNumber()) throw Napi::TypeError::New(env, "addProcess(name, pid, flags): pid must be a number");
  double pid = info[1].As<Napi::Number>().DoubleValue();
  if (pid < 1 || pid > 4194304 || pid != std::floor(pid))
    throw Napi::RangeError::New(env, "addProcess: pid must be a positive integer, got " + info[1].ToString().Utf8Value());
  uint32_t flags = info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0;
  pid_t p = (pid_t)pid;
  auto add = [name, p, flags](sp_engine* e, uint32_t* id) {
    return sp_add_process(e, name.empty() ? nullptr : name.c_str(), p, flags, id);
  };
  auto* worker = new AddSourceWorker(this, Value(), add, "addProcess(" + std::to_string((long)p) + ")");
  Napi::Promise promise = worker->Promise();
  BeginTask();
  worker->Queue();
  return promise;
}

// addDump(name, path, flags): Promise<id>
Napi::Value EngineWrap::AddDump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Idle(env, "addDump");
  std::string name = OptionalString(info[0], "name");
  if (!info[1].IsString()) throw Napi::TypeError::New(env, "addDump(name, path, flags): path must be a string");
  std::string path = info[1].As<Napi::String>().Utf8Value();
  uint32_t flags = info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0;
  auto add = [name, path, flags](sp_engine* e, uint32_t* id) {
    return sp_add_dump(e, name.empty() ? nullptr : name.c_str(), path.c_str(), flags, id);
  };
  auto* worker = new AddSourceWorker(this, Value(), add, "addDump(" + path + ")");
  Napi::Promise promise = worker->Promise();
  BeginTask();
  worker->Queue();
  return promise;
}

Napi::Value EngineWrap::RemoveSource(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sp_engine* e = Idle(env, "removeSource");
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "removeSource(id): id must be a number");
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  int err = sp_remove_source(e, id);
  if (err) ThrowErrno(env, err, "removeSource(" + std::to_string(id) + ")");
  memory_.erase(id);
  return env.Undefined();
}

// setHints(id, hints: Uint8Array | null): one byte per guest page.
Napi::Value EngineWrap::SetHints(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sp_engine* e = Idle(env, "setHints");
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "setHints(id, hints): id must be a number");
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  const uint8_t* data = nullptr;
  size_t len = 0;
  if (info[1].IsTypedArray()) {
    Napi::Uint8Array a = info[1].As<Napi::Uint8Array>();
    data = a.Data();
    len = a.ByteLength();
  } else if (!info[1].IsNull() && !info[1].IsUndefined()) {
    throw Napi::TypeError::New(env, "setHints(id, hints): hints must be a Uint8Array or null");
  }
  int err = sp_source_set_hints(e, id, data, len);  // copies the bytes
  if (err) ThrowErrno(env, err, "setHints(" + std::to_string(id) + ")");
  return env.Undefined();
}

Napi::Value EngineWrap::Sources(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sp_engine* e = Idle(env, "sources");
  Napi::Array out = Napi::Array::New(env);
  for (size_t i = 0; i < sp_source_count(e); i++) {
    sp_source_info s;
    if (sp_source_get(e, i, &s) == 0) out.Set((uint32_t)i, SourceToJs(env, s));
  }
  return out;
}

Napi::Value EngineWrap::Counters(const Napi::CallbackInfo& info) {
  sp_counters c;
  sp_engine_counters(Idle(info.Env(), "counters"), &c);
  return CountersToJs(info.Env(), c);
}

Napi::Value EngineWrap::Groups(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sp_engine* e = Idle(env, "groups");
  struct Ctx {
    Napi::Env env;
    Napi::Array out;
    uint32_t n;
  } ctx{env, Napi::Array::New(env), 0};
  int err = sp_engine_groups(
      e,
      [](void* p, const sp_group* g, const sp_group_member* m, size_t count) -> int {
        auto* c = static_cast<Ctx*>(p);
        char hash[17];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)g->hash);
        Napi::Object o = Napi::Object::New(c->env);
        o.Set("hash", hash);
        o.Set("mappings", g->mappings);
        o.Set("dupIndex", g->dup_index);
        Napi::Array members = Napi::Array::New(c->env, count);
        for (size_t i = 0; i < count; i++) {
          Napi::Object mo = Napi::Object::New(c->env);
          mo.Set("source", m[i].source);
          mo.Set("address", (double)m[i].address);
          members.Set((uint32_t)i, mo);
        }
        o.Set("members", members);
        c->out.Set(c->n++, o);
        return 0;
      },
      &ctx);
  if (err) ThrowErrno(env, err, "groups");
  return ctx.out;
}

Napi::Value EngineWrap::Matrix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  sp_engine* e = Idle(env, "matrix");
  size_t n = sp_source_count(e);
  std::vector<uint64_t> m(n * n);
  int err = sp_engine_sharing_matrix(e, m.data(), n);
  if (err) ThrowErrno(env, err, "matrix");
  Napi::Array rows = Napi::Array::New(env, n);
  for (size_t i = 0; i < n; i++) {
    Napi::Array row = Napi::Array::New(env, n);
    for (size_t j = 0; j < n; j++) row.Set((uint32_t)j, (double)m[i * n + j]);
    rows.Set((uint32_t)i, row);
  }
  return rows;
}

Napi::Value EngineWrap::UnmergeAll(const Napi::CallbackInfo& info) {
  sp_engine_unmerge_all(Idle(info.Env(), "unmergeAll"));
  return info.Env().Undefined();
}

// scan({ passes?, pages?, intervalMs? }, onProgress?)
Napi::Value EngineWrap::Scan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Idle(env, "scan");
  Napi::Object opts = info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(env);
  auto job = std::make_shared<ScanJob>(ScanJob{Napi::Promise::Deferred::New(env), Napi::FunctionReference(),
                                               OptionalCount(opts, "passes", 1, 1u << 30),
                                               OptionalCount(opts, "pages", 0, 1ull << 50), false,
                                               (uint32_t)OptionalCount(opts, "intervalMs", 0, 86400000)});
  job->step_mode = job->pages_left > 0;
  if (!job->step_mode && job->passes_left == 0) job->finished = true;
  if (info.Length() > 1 && info[1].IsFunction()) job->on_progress = Napi::Persistent(info[1].As<Napi::Function>());
  Napi::Promise promise = job->deferred.Promise();
  BeginTask();
  NextSlice(job);
  return promise;
}

void EngineWrap::NextSlice(std::shared_ptr<ScanJob> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    executing_ = true;
  }
  auto* worker = new SliceWorker(this, Value(), std::move(job));
  worker->Queue();
}

bool EngineWrap::CanCallIntoJs(Napi::Env env) {
  // napi_call_function refuses (napi_pending_exception) once the
  // environment stops running JavaScript, which is how teardown shows.
  napi_value result;
  napi_status st = napi_call_function(env, env.Undefined(), noop_.Value(), 0, nullptr, &result);
  return st == napi_ok;
}

// cachePass(paths: string[], act: boolean): Promise<object>
Napi::Value EngineWrap::CachePass(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Idle(env, "cachePass");
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "cachePass(paths, act): paths must be an array of strings");
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<std::string> paths;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    if (!v.IsString()) throw Napi::TypeError::New(env, "cachePass: paths[" + std::to_string(i) + "] must be a string");
    paths.push_back(v.As<Napi::String>().Utf8Value());
  }
  bool act = info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  auto* worker = new CacheWorker(this, Value(), std::move(paths), act);
  Napi::Promise promise = worker->Promise();
  BeginTask();
  worker->Queue();
  return promise;
}

Napi::Value EngineWrap::Cancel(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(mu_);
  if (busy_) {
    cancelled_ = true;
    if (engine_) sp_engine_cancel(engine_);
    cv_.notify_all();
  }
  return info.Env().Undefined();
}

Napi::Value EngineWrap::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  if (busy_) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      if (engine_) sp_engine_cancel(engine_);
      cv_.notify_all();
    }
    close_waiters_.push_back(deferred);
  } else {
    Destroy();
    deferred.Resolve(env.Undefined());
  }
  return deferred.Promise();
}

Napi::Value EngineWrap::Busy(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), busy_);
}

}  // namespace samepage
