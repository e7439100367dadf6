/**
 * Server block keys (`[SCHEME://]ZONE[:PORT]`) and plugin zone arguments,
 * normalised as CoreDNS does (core/dnsserver/register.go, plugin/normalize.go,
 * plugin/pkg/cidr).
 *
 * @module
 */

import { CorefileError, type Token } from "./types.ts";

/** A transport a server block key can name. idetcd itself serves only `dns`. */
export type Scheme = "dns" | "tls" | "quic" | "grpc" | "https" | "https3" | "unix";

/** One zone a server block serves, on one transport and port. */
export interface ServerKey {
  scheme: Scheme;
  /** Lower-case, fully qualified zone ("example.org.", "0.0.10.in-addr.arpa."). */
  zone: string;
  /** The port; 0 for `unix://` keys, which have none. */
  port: number;
  /** CoreDNS's zoneAddr form, e.g. "dns://example.org.:53". */
  canonical: string;
  /** The key token it came from, for error positions. */
  token: Token;
}

/** Default port per scheme when a key names none; dns uses the -dns.port value. */
export const SCHEME_DEFAULT_PORTS: Readonly<Record<Exclude<Scheme, "dns" | "unix">, number>> = {
  tls: 853,
  quic: 853,
  grpc: 443,
  https: 443,
  https3: 443,
};

const SCHEMES: readonly Scheme[] = ["tls", "dns", "quic", "grpc", "https3", "https", "unix"];

/** Splits off a `scheme://` prefix (parse.Transport); no known prefix means dns. */
export function splitScheme(text: string): { scheme: Scheme; rest: string } {
  for (const scheme of SCHEMES) {
    const prefix = scheme + "://";
    if (text.startsWith(prefix)) return { scheme, rest: text.slice(prefix.length) };
  }
  return { scheme: "dns", rest: text };
}

const encoder = new TextEncoder();

function byteLength(s: string): number {
  return encoder.encode(s).length;
}

/** miekg/dns IsFqdn: ends in a dot that is not itself escaped. */
function isFqdn(s: string): boolean {
  if (!s.endsWith(".")) return false;
  const body = s.slice(0, -1);
  let backslashes = 0;
  for (let i = body.length - 1; i >= 0 && body[i] === "\\"; i--) backslashes++;
  return backslashes % 2 === 0;
}

/** miekg/dns Fqdn: appends the trailing dot when missing. */
function fqdn(s: string): string {
  return isFqdn(s) ? s : s + ".";
}

function isDigitByte(b: number | undefined): boolean {
  return b !== undefined && b >= 0x30 && b <= 0x39;
}

/** miekg/dns IsDomainName: labels ≤ 63 octets, name ≤ 255 octets, no empty label. */
export function isDomainName(name: string): boolean {
  if (name === "") return false;
  const s = encoder.encode(fqdn(name));
  const maxLength = 256;
  let off = 0;
  let begin = 0;
  let wasDot = false;
  for (let i = 0; i < s.length; i++) {
    switch (s[i]) {
      case 0x5c: // backslash: \DDD or \X count as one octet
        if (off + 1 > maxLength) return false;
        if (
          i + 3 < s.length && isDigitByte(s[i + 1]) && isDigitByte(s[i + 2]) &&
          isDigitByte(s[i + 3])
        ) {
          i += 3;
          begin += 3;
        } else {
          i++;
          begin++;
        }
        wasDot = false;
        break;
      case 0x2e: {
        if (wasDot) return false;
        wasDot = true;
        const labelLength = i - begin;
        if (labelLength >= 64) return false;
        off += 1 + labelLength;
        if (off > maxLength) return false;
        begin = i + 1;
        break;
      }
      default:
        wasDot = false;
    }
  }
  return true;
}

// ---------------------------------------------------------------------------
// net.ParseCIDR (netip.ParseAddr rules) on bigints.

interface Cidr {
  /** 32 or 128. */
  bits: number;
  ones: number;
  /** The network address (host bits cleared). */
  network: bigint;
}

function parseIPv4(s: string): bigint | undefined {
  const fields = s.split(".");
  if (fields.length !== 4) return undefined;
  let value = 0n;
  for (const f of fields) {
    // netip rejects empty fields, leading zeros and values over 255.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(f)) return undefined;
    const n = Number(f);
    if (n > 255) return undefined;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseIPv6(s: string): bigint | undefined {
  if (s.includes("%")) return undefined; // a zone makes ParseCIDR fail
  const bytes = new Array<number>(16).fill(0);
  let rest = s;
  let ellipsis = -1;
  let i = 0;
  if (rest.startsWith("::")) {
    ellipsis = 0;
    rest = rest.slice(2);
    if (rest === "") return 0n;
  }
  while (i < 16) {
    const m = /^[0-9a-fA-F]*/.exec(rest)![0];
    if (m.length === 0 || m.length > 4) return undefined;
    if (rest[m.length] === ".") {
      // An embedded IPv4 address must fill the last 32 bits.
      if ((ellipsis < 0 && i !== 12) || i + 4 > 16) return undefined;
      const v4 = parseIPv4(rest);
      if (v4 === undefined) return undefined;
      bytes[i] = Number((v4 >> 24n) & 0xffn);
      bytes[i + 1] = Number((v4 >> 16n) & 0xffn);
      bytes[i + 2] = Number((v4 >> 8n) & 0xffn);
      bytes[i + 3] = Number(v4 & 0xffn);
      rest = "";
      i += 4;
      break;
    }
    const group = parseInt(m, 16);
    bytes[i] = group >> 8;
    bytes[i + 1] = group & 0xff;
    i += 2;
    rest = rest.slice(m.length);
    if (rest === "") break;
    if (rest[0] !== ":" || rest.length === 1) return undefined;
    rest = rest.slice(1);
    if (rest[0] === ":") {
      if (ellipsis >= 0) return undefined;
      ellipsis = i;
      rest = rest.slice(1);
      if (rest === "") break;
    }
  }
  if (rest !== "") return undefined;
  if (i < 16) {
    if (ellipsis < 0) return undefined;
    const shift = 16 - i;
    for (let j = i - 1; j >= ellipsis; j--) bytes[j + shift] = bytes[j];
    for (let j = ellipsis; j < ellipsis + shift; j++) bytes[j] = 0;
  } else if (ellipsis >= 0) {
    return undefined; // "::" must stand for at least one group
  }
  let value = 0n;
  for (const b of bytes) value = (value << 8n) | BigInt(b);
  return value;
}

function parseCidr(s: string): Cidr | undefined {
  const slash = s.indexOf("/");
  if (slash < 0) return undefined;
  const addr = s.slice(0, slash);
  const maskText = s.slice(slash + 1);
  let ip: bigint | undefined;
  let bits = 0;
  // netip.ParseAddr picks the family from the first '.' or ':'.
  const family = /[.:%]/.exec(addr)?.[0];
  if (family === ".") {
    ip = parseIPv4(addr);
    bits = 32;
  } else if (family === ":") {
    ip = parseIPv6(addr);
    bits = 128;
  }
  if (ip === undefined) return undefined;
  if (!/^[0-9]+$/.test(maskText) || maskText.length > 8) return undefined;
  const ones = Number(maskText);
  if (ones > bits) return undefined;
  const hostBits = BigInt(bits - ones);
  const network = (ip >> hostBits) << hostBits;
  return { bits, ones, network };
}

// cidr.Split then cidr.Reverse: the reverse zones covering the network.
function reverseZones(cidr: Cidr): string[] {
  const digitBits = cidr.bits === 32 ? 8 : 4;
  const prefix = Math.ceil(cidr.ones / digitBits) * digitBits;
  const count = 2 ** (prefix - cidr.ones);
  const step = 1n << BigInt(cidr.bits - prefix);
  const zones: string[] = [];
  for (let k = 0; k < count; k++) {
    const net = cidr.network + BigInt(k) * step;
    const labels: string[] = [];
    const digits = prefix / digitBits;
    for (let d = 0; d < digits; d++) {
      const shift = BigInt(cidr.bits - (d + 1) * digitBits);
      const value = Number((net >> shift) & ((1n << BigInt(digitBits)) - 1n));
      labels.push(digitBits === 8 ? String(value) : value.toString(16));
    }
    labels.reverse();
    labels.push(cidr.bits === 32 ? "in-addr.arpa." : "ip6.arpa.");
    zones.push(labels.join("."));
  }
  return zones;
}

// ---------------------------------------------------------------------------

/** Go's %q for an error message. */
function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
    else if (ch === " " || /[\p{L}\p{M}\p{N}\p{P}\p{S}]/u.test(ch)) out += ch;
    else if (c <= 0xffff) out += "\\u" + c.toString(16).padStart(4, "0");
    else out += "\\U" + c.toString(16).padStart(8, "0");
  }
  return out + '"';
}

/** Result of {@link splitHostPort}: the zones (several for a split CIDR) and the port text. */
interface HostPort {
  hosts: string[];
  /** Decimal port as Go's strconv.Itoa prints it; "" when none was given. */
  port: string;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

// Go's strconv.Atoi (64-bit int), or undefined.
function atoi(text: string): bigint | undefined {
  if (!/^[+-]?[0-9]+$/.test(text)) return undefined;
  const n = BigInt(text);
  return n < INT64_MIN || n > INT64_MAX ? undefined : n;
}

/** plugin.SplitHostPort: port split, zone validation and CIDR expansion; throws Error. */
function splitHostPort(input: string): HostPort {
  let s = input;
  let port = "";
  const colon = s.lastIndexOf(":");
  if (colon === s.length - 1) throw new Error(`expecting data after last colon: ${goQuote(s)}`);
  if (colon !== -1) {
    const p = atoi(s.slice(colon + 1));
    if (p !== undefined) {
      port = p.toString();
      s = s.slice(0, colon);
    }
  }
  const length = byteLength(s);
  if (length > 255) throw new Error(`specified zone is too long: ${length} > 255`);
  if (!isDomainName(s)) throw new Error(`zone is not a valid domain name: ${s}`);
  const cidr = parseCidr(s);
  if (cidr === undefined) return { hosts: [s], port };
  if (s[0] === ":" || (s[0] === "0" && s.includes(":"))) throw new Error(`invalid CIDR ${s}`);
  return { hosts: reverseZones(cidr), port };
}

function defaultPortFor(scheme: Scheme, dnsPort: number): string {
  if (scheme === "dns") return String(dnsPort);
  if (scheme === "unix") return "";
  return String(SCHEME_DEFAULT_PORTS[scheme]);
}

/**
 * Normalises one server block key into the zones it serves (a CIDR key can
 * expand into several reverse zones). `defaultPort` is the -dns.port value.
 * Throws CorefileError at the key token.
 */
export function parseKey(key: Token, defaultPort: number): ServerKey[] {
  const { scheme, rest } = splitScheme(key.text);
  let split: HostPort;
  try {
    split = splitHostPort(rest);
    // register.go re-checks each host fully qualified (length, labels).
    for (const host of split.hosts) splitHostPort(fqdn(host));
  } catch (err) {
    throw new CorefileError((err as Error).message, key);
  }
  const portText = split.port === "" ? defaultPortFor(scheme, defaultPort) : split.port;
  const port = portText === "" ? 0 : Number(portText);
  return split.hosts.map((host) => {
    const zone = fqdn(host).toLowerCase();
    return { scheme, zone, port, canonical: `${scheme}://${zone}:${portText}`, token: key };
  });
}

/**
 * Plugin zone arguments as CoreDNS's OriginsFromArgsOrServerBlock: scheme and
 * port stripped, lower-cased, fully qualified, CIDRs expanded, invalid ones
 * silently dropped. With no args, returns a copy of `blockZones` (the block's
 * already-normalised zones).
 */
export function normalizeZones(
  args: readonly string[],
  blockZones: readonly string[] = [],
): string[] {
  if (args.length === 0) return [...blockZones];
  const zones: string[] = [];
  for (const arg of args) {
    let split: HostPort;
    try {
      split = splitHostPort(splitScheme(arg).rest);
    } catch {
      continue;
    }
    for (const host of split.hosts) zones.push(fqdn(host).toLowerCase());
  }
  return zones;
}
