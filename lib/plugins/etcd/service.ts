/**
 * The SkyDNS value format (CoreDNS `plugin/etcd/msg/service.go`, `type.go`)
 * and the per-record post-processing of `etcd.go`: JSON decoding with Go
 * semantics, host classification, TXT splitting, target stripping, groups
 * and TTLs.
 *
 * @module
 */

import { ipToString, parseIP, to4 } from "../../go/ip.ts";
import { Type } from "../../dns/types.ts";
import type { KeyValue, KeyValueSource } from "../../etcd/types.ts";
import { type GoStructSchema, goUnmarshalStruct } from "./gojson.ts";
import { nextLabel } from "../../dns/name.ts";

/** Default TTL when neither the record nor its lease gives one (etcd.go `ttl`). */
export const DEFAULT_TTL = 300;
/** Priority used when a record has none (etcd.go `priority`). */
export const DEFAULT_PRIORITY = 10;
/** min-lease-ttl when unset or 0. */
export const DEFAULT_MIN_LEASE_TTL = 30;
/** max-lease-ttl when unset or 0. */
export const DEFAULT_MAX_LEASE_TTL = 86400;

/** msg.Service as Go's encoding/json sees it. */
const SERVICE_SCHEMA: GoStructSchema = {
  typeName: "msg.Service",
  structName: "Service",
  fields: {
    host: "string",
    port: "int",
    priority: "int",
    weight: "int",
    text: "string",
    mail: "bool",
    ttl: "uint32",
    targetstrip: "int",
    group: "string",
  },
};

/** The fields of one etcd value, as json.Unmarshal fills msg.Service. */
export interface ServiceValue {
  /** An IP address (A/AAAA) or a name (CNAME, or the SRV/MX target). */
  host: string;
  /** Go int; -1 means "no port" (skipped for SRV). */
  port: number;
  /** Go int, as written; 0 is later replaced by the default 10. */
  priority: number;
  /** SRV weight among services of equal priority. */
  weight: number;
  /** TXT content; with no IP host it makes the record a TXT. */
  text: string;
  /** True when this service also answers MX queries. */
  mail: boolean;
  /** Go uint32. */
  ttl: number;
  /** Leftmost labels dropped from the SRV/MX/NS target name (JSON `targetstrip`). */
  targetStrip: number;
  /** Services answer together only when their groups agree (CoreDNS's msg.Group). */
  group: string;
  /** uint16(port), exact even for ints beyond 2^53. */
  port16: number;
  /** uint16(priority), exact even for ints beyond 2^53. */
  priority16: number;
}

/** Decodes a value as `json.Unmarshal(value, &msg.Service{})`; a string is Go's error text. */
export function decodeServiceValue(json: string): ServiceValue | string {
  const result = goUnmarshalStruct(json, SERVICE_SCHEMA);
  if (!result.ok) return result.error;
  const v = result.values;
  const int = (name: string) => v.get(name) as bigint | undefined ?? 0n;
  const port = int("port");
  const priority = int("priority");
  return {
    host: v.get("host") as string | undefined ?? "",
    port: Number(port),
    priority: Number(priority),
    weight: Number(int("weight")),
    text: v.get("text") as string | undefined ?? "",
    mail: v.get("mail") as boolean | undefined ?? false,
    ttl: Number(int("ttl")),
    targetStrip: Number(int("targetstrip")),
    group: v.get("group") as string | undefined ?? "",
    port16: Number(BigInt.asUintN(16, port)),
    priority16: Number(BigInt.asUintN(16, priority)),
  };
}

// ------------------------------------------------------------------ addresses

/** How a record's host is used (msg.Service.HostType). */
export interface HostType {
  /** Type.A, Type.AAAA, Type.CNAME (a name) or Type.TXT (a name or nothing, with text). */
  type: number;
  /** The address as text for A/AAAA ("1.2.3.4" also for "::ffff:1.2.3.4"), else "". */
  address: string;
}

/** msg.Service.HostType: an IP host wins over text and mail; otherwise text makes it TXT. */
export function hostType(host: string, text: string): HostType {
  const ip = parseIP(host);
  if (ip === undefined) return { type: text === "" ? Type.CNAME : Type.TXT, address: "" };
  // Go's ip.To4() != nil: IPv4 and v4-mapped addresses are A records, in dotted form.
  return { type: to4(ip) ? Type.A : Type.AAAA, address: ipToString(ip) };
}

// ----------------------------------------------------------------------- text

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** Whether every character is ASCII (so string offsets are byte offsets). */
function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

/**
 * msg.split255: 255-byte chunks; shorter than 255 bytes stays one string, and
 * an exact multiple of 255 ends with an empty string (the Go quirk).
 * A chunk boundary that would cut a UTF-8 character moves back to the
 * character's start, so each chunk stays valid text.
 */
export function split255(text: string): string[] {
  if (isAscii(text)) {
    if (text.length < 255) return [text];
    const chunks: string[] = [];
    for (let p = 0;; p += 255) {
      if (p + 255 <= text.length) {
        chunks.push(text.slice(p, p + 255));
      } else {
        chunks.push(text.slice(p));
        return chunks;
      }
    }
  }
  const bytes = utf8Encoder.encode(text);
  if (bytes.length < 255) return [text];
  const chunks: string[] = [];
  for (let p = 0;;) {
    let end = p + 255;
    if (end > bytes.length) {
      chunks.push(utf8Decoder.decode(bytes.subarray(p)));
      return chunks;
    }
    // Back off continuation bytes (10xxxxxx) so a character is never split.
    while (end < bytes.length && end > p && (bytes[end] & 0xc0) === 0x80) end--;
    chunks.push(utf8Decoder.decode(bytes.subarray(p, end)));
    p = end;
  }
}

/**
 * What miekg/dns puts on the wire for one TXT string: it reads the string in
 * presentation format, so `\"`, `\\` and `\DDD` escapes collapse and a
 * trailing lone backslash disappears.
 */
export function txtWireString(chunk: string): string {
  if (!chunk.includes("\\")) return chunk;
  let out = "";
  for (let i = 0; i < chunk.length; i++) {
    const c = chunk[i];
    if (c !== "\\") {
      out += c;
      continue;
    }
    i++;
    if (i === chunk.length) break;
    if (/^\d{3}/.test(chunk.slice(i, i + 3))) {
      out += String.fromCharCode(Number(chunk.slice(i, i + 3)) & 0xff);
      i += 2;
    } else {
      out += chunk[i];
    }
  }
  return out;
}

/** The TXT character-strings for a record's text (split255, then wire unescaping). */
export function txtStrings(text: string): string[] {
  const chunks = split255(text);
  return text.includes("\\") ? chunks.map(txtWireString) : chunks;
}

/**
 * msg.targetStrip: drops `count` leftmost labels of a fully qualified name;
 * when that overshoots the name, the name is kept whole.
 */
export function targetStrip(name: string, count: number): string {
  if (count <= 0) return name;
  let offset = 0;
  let end = false;
  for (let i = 0; i < count; i++) {
    [offset, end] = nextLabel(name, offset);
    // Once at the end, further steps stay there (Go would keep looping).
    if (end) break;
  }
  return end ? name : name.slice(offset);
}

// ------------------------------------------------------------------- services

/** One record after loopNodes: the decoded value plus its key, TTL and default priority. */
export interface Service {
  /** The etcd key it was read from; SRV, MX and NS targets are named after it. */
  readonly key: string;
  /** {@link ServiceValue.host} as stored. */
  readonly host: string;
  /** Go int; -1 means "no port" (skipped for SRV). */
  readonly port: number;
  /** uint16(port) as SRV carries it. */
  readonly port16: number;
  /** Priority with 0 replaced by 10. */
  readonly priority: number;
  /** uint16(priority) as SRV/MX carry it. */
  readonly priority16: number;
  /** SRV weight among services of equal priority. */
  readonly weight: number;
  /** TXT content (also the record's data when `kind` is TXT). */
  readonly text: string;
  /** True when this service also answers MX queries. */
  readonly mail: boolean;
  /** The answer TTL: the record's combined with its lease's ({@link computeTTL}). */
  readonly ttl: number;
  /** Leftmost labels dropped from the SRV/MX/NS target name. */
  readonly targetStrip: number;
  /** Services answer together only when their groups agree (CoreDNS's msg.Group). */
  readonly group: string;
  /** HostType's verdict: Type.A, Type.AAAA, Type.CNAME or Type.TXT. */
  readonly kind: number;
  /** The address text for A/AAAA hosts. */
  readonly address: string;
}

/**
 * e.TTL: the lease's remaining seconds clamped to [min, max] (0 means the
 * defaults 30 and 86400), combined with the record's own ttl: both 0 gives
 * 300, one 0 gives the other, else the smaller. An unknown or expired lease
 * counts as 0, as a failed TimeToLive does in CoreDNS.
 */
export function computeTTL(
  recordTTL: number,
  leaseRemaining: number | undefined,
  minLeaseTTL = 0,
  maxLeaseTTL = 0,
): number {
  let leaseTTL = 0;
  const remaining = leaseRemaining === undefined ? 0 : Math.floor(leaseRemaining);
  if (remaining > 0) {
    const min = minLeaseTTL || DEFAULT_MIN_LEASE_TTL;
    const max = maxLeaseTTL || DEFAULT_MAX_LEASE_TTL;
    leaseTTL = remaining;
    if (leaseTTL < min) leaseTTL = min;
    if (leaseTTL > max) leaseTTL = max;
    leaseTTL = leaseTTL >>> 0;
  }
  if (leaseTTL === 0 && recordTTL === 0) return DEFAULT_TTL;
  if (leaseTTL === 0) return recordTTL;
  if (recordTTL === 0) return leaseTTL;
  return leaseTTL < recordTTL ? leaseTTL : recordTTL;
}

/** A decoded key: its lease-free Service and raw record ttl, or the error `"<key>: <err>"`. */
export type Decoded =
  | { service: Service; recordTTL: number; error?: undefined }
  | { service?: undefined; recordTTL?: undefined; error: string };

// KeyValue objects are immutable and replaced on change, so the decoding of
// one object never goes stale; the WeakMap lets dropped versions be collected.
const decodedByKeyValue = new WeakMap<KeyValue, Decoded>();

/** Decodes `kv` once per KeyValue object; the Service's TTL is the lease-free one. */
export function decodeKeyValue(kv: KeyValue): Decoded {
  let decoded = decodedByKeyValue.get(kv);
  if (decoded === undefined) {
    const value = decodeServiceValue(kv.value);
    if (typeof value === "string") {
      decoded = { error: `${kv.key}: ${value}` };
    } else {
      const { type, address } = hostType(value.host, value.text);
      const zeroPriority = value.priority === 0;
      decoded = {
        recordTTL: value.ttl,
        service: {
          key: kv.key,
          host: value.host,
          port: value.port,
          port16: value.port16,
          priority: zeroPriority ? DEFAULT_PRIORITY : value.priority,
          priority16: zeroPriority ? DEFAULT_PRIORITY : value.priority16,
          weight: value.weight,
          text: value.text,
          mail: value.mail,
          ttl: computeTTL(value.ttl, undefined),
          targetStrip: value.targetStrip,
          group: value.group,
          kind: type,
          address,
        },
      };
    }
    decodedByKeyValue.set(kv, decoded);
  }
  return decoded;
}

/**
 * The Service for `kv` with its TTL for now: decoded once per KeyValue, the
 * lease consulted per call (leases tick down). Returns the error text for bad JSON.
 */
export function serviceOf(
  kv: KeyValue,
  source: KeyValueSource,
  minLeaseTTL: number,
  maxLeaseTTL: number,
): Service | string {
  const decoded = decodeKeyValue(kv);
  if (decoded.error !== undefined) return decoded.error;
  const base = decoded.service;
  if (!hasLease(kv)) return base;
  const remaining = source.leaseRemaining(kv.lease);
  const ttl = computeTTL(decoded.recordTTL, remaining, minLeaseTTL, maxLeaseTTL);
  return ttl === base.ttl ? base : { ...base, ttl };
}

/** Whether `kv` carries a lease (its TTL then changes over time). */
export function hasLease(kv: KeyValue): boolean {
  return kv.lease !== "0" && kv.lease !== "";
}

/** Number of "/" in a key (msg.Group compares depths this way). */
function slashes(key: string): number {
  let n = 0;
  for (let i = 0; i < key.length; i++) if (key.charCodeAt(i) === 0x2f) n++;
  return n;
}

/**
 * msg.Group: when the shallowest keys agree on a group, keep only that group
 * (plus group-less records); a disagreement at the shallowest level keeps all.
 */
export function group<T extends { readonly key: string; readonly group: string }>(
  services: T[],
): T[] {
  if (services.length === 0) return services;
  let chosen = services[0].group;
  let depth = slashes(services[0].key);
  // Depths past an early `break` stay 0, as the Go slice does.
  const depths = new Array<number>(services.length).fill(0);
  for (let i = 0; i < services.length; i++) {
    const x = slashes(services[i].key);
    depths[i] = x;
    if (x < depth) {
      if (services[i].group === "") break;
      depth = x;
      chosen = services[i].group;
    }
  }
  if (chosen === "") return services;
  const kept: T[] = [];
  for (let i = 0; i < services.length; i++) {
    const s = services[i];
    if (s.group === "") {
      kept.push(s);
      continue;
    }
    if (depths[i] === depth && s.group !== chosen) return services;
    if (s.group === chosen) kept.push(s);
  }
  return kept;
}
