// The public API of the samepage library.
export * from './errors.js';
export { kernelAtLeast, kernelRelease, parseKernelVersion } from './kernel.js';
export {
  COUNTER_NAMES,
  COUNTER_SPECS,
  SETTING_NAMES,
  SETTING_SPECS,
  formatSetting,
  parseSettingInput,
} from './ksm-files.js';
export {
  DEFAULT_KSM_ROOT,
  readKsm,
  readKsmCounters,
  readKsmSettings,
  restoreSettings,
  setKsm,
  snapshotSettings,
} from './sysfs.js';
export type {
  AdvisorMode,
  CounterName,
  KsmCounters,
  KsmOptions,
  KsmSettings,
  KsmSnapshot,
  KsmState,
  SettingName,
  SettingValue,
} from './sysfs.js';
export {
  USER_HZ,
  findKsmd,
  listPids,
  readCmdline,
  readComm,
  readExe,
  readKsmMergingPages,
  readKsmStat,
  readMaps,
  readMeminfo,
  readOpenFiles,
  readProcStat,
  readSmaps,
  readSmapsRollup,
  readStatus,
  readVmstat,
} from './procfs.js';
export type { IdSet, KsmStat, Mapping, OpenFile, ProcStat, ProcStatus, SmapsEntry, Vmstat } from './procfs.js';
export { parseKsmStat, parseMaps, parseSmaps } from './proc-parse.js';
export { findGuestRam } from './guest-ram.js';
export type { GuestRam } from './guest-ram.js';
export { findVm, listVms } from './vms.js';
export { QEMU_BINARY, qemuExeVerdict, type ExeVerdict } from './qemu-exe.js';
export { MAX_NAME_CHARS, boundText, escapeText } from './escape.js';
export type { NameSource, Vm, VmDisk, VmOptions } from './vms.js';
export { parseQemuArgs, parseQemuSize, splitOptionValue } from './qemu-cmdline.js';
export { native, packageRoot } from './binding.js';
export type { EngineCounters, NativeBinding } from './native.js';
export { Scanner } from './scanner.js';
export type { CachePassResult, MergeGroup, ProcessSourceOptions, ScanOptions, ScanProgress, ScanResult, ScannerSettings, SourceStats } from './scanner.js';
export { scrubCache, vmCacheFiles, type ScrubOptions, type ScrubResult } from './exclusive-cache.js';
export { estimateWorkingSets, type WssOptions, type WssPass, type WssReading } from './wss.js';
export { allocMergeable, getMemoryMerge, pageHash, setMemoryMerge } from './merging.js';
export type { MergeableOptions } from './merging.js';
export { livePages, liveSharing } from './live.js';
export type { LivePages, LiveSharing } from './live.js';
export { KSM_LOCK_PATH, lockKsm } from './ksm-lock.js';
export { HintTableError, countHints, planScan, readHintTable } from './hints.js';
export { DEFAULT_KEY_PATH, initFingerprintKey, keyIdOf, readFingerprintKey } from './fingerprint/key.js';
export type { FingerprintKey } from './fingerprint/key.js';
export { SketchBuilder, defaultEntries, distinctEstimate, sketchBuffer, sketchBytes } from './fingerprint/sketch.js';
export type { Sketch, SketchSource } from './fingerprint/sketch.js';
export { DEFAULT_KSM_MODEL, estimateColocation, estimateGroup, estimateOverlap } from './fingerprint/estimate.js';
export type { Colocation, GroupEstimate, KsmModel } from './fingerprint/estimate.js';
export { decodeSketches, encodeSketches, readSketchFile, writeSketchFile } from './fingerprint/file.js';
export type { SketchFile } from './fingerprint/file.js';
export { FINGERPRINT_PATH, fetchSketches } from './fingerprint/remote.js';
export type { FetchSketchOptions } from './fingerprint/remote.js';
export { fingerprintVm, fingerprintVms } from './fingerprint/guest.js';
export type { FingerprintFailure, FingerprintOptions, FingerprintResult, VmSketch } from './fingerprint/guest.js';
export { PLACEMENT_METHOD, advisePlacement } from './fingerprint/placement.js';
export type { HostPlan, Move, Placement, PlacementAdvice, PlacementOptions } from './fingerprint/placement.js';
