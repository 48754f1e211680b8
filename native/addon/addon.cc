// addon.cc - the module: the Engine class and the process-level calls
// (live KSM view, in-process merging, the KSM lock).  Everything that may
// block runs on the thread pool with its inputs copied first.
#include <napi.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "convert.h"
#include "engine_wrap.h"
#include "memory_pin.h"

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif

namespace samepage {
namespace {

class LiveWorker : public Napi::AsyncWorker {
 public:
  LiveWorker(Napi::Env env, std::vector<pid_t> pids, uint32_t flags)
      : Napi::AsyncWorker(env, "samepage:live"),
        deferred_(Napi::Promise::Deferred::New(env)),
        pids_(std::move(pids)),
        flags_(flags),
        out_(pids_.size()),
        peers_(pids_.size() * pids_.size()) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    err_ = sp_live_processes(pids_.data(), pids_.size(), flags_, out_.data(), peers_.data());
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      deferred_.Reject(ErrnoError(env, err_, "reading /proc/PID/pagemap and /proc/kpageflags").Value());
      return;
    }
    size_t n = out_.size();
    Napi::Array arr = Napi::Array::New(env, n);
    Napi::Array matrix = Napi::Array::New(env, n);
    for (size_t i = 0; i < n; i++) {
      arr.Set((uint32_t)i, LiveToJs(env, out_[i]));
      Napi::Array row = Napi::Array::New(env, n);
      for (size_t j = 0; j < n; j++) row.Set((uint32_t)j, (double)peers_[i * n + j]);
      matrix.Set((uint32_t)i, row);
    }
    Napi::Object result = Napi::Object::New(env);
    result.Set("processes", arr);
    result.Set("matrix", matrix);
    deferred_.Resolve(result);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::vector<pid_t> pids_;
  uint32_t flags_;
  std::vector<sp_live_process> out_;
  std::vector<uint64_t> peers_;
  int err_ = 0;
};

// liveProcesses(pids: number[], flags: number): Promise<{ processes, matrix }>
Napi::Value LiveProcesses(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "liveProcesses(pids, flags): pids must be an array");
  Napi::Array arr = info[0].As<Napi::Array>();
  std::vector<pid_t> pids;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value v = arr.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (d < 1 || d != std::floor(d) || d > 4194304)
      throw Napi::RangeError::New(env, "liveProcesses: pids[" + std::to_string(i) + "] is not a process id");
    pids.push_back((pid_t)d);
  }
  if (pids.empty()) throw Napi::RangeError::New(env, "liveProcesses: give at least one pid");
  uint32_t flags = info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  auto* w = new LiveWorker(env, std::move(pids), flags);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// pageHash(page: Uint8Array of 4096 bytes): string (16 hex digits)
Napi::Value PageHash(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) throw Napi::TypeError::New(env, "pageHash(page): page must be a Uint8Array");
  Napi::Uint8Array page = info[0].As<Napi::Uint8Array>();
  if (page.ByteLength() != SP_PAGE_SIZE)
    throw Napi::RangeError::New(env, "pageHash(page): page must be exactly 4096 bytes");
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", (unsigned long long)sp_page_hash(page.Data()));
  return Napi::String::New(env, hex);
}

// setMemoryMerge(on: boolean): PR_SET_MEMORY_MERGE for this process.
Napi::Value SetMemoryMerge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBoolean()) throw Napi::TypeError::New(env, "setMemoryMerge(on): on must be a boolean");
  if (prctl(PR_SET_MEMORY_MERGE, info[0].As<Napi::Boolean>().Value() ? 1 : 0, 0, 0, 0))
    ThrowErrno(env, -errno, "prctl(PR_SET_MEMORY_MERGE)");
  return env.Undefined();
}

Napi::Value GetMemoryMerge(const Napi::CallbackInfo& info) {
  int r = prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0);
  if (r < 0) ThrowErrno(info.Env(), -errno, "prctl(PR_GET_MEMORY_MERGE)");
  return Napi::Boolean::New(info.Env(), r == 1);
}

// allocMergeable(bytes): page-aligned anonymous memory marked
// MADV_MERGEABLE, as an ArrayBuffer; unmapped when it is collected.
Napi::Value AllocMergeable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double d = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
  if (d < SP_PAGE_SIZE || d != std::floor(d) || d > (double)(1ull << 40))
    throw Napi::RangeError::New(env, "allocMergeable(bytes): bytes must be an integer of at least 4096");
  size_t len = ((size_t)d + SP_PAGE_SIZE - 1) & ~(size_t)(SP_PAGE_SIZE - 1);
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) ThrowErrno(env, -errno, "allocMergeable: mmap");
  bool nohuge = info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  // Exact page counts need small pages: KSM splits THPs it merges, and
  // the zero subpages of a split THP bypass KSM's counters.
  if (nohuge) madvise(p, len, MADV_NOHUGEPAGE);
  if (madvise(p, len, MADV_MERGEABLE)) {
    int e = errno;
    munmap(p, len);
    ThrowErrno(env, -e, "allocMergeable: madvise(MADV_MERGEABLE)");
  }
  // Registered so that addMemory() scans it in place (Node never detaches
  // an external buffer, see memory_pin.h); unregistered before the unmap.
  RegisterMergeable(p, len);
  return Napi::ArrayBuffer::New(
      env, p, len, [](Napi::Env, void* data, size_t* hint) {
        UnregisterMergeable(data);
        munmap(data, *hint);
        delete hint;
      },
      new size_t(len));
}

// A held lock: the descriptor stays inside this object, so release() can
// only close what lockFile() opened.  Not released when collected: a lock
// whose release function is dropped stays held until the process exits.
class FileLock : public Napi::ObjectWrap<FileLock> {
 public:
  struct Token {
    int fd;
  };
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "FileLock",
                       {InstanceMethod("release", &FileLock::Release),
                        InstanceAccessor("held", &FileLock::Held, nullptr)});
  }
  // Made only by lockFile(): JavaScript cannot forge the External token.
  explicit FileLock(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FileLock>(info) {
    if (!info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "FileLock is made by lockFile()");
    fd_ = info[0].As<Napi::External<Token>>().Data()->fd;
  }

 private:
  Napi::Value Release(const Napi::CallbackInfo& info) {
    if (fd_ >= 0) close(fd_);  // closing the only descriptor drops the flock
    fd_ = -1;
    return info.Env().Undefined();
  }
  Napi::Value Held(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), fd_ >= 0); }
  int fd_ = -1;
};

struct AddonData {
  Napi::FunctionReference file_lock;
};

class LockWorker : public Napi::AsyncWorker {
 public:
  LockWorker(Napi::Env env, std::string path)
      : Napi::AsyncWorker(env, "samepage:lock"), deferred_(Napi::Promise::Deferred::New(env)), path_(std::move(path)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    fd_ = open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      err_ = -errno;
      step_ = "open";
      return;
    }
    // Blocks while another process holds it; any other failure (EBADF,
    // ENOLCK, EIO, a filesystem that refuses flock) is an error, never a
    // lock we would then wrongly believe held.
    int r;
    while ((r = flock(fd_, LOCK_EX)) != 0 && errno == EINTR) {
    }
    if (r != 0) {
      err_ = -errno;
      step_ = "flock";
      close(fd_);
      fd_ = -1;
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      // The system's words and the errno's name: these are not the
      // engine's errors, which sp_strerror() words.
      Napi::Error err = ErrnoError(env, err_, "lock " + path_);
      std::string code = err.Get("code").ToString().Utf8Value();
      err.Set("message", Napi::String::New(env, "lock " + path_ + ": " + step_ + " failed: " +
                                                    strerror(-err_) + " (" + code + ")"));
      deferred_.Reject(err.Value());
      return;
    }
    Token token{fd_};
    auto* data = env.GetInstanceData<AddonData>();
    deferred_.Resolve(data->file_lock.New({Napi::External<FileLock::Token>::New(env, &token)}));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  using Token = FileLock::Token;
  Napi::Promise::Deferred deferred_;
  std::string path_;
  const char* step_ = "";
  int fd_ = -1;
  int err_ = 0;
};

// lockFile(path): Promise<FileLock> - an exclusive flock, held until
// lock.release() or the process exits.  Programs and tests that change the
// host's KSM settings take /run/lock/samepage-ksm.lock, like the C tests.
Napi::Value LockFile(const Napi::CallbackInfo& info) {
  if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "lockFile(path): path must be a string");
  auto* w = new LockWorker(info.Env(), info[0].As<Napi::String>().Utf8Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Engine", EngineWrap::Init(env));
  exports.Set("liveProcesses", Napi::Function::New(env, LiveProcesses));
  exports.Set("pageHash", Napi::Function::New(env, PageHash));
  exports.Set("setMemoryMerge", Napi::Function::New(env, SetMemoryMerge));
  exports.Set("getMemoryMerge", Napi::Function::New(env, GetMemoryMerge));
  exports.Set("allocMergeable", Napi::Function::New(env, AllocMergeable));
  exports.Set("lockFile", Napi::Function::New(env, LockFile));
  auto* data = new AddonData();
  data->file_lock = Napi::Persistent(FileLock::Init(env));
  env.SetInstanceData(data);
  Napi::Object flags = Napi::Object::New(env);
  flags.Set("PROC_ALL_ANON", SP_PROC_ALL_ANON);
  flags.Set("PROC_GUEST_RAM_ONLY", SP_PROC_GUEST_RAM_ONLY);
  flags.Set("PROC_THP_ZERO_APART", SP_PROC_THP_ZERO_APART);
  flags.Set("PROC_SOFT_DIRTY", SP_PROC_SOFT_DIRTY);
  flags.Set("DUMP_RAW", SP_DUMP_RAW);
  flags.Set("CACHE_ACT", SP_CACHE_ACT);
  exports.Set("flags", flags);
  exports.Set("pageSize", SP_PAGE_SIZE);
  return exports;
}

}  // namespace
}  // namespace samepage

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return samepage::Init(env, exports);
}

NODE_API_MODULE(samepage, InitModule)
