/**
 * IP addresses as Go's net and net/netip parse and print them: the one IP
 * vocabulary of idetcd. Parsing follows netip (what net.ParseIP has used
 * since Go 1.17): IPv4 is four decimal fields without leading zeros, IPv6
 * allows one `::` and a trailing dotted IPv4, and a zone (`%eth0`) is no
 * address. Bytes are big-endian, 4 for IPv4 and 16 for IPv6.
 *
 * @module
 */

/** Writes the four fields of dotted `text` at `out[at..at+4]`; false when it is not IPv4. */
function parseIPv4Into(text: string, out: Uint8Array, at: number): boolean {
  let field = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) {
      // netip rejects leading zeros: "010.0.0.1" could mean octal to other parsers.
      if (digits === 1 && value === 0) return false;
      value = value * 10 + c - 0x30;
      digits++;
      if (value > 255) return false;
    } else if (c === 0x2e) {
      if (digits === 0 || field === 3) return false;
      out[at + field++] = value;
      value = 0;
      digits = 0;
    } else {
      return false;
    }
  }
  if (field !== 3 || digits === 0) return false;
  out[at + 3] = value;
  return true;
}

/** The 4 bytes of a dotted IPv4 address ("10.0.0.1"), or undefined. */
export function parseIPv4(text: string): Uint8Array | undefined {
  const out = new Uint8Array(4);
  return parseIPv4Into(text, out, 0) ? out : undefined;
}

/** The 16 bytes of an IPv6 address (`::` and a dotted IPv4 tail allowed, no zone), or undefined. */
export function parseIPv6(text: string): Uint8Array | undefined {
  const ip = new Uint8Array(16);
  let s = text;
  let ellipsis = -1;
  if (s.length >= 2 && s[0] === ":" && s[1] === ":") {
    ellipsis = 0;
    s = s.slice(2);
    if (s.length === 0) return ip;
  }
  let i = 0;
  while (i < 16) {
    let off = 0;
    let acc = 0;
    for (; off < s.length; off++) {
      const c = s.charCodeAt(off);
      let d: number;
      if (c >= 0x30 && c <= 0x39) d = c - 0x30;
      else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
      else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
      else break;
      acc = acc * 16 + d;
      if (off > 3 || acc > 0xffff) return undefined;
    }
    if (off === 0) return undefined;
    if (off < s.length && s[off] === ".") {
      // An embedded IPv4 address fills the last 32 bits.
      if ((ellipsis < 0 && i !== 12) || i + 4 > 16) return undefined;
      if (!parseIPv4Into(s, ip, i)) return undefined;
      s = "";
      i += 4;
      break;
    }
    ip[i] = acc >> 8;
    ip[i + 1] = acc & 0xff;
    i += 2;
    s = s.slice(off);
    if (s.length === 0) break;
    if (s[0] !== ":" || s.length === 1) return undefined;
    s = s.slice(1);
    if (s[0] === ":") {
      if (ellipsis >= 0) return undefined;
      ellipsis = i;
      s = s.slice(1);
      if (s.length === 0) break;
    }
  }
  if (s.length !== 0) return undefined;
  if (i < 16) {
    if (ellipsis < 0) return undefined;
    const n = 16 - i;
    for (let j = i - 1; j >= ellipsis; j--) ip[j + n] = ip[j];
    ip.fill(0, ellipsis, ellipsis + n);
  } else if (ellipsis >= 0) {
    return undefined; // "::" must stand for at least one group
  }
  return ip;
}

/**
 * Go's net.ParseIP: 16 bytes (IPv4 as v4-mapped `::ffff:a.b.c.d`), or
 * undefined ("010.0.0.1", "fe80::1%eth0", "[::1]"). The family is the one
 * of the first `.` or `:`, as netip decides it.
 */
export function parseIP(text: string): Uint8Array | undefined {
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === ".") {
      const ip = new Uint8Array(16);
      ip[10] = 0xff;
      ip[11] = 0xff;
      return parseIPv4Into(text, ip, 12) ? ip : undefined;
    }
    if (c === ":") return parseIPv6(text);
    if (c === "%") return undefined;
  }
  return undefined;
}

/** Whether `text` is an IPv4 or IPv6 address (Go's `net.ParseIP(text) != nil`). */
export function isIP(text: string): boolean {
  return parseIP(text) !== undefined;
}

/** Whether `text` is a dotted IPv4 address (netip's `Is4()` of a parse that succeeded). */
export function isIPv4(text: string): boolean {
  return parseIPv4(text) !== undefined;
}

/** Whether `text` is an IPv6 address, v4-mapped ones included (no zone). */
export function isIPv6(text: string): boolean {
  return parseIPv6(text) !== undefined;
}

/** Go's IP.To4: the 4 bytes of an IPv4 or v4-mapped address, else undefined. */
export function to4(ip: Uint8Array): Uint8Array | undefined {
  if (ip.length === 4) return ip;
  if (ip.length !== 16) return undefined;
  for (let i = 0; i < 10; i++) if (ip[i] !== 0) return undefined;
  if (ip[10] !== 0xff || ip[11] !== 0xff) return undefined;
  return ip.subarray(12, 16);
}

/** The eight 16-bit groups of an IPv6 address (no zone), or undefined when it is not one. */
export function expandIPv6(text: string): number[] | undefined {
  const ip = parseIPv6(text);
  if (ip === undefined) return undefined;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((ip[i] << 8) | ip[i + 1]);
  return groups;
}

/**
 * RFC 5952 text of the 16-byte IPv6 address at `bytes[offset..]`: lower-case,
 * the longest run of two or more zero groups as `::`; v4-mapped addresses in
 * dotted form (`::ffff:1.2.3.4`), as Go's netip and dig print them.
 */
export function ipv6ToString(bytes: Uint8Array, offset = 0): string {
  const o = offset;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((bytes[o + i * 2] << 8) | bytes[o + i * 2 + 1]);
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${bytes[o + 12]}.${bytes[o + 13]}.${bytes[o + 14]}.${bytes[o + 15]}`;
  }
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return hex.slice(0, bestStart).join(":") + "::" + hex.slice(bestStart + bestLen).join(":");
}

/**
 * Go's IP.String: dotted for IPv4 and v4-mapped addresses, RFC 5952 for the
 * rest; the canonical spelling to compare addresses by.
 */
export function ipToString(ip: Uint8Array): string {
  const v4 = to4(ip);
  if (v4) return `${v4[0]}.${v4[1]}.${v4[2]}.${v4[3]}`;
  return ipv6ToString(ip);
}
