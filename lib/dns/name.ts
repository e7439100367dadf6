/**
 * Domain names in presentation format ("www.example.org.") with miekg/dns's
 * names and escaping rules: the one DNS-name vocabulary of idetcd. A `\.`
 * or `\DDD` escape is part of its label, never a separator, so every helper
 * here (fully qualifying, splitting, subdomain tests) agrees on where the
 * labels are.
 *
 * Names inside idetcd are always fully qualified. Comparisons are
 * case-insensitive (ASCII), as DNS requires.
 *
 * @module
 */

import { parseIPv4, parseIPv6 } from "../go/ip.ts";

/**
 * The index of the first label separator at or after `from`, skipping escaped
 * dots (`\.`) and other escapes; -1 when there is none.
 */
export function nextDot(name: string, from = 0): number {
  for (let i = from; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x5c) i++; // the escaped character (or the first digit of \DDD) is not a separator
    else if (c === 0x2e) return i;
  }
  return -1;
}

/**
 * miekg/dns `NextLabel`: the offset just after the next unescaped dot at or
 * after `offset`, and whether the end of the name was reached instead.
 */
export function nextLabel(name: string, offset: number): [number, boolean] {
  if (name === "") return [0, true];
  let i = offset;
  for (; i < name.length - 1; i++) {
    if (name.charCodeAt(i) !== 0x2e) continue;
    let j = i - 1;
    while (j >= 0 && name.charCodeAt(j) === 0x5c) j--;
    // An odd number of backslashes before the dot escapes it.
    if ((j - i) % 2 === 0) continue;
    return [i + 1, false];
  }
  return [i + 1, true];
}

/** Whether the dot at `index` is a label separator, not escaped (an even run of backslashes before it). */
function isSeparator(name: string, index: number): boolean {
  let slashes = 0;
  for (let i = index - 1; i >= 0 && name.charCodeAt(i) === 0x5c; i--) slashes++;
  return slashes % 2 === 0;
}

/** miekg/dns IsFqdn: whether the name ends in a dot that is not itself escaped ("a\\." is not). */
export function isFqdn(name: string): boolean {
  return name.endsWith(".") && isSeparator(name, name.length - 1);
}

/** miekg/dns Fqdn: appends the trailing dot when missing: "example.org" -> "example.org.", "a\\." -> "a\\..". */
export function fqdn(name: string): string {
  return isFqdn(name) ? name : name + ".";
}

/**
 * CoreDNS's dnsutil.Join: labels (or names) joined with dots and made fully
 * qualified; a last element of "." is the root ("hostmaster" + "." ->
 * "hostmaster."). An empty list is Go's index-out-of-range panic.
 */
export function joinLabels(labels: readonly string[]): string {
  if (labels.length === 0) throw new RangeError("runtime error: index out of range [-1]");
  if (labels[labels.length - 1] === ".") return labels.slice(0, -1).join(".") + ".";
  return fqdn(labels.join("."));
}

const encoder = new TextEncoder();

function isDigitByte(b: number | undefined): boolean {
  return b !== undefined && b >= 0x30 && b <= 0x39;
}

/** miekg/dns IsDomainName: labels of at most 63 octets, at most 255 in all, no empty label. */
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

/** Lower-cases ASCII letters only, as DNS name comparison does. */
export function lowerName(name: string): string {
  // Fast path: most names already are lower case.
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 65 && c <= 90) return name.replace(/[A-Z]+/g, (s) => s.toLowerCase());
  }
  return name;
}

/**
 * The labels of a name, leftmost first, escapes kept (miekg's
 * SplitDomainName); the root has none. "a.b." -> ["a","b"], "a\\.b.c." ->
 * ["a\\.b","c"].
 */
export function splitLabels(name: string): string[] {
  if (name === "." || name === "") return [];
  // Without escapes every dot separates labels (the etcd plugin's key paths take this path).
  if (!name.includes("\\")) return (name.endsWith(".") ? name.slice(0, -1) : name).split(".");
  const n = isFqdn(name) ? name.slice(0, -1) : name;
  const labels: string[] = [];
  let start = 0;
  for (let dot = nextDot(n); dot >= 0; dot = nextDot(n, start)) {
    labels.push(n.slice(start, dot));
    start = dot + 1;
  }
  labels.push(n.slice(start));
  return labels;
}

/**
 * Whether `child` equals `parent` or lies below it (miekg's dns.IsSubDomain(parent, child)).
 * Both are compared case-insensitively and as fully qualified names.
 */
export function isSubdomain(parent: string, child: string): boolean {
  const p = lowerName(fqdn(parent));
  const c = lowerName(fqdn(child));
  if (p === ".") return true;
  if (c === p) return true;
  const dot = c.length - p.length - 1;
  return c.length > p.length && c.endsWith(p) && c[dot] === "." && isSeparator(c, dot);
}

/** The name with its leftmost label removed; the parent of a TLD is ".", of "." is undefined. */
export function parentName(name: string): string | undefined {
  if (name === ".") return undefined;
  const i = nextDot(name);
  if (i < 0 || i === name.length - 1) return ".";
  return name.slice(i + 1);
}

/**
 * The longest of `zones` that equals or contains `qname` (lower-cased, fully qualified),
 * or undefined. Mirrors CoreDNS's plugin.Zones.Matches.
 */
export function matchZone(zones: readonly string[], qname: string): string | undefined {
  let best: string | undefined;
  for (const z of zones) {
    if (isSubdomain(z, qname) && (best === undefined || z.length > best.length)) best = z;
  }
  return best;
}

/** The reverse-lookup name of an IPv4 or IPv6 address ("10.0.0.1" -> "1.0.0.10.in-addr.arpa."). */
export function reverseName(address: string): string | undefined {
  const v4 = parseIPv4(address);
  if (v4) return `${v4[3]}.${v4[2]}.${v4[1]}.${v4[0]}.in-addr.arpa.`;
  const v6 = parseIPv6(address);
  if (!v6) return undefined;
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i--) {
    nibbles.push((v6[i] & 0xf).toString(16), (v6[i] >> 4).toString(16));
  }
  return nibbles.join(".") + ".ip6.arpa.";
}

/** miekg/dns `isDomainNameLabelSpecial`. */
function isLabelSpecial(b: number): boolean {
  return b === 0x2e || b === 0x20 || b === 0x27 || b === 0x40 || b === 0x3b || b === 0x28 ||
    b === 0x29 || b === 0x22 || b === 0x5c;
}

/**
 * miekg/dns `Name.String()` (sprintName): the presentation form of a name
 * given as text, escaping specials (`\ `, `\;`...) and non-printable or
 * non-ASCII bytes (`\DDD`). CoreDNS keys lookups on this form.
 */
export function presentationName(name: string): string {
  let plain = true;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c === 0x2e) continue;
    if (c < 0x21 || c > 0x7e || isLabelSpecial(c)) {
      plain = false;
      break;
    }
  }
  if (plain) return name;
  const b = encoder.encode(name);
  const raw = (from: number, to: number) => String.fromCharCode(...b.subarray(from, to));
  // As in Go, nothing is copied until the first byte that needs escaping;
  // then the untouched prefix is taken verbatim.
  let out: string | undefined;
  let i = 0;
  while (i < b.length) {
    if (b[i] === 0x2e) {
      if (out !== undefined) out += ".";
      i++;
      continue;
    }
    let byte: number;
    let n: number;
    if (b[i] !== 0x5c) {
      byte = b[i];
      n = 1;
    } else if (b.length - i === 1) {
      n = 0;
      byte = 0;
    } else if (
      b.length - i >= 4 && b[i + 1] >= 0x30 && b[i + 1] <= 0x39 && b[i + 2] >= 0x30 &&
      b[i + 2] <= 0x39 && b[i + 3] >= 0x30 && b[i + 3] <= 0x39
    ) {
      byte = ((b[i + 1] - 0x30) * 100 + (b[i + 2] - 0x30) * 10 + (b[i + 3] - 0x30)) & 0xff;
      n = 4;
    } else {
      byte = b[i + 1];
      n = 2;
    }
    if (n === 0) {
      // A dangling escape is dropped.
      if (out === undefined) return raw(0, i);
      break;
    }
    if (isLabelSpecial(byte)) {
      out = (out ?? raw(0, i)) + "\\" + String.fromCharCode(byte);
    } else if (byte < 0x20 || byte > 0x7e) {
      out = (out ?? raw(0, i)) + "\\" + String(byte).padStart(3, "0");
    } else if (out !== undefined) {
      out += String.fromCharCode(byte);
    }
    i += n;
  }
  return out ?? name;
}
