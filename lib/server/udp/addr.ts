/**
 * Listen addresses as text to socket addresses, and a datagram's source back
 * to the text the rest of the server uses (`Peer.remoteAddress`): IPv4
 * dotted, IPv6 in RFC 5952 form, IPv4-mapped IPv6 unwrapped to IPv4 (what
 * `unmapAddress` does to `Deno.listenDatagram`'s hostnames).
 *
 * @module
 */

import { C, type SockAddr } from "./abi.ts";
import { ipv6ToString, parseIPv4, parseIPv6 } from "../../go/ip.ts";

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
