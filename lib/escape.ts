// Text that came from other processes (VM names, command lines, disk paths, comm) made safe to show:
// on a terminal, in a log line, in an error message. Any process can call itself anything, so a
// name may carry terminal escape sequences (clear the screen, move the cursor, retitle the
// window), newlines (a forged second log line or table row), bidi overrides (text that reads
// differently than it sorts) or 100 KB of padding. One function escapes, one bounds; every
// printer uses them. JSON output needs neither escape (JSON.stringify escapes control characters)
// but does get bounded values, because the names are bounded where they are read (lib/vms.ts).

/**
 * Characters shown escaped: C0 controls, DEL and C1 controls (0x9b is a one-byte CSI on some
 * terminals), the backslash itself (so an escaped text reads back unambiguously), the bidi marks,
 * embeddings, overrides and isolates (U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069), the
 * Unicode line and paragraph separators, and lone UTF-16 surrogates (not valid UTF-8 on output).
 */
const UNSAFE =
  /[\u0000-\u001f\u007f-\u009f\\\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t', '\\': '\\\\' };

function escapeOne(c: string): string {
  const named = NAMED[c];
  if (named !== undefined) return named;
  const code = c.charCodeAt(0);
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * `text` with every character that could act on a terminal or split a line written as visible
 * escapes: ESC as `\x1b`, newline as `\n`, other controls as `\xNN`, bidi controls as `\uNNNN`,
 * a backslash as `\\`. Printable text, including non-Latin scripts and emoji, is left as it is.
 */
export function escapeText(text: string): string {
  return text.replace(UNSAFE, escapeOne);
}

/** Longest VM name kept, in UTF-16 code units; QEMU itself does not limit -name. */
export const MAX_NAME_CHARS = 256;

/**
 * `text` cut to at most `max` UTF-16 code units (never inside a surrogate pair), with a marker that
 * says how much was cut: "aaaa…[+99744 chars]". Text within the bound is returned as it is.
 */
export function boundText(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end--; // keep a surrogate pair whole
  return `${text.slice(0, end)}…[+${text.length - end} chars]`;
}
