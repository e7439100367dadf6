/**
 * The CoreDNS etcd plugin's parseTTL (`min-lease-ttl`, `max-lease-ttl`):
 * seconds or a Go duration, whole seconds within uint32.
 *
 * @module
 */

import { parseDurationNanos, toSeconds } from "../go/time.ts";

/**
 * The etcd plugin's parseTTL for min-lease-ttl / max-lease-ttl: trimmed; ""
 * is 0; a bare unsigned integer is seconds; otherwise a Go duration truncated
 * to whole seconds. Negative or above 4294967295 s throws.
 */
export function parseTTL(text: string): number {
  let s = text.trim();
  if (s === "") return 0;
  // strconv.ParseUint(s, 10, 64): digits only, within uint64.
  if (/^[0-9]+$/.test(s) && BigInt(s) <= 0xffff_ffff_ffff_ffffn) s += "s";
  let seconds: number;
  try {
    seconds = toSeconds(parseDurationNanos(s));
  } catch {
    throw new Error("invalid TTL format, use format like '30', '30s', '5m', '1h', or '2h30m'");
  }
  if (seconds < 0) throw new Error("TTL must be non-negative");
  if (seconds > 4294967295) throw new Error("TTL too large, maximum is 4294967295 seconds");
  return Math.trunc(seconds);
}
