/**
 * Listen addresses as text to socket addresses, and a datagram's source back
 * to the text the rest of the server uses (`Peer.remoteAddress`): IPv4
 * dotted, IPv6 in RFC 5952 form, IPv4-mapped IPv6 unwrapped to IPv4 (what
 * `unmapAddress` does to `Deno.listenDatagram`'s hostnames).
 *
 * @module
 */

import { C, type SockAddr } from "./abi.ts";
import { ipv6ToString } from "../../go/ip.ts";

/** The 4 bytes of a dotted IPv4 address, or undefined. */
export function parseIPv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p[0] === "0")) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

/** The 16 bytes of an IPv6 address (with `::` and an IPv4 tail allowed, no zone), or undefined. */
export function parseIPv6(text: string): Uint8Array | undefined {
  if (text.includes("%")) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string): number[] | undefined => {
    if (s === "") return [];
    const out: number[] = [];
    const parts = s.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseIPv4(p);
        if (!v4) return undefined;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
        out.push(parseInt(p, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/** `hostname` and `port` as a socket address (IPv4 text gives AF_INET), or undefined. */
export function toSockAddr(hostname: string, port: number): SockAddr | undefined {
  const v4 = parseIPv4(hostname);
  if (v4) return { family: C.AF_INET, addr: v4, port };
  const v6 = parseIPv6(hostname.replace(/^\[|\]$/g, ""));
  if (v6) return { family: C.AF_INET6, addr: v6, port };
  return undefined;
}

/**
 * Strips the ::ffff: prefix of an IPv4-mapped address given as text (what
 * Deno.listenDatagram reports for IPv4 clients of a dual-stack socket).
 */
export function unmapText(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

/** True for ::ffff:a.b.c.d (the first 16 bytes at `o`). */
function isMapped(bytes: Uint8Array, o: number): boolean {
  for (let i = 0; i < 10; i++) if (bytes[o + i] !== 0) return false;
  return bytes[o + 10] === 0xff && bytes[o + 11] === 0xff;
}

/**
 * The text of the address bytes at `o` (4 for AF_INET, 16 for AF_INET6),
 * with IPv4-mapped IPv6 unwrapped to plain IPv4.
 */
export function addressText(family: number, bytes: Uint8Array, o: number): string {
  if (family === C.AF_INET) return `${bytes[o]}.${bytes[o + 1]}.${bytes[o + 2]}.${bytes[o + 3]}`;
  if (isMapped(bytes, o)) {
    return `${bytes[o + 12]}.${bytes[o + 13]}.${bytes[o + 14]}.${bytes[o + 15]}`;
  }
  return ipv6ToString(bytes, o);
}
