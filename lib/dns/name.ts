/**
 * Domain-name helpers on presentation-format names ("www.example.org.").
 *
 * Names inside idetcd are always fully qualified. Comparisons are
 * case-insensitive (ASCII), as DNS requires.
 *
 * @module
 */

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

/** Whether the dot at `index` is a label separator, not escaped (an even run of backslashes before it). */
function isSeparator(name: string, index: number): boolean {
  let slashes = 0;
  for (let i = index - 1; i >= 0 && name.charCodeAt(i) === 0x5c; i--) slashes++;
  return slashes % 2 === 0;
}

/** Appends the trailing dot when missing: "example.org" -> "example.org.". */
export function fqdn(name: string): string {
  return name.endsWith(".") ? name : name + ".";
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
  const n = name.endsWith(".") && isSeparator(name, name.length - 1) ? name.slice(0, -1) : name;
  if (!n.includes("\\")) return n.split(".");
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
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(address)) {
    return address.split(".").reverse().join(".") + ".in-addr.arpa.";
  }
  const groups = expandIPv6(address);
  if (!groups) return undefined;
  const nibbles = groups.map((g) => g.toString(16).padStart(4, "0")).join("");
  return nibbles.split("").reverse().join(".") + ".ip6.arpa.";
}

/** The eight 16-bit groups of an IPv6 address, or undefined when it is not one. */
export function expandIPv6(address: string): number[] | undefined {
  let text = address;
  if (text.includes("%")) return undefined;
  let tail: number[] = [];
  const v4 = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (v4) {
    const o = v4.slice(1).map(Number);
    if (o.some((x) => x > 255)) return undefined;
    tail = [(o[0] << 8) | o[1], (o[2] << 8) | o[3]];
    text = text.slice(0, v4.index) + "0:0";
  }
  const parts = text.split("::");
  if (parts.length > 2) return undefined;
  const parse = (s: string) => (s === "" ? [] : s.split(":"));
  const head = parse(parts[0]);
  const rest = parts.length === 2 ? parse(parts[1]) : [];
  const fill = 8 - head.length - rest.length;
  if (parts.length === 2 ? fill < 1 : fill !== 0) return undefined;
  const all = [...head, ...Array(parts.length === 2 ? fill : 0).fill("0"), ...rest];
  const groups: number[] = [];
  for (const g of all) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    groups.push(parseInt(g, 16));
  }
  if (tail.length) groups.splice(6, 2, ...tail);
  return groups;
}
