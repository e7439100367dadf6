/**
 * The `cache` directive: Corefile tokens -> {@link CacheOptions}, with
 * CoreDNS's defaults and error texts (plugin/cache/setup.go).
 *
 * @module
 */

import { type Dispenser, onlyOnce } from "../../corefile/dispenser.ts";
import type { Directive, Token } from "../../corefile/types.ts";
import { normalizeZones } from "../../corefile/keys.ts";
import { parseDuration } from "../../go/time.ts";
import { fqdn, lowerName } from "../../dns/name.ts";
import { type CacheOptions, defaultOptions, effectiveCapacity } from "./cache.ts";

/** The plugin name, as errors and logs show it. */
export const PLUGIN = "cache";

/** Go's strconv.Atoi of `tok`, with its error text, raised at `tok`. */
function atoi(d: Dispenser, tok: Token): number {
  if (!/^[+-]?\d+$/.test(tok.text)) {
    throw d.err(`strconv.Atoi: parsing "${tok.text}": invalid syntax`, tok);
  }
  const n = Number(tok.text);
  if (Math.abs(n) >= 2 ** 63) {
    throw d.err(`strconv.Atoi: parsing "${tok.text}": value out of range`, tok);
  }
  return n;
}

function duration(d: Dispenser, tok: Token): number {
  try {
    return parseDuration(tok.text);
  } catch (err) {
    throw d.err((err as Error).message, tok);
  }
}

/** `success|denial CAPACITY [TTL] [MINTTL]`: [capacity, maxTTL?, minTTL?]. */
function capacityLine(line: Dispenser): [number, number?, number?] {
  const args = line.args;
  if (args.length === 0) throw line.argErr();
  const capacity = atoi(line, args[0]);
  if (args.length < 2) return [capacity];
  const ttl = atoi(line, args[1]);
  // 0 and below are reserved, as in CoreDNS.
  if (ttl <= 0) throw line.err(`cache TTL can not be zero or negative: ${ttl}`, args[1]);
  if (args.length < 3) return [capacity, ttl];
  const min = atoi(line, args[2]);
  if (min < 0) throw line.err(`cache min TTL can not be negative: ${min}`, args[2]);
  return [capacity, ttl, min];
}

function parseOption(o: CacheOptions, line: Dispenser): void {
  const args = line.args;
  switch (line.name.text) {
    case "success": {
      const [capacity, ttl, min] = capacityLine(line);
      o.successCapacity = capacity;
      if (ttl !== undefined) o.successMaxTTL = ttl;
      if (min !== undefined) o.successMinTTL = min;
      return;
    }
    case "denial": {
      const [capacity, ttl, min] = capacityLine(line);
      o.denialCapacity = capacity;
      if (ttl !== undefined) o.denialMaxTTL = ttl;
      if (min !== undefined) o.denialMinTTL = min;
      return;
    }
    case "prefetch": {
      if (args.length === 0 || args.length > 3) throw line.argErr();
      const amount = atoi(line, args[0]);
      if (amount < 0) throw line.err(`prefetch amount should be positive: ${amount}`, args[0]);
      o.prefetch = amount;
      if (args.length > 1) o.prefetchWindow = duration(line, args[1]);
      if (args.length > 2) {
        const pct = args[2].text;
        const last = pct[pct.length - 1];
        if (last !== "%") {
          throw line.err(
            `last character of percentage should be \`%\`, but is: '${last}'`,
            args[2],
          );
        }
        const num = atoi(line, { ...args[2], text: pct.slice(0, -1) });
        if (num < 10 || num > 90) {
          throw line.err(`percentage should fall in range [10, 90]: ${num}`, args[2]);
        }
        o.prefetchPercentage = num;
      }
      return;
    }
    case "serve_stale": {
      if (args.length > 2) throw line.argErr();
      o.staleUpTo = 3600;
      if (args.length > 0) {
        const d = duration(line, args[0]);
        if (d < 0) throw line.err("invalid negative duration for serve_stale", args[0]);
        o.staleUpTo = d;
      }
      o.verifyStale = false;
      if (args.length > 1) {
        const mode = args[1].text.toLowerCase();
        if (mode !== "immediate" && mode !== "verify") {
          throw line.err(`invalid value for serve_stale refresh mode: ${mode}`, args[1]);
        }
        o.verifyStale = mode === "verify";
      }
      return;
    }
    case "servfail": {
      if (args.length !== 1) throw line.argErr();
      const d = duration(line, args[0]);
      if (d < 0) throw line.err("invalid negative ttl for servfail", args[0]);
      // RFC 2308 prohibits caching SERVFAIL longer than 5 minutes.
      if (d > 300) {
        throw line.err("caching SERVFAIL responses over 5 minutes is not permitted", args[0]);
      }
      o.servfailTTL = d;
      return;
    }
    case "disable": {
      if (args.length < 1) throw line.argErr();
      const zones = args.length > 1 ? args.slice(1).map((z) => lowerName(fqdn(z.text))) : ["."];
      if (args[0].text === "denial") o.denialExcept = zones;
      else if (args[0].text === "success") o.successExcept = zones;
      else throw line.err('cache type for disable must be "success" or "denial"', args[0]);
      return;
    }
    case "keepttl":
      if (args.length !== 0) throw line.argErr();
      o.keepTTL = true;
      return;
    default:
      // CoreDNS answers unknown properties with ArgErr.
      throw line.argErr();
  }
}

/**
 * Parses the block's `cache` directives (only one is allowed) into
 * options; `blockZones` are the server block's zones, used when the
 * directive names none. Capacities are rounded as CoreDNS's shards do.
 */
export function parseCache(directives: Directive[], blockZones: string[]): CacheOptions {
  const d = onlyOnce(PLUGIN, directives);
  const o = defaultOptions();
  let args = d.args;
  // A first argument that is a number is the TTL; otherwise it is a zone.
  if (
    args.length > 0 && /^[+-]?\d+$/.test(args[0].text) && Math.abs(Number(args[0].text)) < 2 ** 63
  ) {
    const ttl = atoi(d, args[0]);
    if (ttl <= 0) throw d.err(`cache TTL can not be zero or negative: ${ttl}`, args[0]);
    o.successMaxTTL = ttl;
    o.denialMaxTTL = ttl;
    args = args.slice(1);
  }
  o.zones = normalizeZones(args.map((a) => a.text), blockZones);
  for (const line of d.blockLines()) parseOption(o, line);
  o.successCapacity = effectiveCapacity(o.successCapacity);
  o.denialCapacity = effectiveCapacity(o.denialCapacity);
  return o;
}
