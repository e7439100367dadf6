/**
 * Server block keys (`[SCHEME://]ZONE[:PORT]`) and plugin zone arguments,
 * normalised as CoreDNS does (core/dnsserver/register.go, plugin/normalize.go,
 * plugin/pkg/cidr).
 *
 * @module
 */

import { fqdn, isDomainName } from "../dns/name.ts";
import { parseIPv4, parseIPv6 } from "../go/ip.ts";
import { atoi64, quote } from "../go/strconv.ts";
import { CorefileError, type Token } from "./types.ts";

/** A transport a server block key can name. idetcd itself serves only `dns`. */
export type Scheme = "dns" | "tls" | "quic" | "grpc" | "https" | "https3" | "unix";

/** One zone a server block serves, on one transport and port. */
export interface ServerKey {
  /** The transport the key names (`dns` without a scheme). */
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

// ---------------------------------------------------------------------------
// net.ParseCIDR (netip.ParseAddr rules) on bigints.

interface Cidr {
  /** 32 or 128. */
  bits: number;
  ones: number;
  /** The network address (host bits cleared). */
  network: bigint;
}

function toBigInt(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const b of bytes) value = (value << 8n) | BigInt(b);
  return value;
}

function parseCidr(s: string): Cidr | undefined {
  const slash = s.indexOf("/");
  if (slash < 0) return undefined;
  const addr = s.slice(0, slash);
  const maskText = s.slice(slash + 1);
  let bytes: Uint8Array | undefined;
  // netip.ParseAddr picks the family from the first '.' or ':'; a zone makes ParseCIDR fail.
  const family = /[.:%]/.exec(addr)?.[0];
  if (family === ".") bytes = parseIPv4(addr);
  else if (family === ":") bytes = parseIPv6(addr);
  if (bytes === undefined) return undefined;
  const ip = toBigInt(bytes);
  const bits = bytes.length * 8;
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

/** Result of {@link splitHostPort}: the zones (several for a split CIDR) and the port text. */
interface HostPort {
  hosts: string[];
  /** Decimal port as Go's strconv.Itoa prints it; "" when none was given. */
  port: string;
}

// Go's strconv.Atoi (64-bit int), or undefined.
function atoiOrUndefined(text: string): bigint | undefined {
  try {
    return atoi64(text);
  } catch {
    return undefined;
  }
}

/** plugin.SplitHostPort: port split, zone validation and CIDR expansion; throws Error. */
function splitHostPort(input: string): HostPort {
  let s = input;
  let port = "";
  const colon = s.lastIndexOf(":");
  if (colon === s.length - 1) throw new Error(`expecting data after last colon: ${quote(s)}`);
  if (colon !== -1) {
    const p = atoiOrUndefined(s.slice(colon + 1));
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
