// convert.h - C structs of the engine to and from plain JS values (main
// thread only).
#ifndef SAMEPAGE_ADDON_CONVERT_H
#define SAMEPAGE_ADDON_CONVERT_H

#include <napi.h>

#include <string>

extern "C" {
#include "samepage.h"
}

namespace samepage {

// An Error with .code ("ESRCH") and .errno (positive), thrown from a
// negative errno the engine returned.  `what` names the operation.
Napi::Error ErrnoError(Napi::Env env, int negative_errno, const std::string& what);
[[noreturn]] void ThrowErrno(Napi::Env env, int negative_errno, const std::string& what);

// Settings: missing keys keep the values in `base`.  Throws TypeError or
// RangeError naming the key.
sp_settings SettingsFromJs(const Napi::Object& obj, const sp_settings& base);
Napi::Object SettingsToJs(Napi::Env env, const sp_settings& s);

Napi::Object CountersToJs(Napi::Env env, const sp_counters& c);
Napi::Object SourceToJs(Napi::Env env, const sp_source_info& s);
Napi::Object ProgressToJs(Napi::Env env, const sp_progress& p, const sp_counters& c);
Napi::Object LiveToJs(Napi::Env env, const sp_live_process& p);
Napi::Object CacheResultToJs(Napi::Env env, const sp_cache_result& r);

// Optional string argument (undefined/null -> empty).
std::string OptionalString(const Napi::Value& v, const char* what);

}  // namespace samepage

#endif
