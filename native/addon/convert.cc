// convert.cc - see convert.h.
#include "convert.h"

#include <cerrno>
#include <cmath>
#include <cstring>

namespace samepage {

static const char* ErrnoName(int e) {
  switch (e) {
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case ESRCH: return "ESRCH";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case EBUSY: return "EBUSY";
    case ENODATA: return "ENODATA";
    case ECANCELED: return "ECANCELED";
    case ENOEXEC: return "ENOEXEC";
    case EISDIR: return "EISDIR";
    case EIO: return "EIO";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case E2BIG: return "E2BIG";
    case EWOULDBLOCK: return "EWOULDBLOCK";
    case EBADF: return "EBADF";
    case ENOLCK: return "ENOLCK";
    case ENOTDIR: return "ENOTDIR";
    case EROFS: return "EROFS";
    case ENOSPC: return "ENOSPC";
    case EINTR: return "EINTR";
    default: return "EUNKNOWN";
  }
}

Napi::Error ErrnoError(Napi::Env env, int negative_errno, const std::string& what) {
  int e = -negative_errno;
  Napi::Error err = Napi::Error::New(env, what + ": " + sp_strerror(negative_errno));
  err.Set("code", Napi::String::New(env, ErrnoName(e)));
  err.Set("errno", Napi::Number::New(env, e));
  return err;
}

void ThrowErrno(Napi::Env env, int negative_errno, const std::string& what) {
  throw ErrnoError(env, negative_errno, what);
}

static uint64_t NonNegativeInteger(const Napi::Object& obj, const char* key, uint64_t min,
                                   uint64_t max, uint64_t fallback) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(obj.Env(), std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || d < (double)min || d > (double)max)
    throw Napi::RangeError::New(obj.Env(), std::string(key) + " must be an integer from " +
                                               std::to_string(min) + " to " + std::to_string(max) +
                                               ", got " + v.ToString().Utf8Value());
  return (uint64_t)d;
}

static bool Boolean(const Napi::Object& obj, const char* key, bool fallback) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) throw Napi::TypeError::New(obj.Env(), std::string(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

sp_settings SettingsFromJs(const Napi::Object& obj, const sp_settings& base) {
  sp_settings s = base;
  s.pages_to_scan = (uint32_t)NonNegativeInteger(obj, "pagesToScan", 0, UINT32_MAX, s.pages_to_scan);
  s.max_page_sharing =
      (uint32_t)NonNegativeInteger(obj, "maxPageSharing", 2, UINT32_MAX, s.max_page_sharing);
  s.use_zero_pages = Boolean(obj, "useZeroPages", s.use_zero_pages);
  s.smart_scan = Boolean(obj, "smartScan", s.smart_scan);
  s.lookahead = Boolean(obj, "lookahead", s.lookahead);
  s.content_cache_bytes =
      NonNegativeInteger(obj, "contentCacheBytes", 0, 1ull << 40, s.content_cache_bytes);
  s.stable_node_chains_prune_millisecs = (uint32_t)NonNegativeInteger(
      obj, "stableNodeChainsPruneMillisecs", 0, UINT32_MAX, s.stable_node_chains_prune_millisecs);
  s.exact_trees = Boolean(obj, "exactTrees", s.exact_trees);
  s.lookahead_early = Boolean(obj, "lookaheadEarly", s.lookahead_early);
  return s;
}

Napi::Object SettingsToJs(Napi::Env env, const sp_settings& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("pagesToScan", s.pages_to_scan);
  o.Set("maxPageSharing", s.max_page_sharing);
  o.Set("useZeroPages", s.use_zero_pages);
  o.Set("smartScan", s.smart_scan);
  o.Set("lookahead", s.lookahead);
  o.Set("contentCacheBytes", (double)s.content_cache_bytes);
  o.Set("stableNodeChainsPruneMillisecs", s.stable_node_chains_prune_millisecs);
  o.Set("exactTrees", s.exact_trees);
  o.Set("lookaheadEarly", s.lookahead_early);
  return o;
}

// Counts stay exact as JS numbers up to 2^53 pages; KSM will not get there.
#define SET(o, key, value) (o).Set(key, Napi::Number::New(env, (double)(value)))

Napi::Object CountersToJs(Napi::Env env, const sp_counters& c) {
  Napi::Object o = Napi::Object::New(env);
  SET(o, "pages_shared", c.pages_shared);
  SET(o, "pages_sharing", c.pages_sharing);
  SET(o, "pages_unshared", c.pages_unshared);
  SET(o, "pages_volatile", c.pages_volatile);
  SET(o, "pages_skipped", c.pages_skipped);
  SET(o, "pages_scanned", c.pages_scanned);
  SET(o, "full_scans", c.full_scans);
  SET(o, "stable_node_chains", c.stable_node_chains);
  SET(o, "stable_node_dups", c.stable_node_dups);
  SET(o, "ksm_zero_pages", c.ksm_zero_pages);
  SET(o, "general_profit", c.general_profit);
  SET(o, "rmap_items", c.rmap_items);
  SET(o, "page_compares", c.page_compares);
  SET(o, "full_compares", c.full_compares);
  SET(o, "bytes_read", c.bytes_read);
  SET(o, "lookahead_hits", c.lookahead_hits);
  SET(o, "lookahead_misses", c.lookahead_misses);
  SET(o, "lookahead_early", c.lookahead_early);
  SET(o, "pages_lost", c.pages_lost);
  SET(o, "pages_unread", c.pages_unread);
  SET(o, "tracking_bytes", c.tracking_bytes);
  SET(o, "tracked_pages", c.tracked_pages);
  SET(o, "merged_contents", c.merged_contents);
  SET(o, "cache_bytes", c.cache_bytes);
  return o;
}

Napi::Object SourceToJs(Napi::Env env, const sp_source_info& s) {
  Napi::Object o = Napi::Object::New(env);
  SET(o, "id", s.id);
  o.Set("kind", s.kind == SP_SOURCE_MEMORY ? "memory" : s.kind == SP_SOURCE_PROCESS ? "process" : "dump");
  SET(o, "pid", s.pid);
  o.Set("name", s.name);
  SET(o, "ranges", s.ranges);
  SET(o, "pages", s.pages);
  SET(o, "present_pages", s.present_pages);
  SET(o, "rmap_items", s.rmap_items);
  SET(o, "merging_pages", s.merging_pages);
  SET(o, "zero_pages", s.zero_pages);
  SET(o, "profit", s.profit);
  SET(o, "thp_zero_pages", s.thp_zero_pages);
  SET(o, "pages_lost", s.pages_lost);
  SET(o, "guest_ram_start", s.guest_ram_start);
  SET(o, "guest_ram_bytes", s.guest_ram_bytes);
  if (s.error) o.Set("error", ErrnoError(env, s.error, std::string("source ") + s.name).Value());
  return o;
}

Napi::Object ProgressToJs(Napi::Env env, const sp_progress& p, const sp_counters& c) {
  Napi::Object o = Napi::Object::New(env);
  SET(o, "pass", p.pass);
  SET(o, "passPages", p.pass_pages);
  SET(o, "passTotal", p.pass_total);
  SET(o, "pagesScanned", p.pages_scanned);
  o.Set("counters", CountersToJs(env, c));
  return o;
}

Napi::Object LiveToJs(Napi::Env env, const sp_live_process& p) {
  Napi::Object o = Napi::Object::New(env);
  SET(o, "pid", p.pid);
  if (p.error) o.Set("error", ErrnoError(env, p.error, "process " + std::to_string(p.pid)).Value());
  SET(o, "scanned_pages", p.scanned_pages);
  SET(o, "present_pages", p.present_pages);
  SET(o, "swapped_pages", p.swapped_pages);
  SET(o, "ksm_pages", p.ksm_pages);
  SET(o, "zero_pages", p.zero_pages);
  SET(o, "thp_pages", p.thp_pages);
  o.Set("saved_pages", p.saved_pages);
  if (p.top_peer != UINT32_MAX) {
    SET(o, "top_peer", p.top_peer);
    SET(o, "top_peer_pages", p.top_peer_pages);
  }
  return o;
}

Napi::Object CacheResultToJs(Napi::Env env, const sp_cache_result& r) {
  Napi::Object o = Napi::Object::New(env);
  SET(o, "files", r.files);
  SET(o, "cache_pages_total", r.cache_pages_total);
  SET(o, "cache_pages_checked", r.cache_pages_checked);
  SET(o, "cache_pages_in_guest", r.cache_pages_in_guest);
  SET(o, "cache_pages_dropped", r.cache_pages_dropped);
  SET(o, "cache_bytes_reclaimed", r.cache_bytes_reclaimed);
  SET(o, "dirty_skipped", r.dirty_skipped);
  SET(o, "errors", r.errors);
  return o;
}

std::string OptionalString(const Napi::Value& v, const char* what) {
  if (v.IsUndefined() || v.IsNull()) return std::string();
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

}  // namespace samepage
