/**
 * Which UDP path a listener gets, and opening its socket.
 *
 * - `batched` (lib/server/udp/batch_loop.ts): recvmmsg/sendmmsg through
 *   libc; Linux glibc on x86_64 or aarch64, with the FFI permission for libc.
 * - `portable` (lib/server/udp/portable.ts): `Deno.listenDatagram`.
 *
 * The choice, highest first: the `-udp` flag (given to {@link UdpPaths}), the
 * IDETCD_UDP environment variable, else `auto`: the batched path where it
 * can be had (Linux glibc x86_64/aarch64, FFI granted for libc, an IP
 * address to bind), the portable path elsewhere, saying why once. Asking for
 * `batched` where it cannot be had is an error when the socket opens (so a
 * test run or a deployment that means the batched path cannot silently get
 * the other one).
 *
 * @module
 */

import type { Logger } from "../../log.ts";
import { BatchedUdp } from "./batch_loop.ts";
import { openLibc } from "./ffi.ts";
import { PortableUdp } from "./portable.ts";
import { toSockAddr } from "./addr.ts";
import type { UdpPathName, UdpSocket } from "./types.ts";

export type { UdpAnswer, UdpHandler, UdpPathName, UdpSocket, UdpSource } from "./types.ts";

/** What may be asked for: a path, or `auto`. */
export type UdpChoice = UdpPathName | "auto";

/** The environment variable that chooses the path when no flag does. */
export const UDP_ENV = "IDETCD_UDP";

const CHOICES: readonly UdpChoice[] = ["auto", "batched", "portable"];

/** True for "auto", "batched" and "portable". */
export function isUdpChoice(text: string): text is UdpChoice {
  return (CHOICES as readonly string[]).includes(text);
}

/**
 * The choice in force and where it came from: `flag` (the `-udp` flag's
 * value; undefined goes on to IDETCD_UDP, then auto). An IDETCD_UDP value
 * that is no choice throws, naming the variable, so a typo is not a silent
 * default.
 */
export function udpChoice(
  flag?: UdpChoice,
): { choice: UdpChoice; from: "flag" | "env" | "default" } {
  if (flag) return { choice: flag, from: "flag" };
  const env = readEnv();
  if (env !== undefined && env !== "") {
    const value = env.trim().toLowerCase();
    if (!isUdpChoice(value)) {
      throw new Error(`${UDP_ENV}=${env}: want auto, batched or portable`);
    }
    return { choice: value, from: "env" };
  }
  return { choice: "auto", from: "default" };
}

/** IDETCD_UDP without prompting: unset when the env permission is not granted for it. */
function readEnv(): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: UDP_ENV }).state !== "granted") {
      return undefined;
    }
    return Deno.env.get(UDP_ENV);
  } catch {
    return undefined;
  }
}

/**
 * Why the batched path cannot be used here, or undefined when it can: the
 * system and architecture, the FFI permission for libc, glibc opening.
 * Asked once per process (the answer does not change while it runs).
 */
export function batchedUnavailable(): string | undefined {
  const libc = openLibc();
  return typeof libc === "string" ? libc : undefined;
}

/**
 * The path {@link UdpPaths.open} takes for `hostname` now with the `-udp`
 * flag's `flag`, and why when it is not the batched one.
 */
export function resolveUdpPath(
  hostname: string,
  flag?: UdpChoice,
): { path: UdpPathName; reason?: string } {
  const { choice, from } = udpChoice(flag);
  const by = from === "flag" ? "-udp" : from === "env" ? UDP_ENV : "";
  if (choice === "portable") return { path: "portable", reason: `${by}=portable` };
  const unavailable = batchedUnavailable() ??
    (toSockAddr(hostname === "" ? "::" : hostname, 0)
      ? undefined
      : `${hostname} is not an IP address`);
  if (!unavailable) return { path: "batched" };
  if (choice === "batched") {
    throw new Error(`${by}=batched, but the batched UDP path cannot be used: ${unavailable}`);
  }
  return { path: "portable", reason: unavailable };
}

/**
 * Opens a server's UDP sockets on the path its `-udp` flag, IDETCD_UDP or
 * auto chooses. One per server ({@link Instance} owns one), so what it has
 * said about the path is said once per server, not once per socket.
 */
export class UdpPaths {
  readonly #flag?: UdpChoice;
  /** Reasons for the portable path already logged. */
  readonly #told = new Set<string>();

  /** Paths chosen by the `-udp` flag's `flag` (undefined: IDETCD_UDP, else auto). */
  constructor(flag?: UdpChoice) {
    this.#flag = flag;
  }

  /** {@link udpChoice} with this server's flag. */
  choice(): { choice: UdpChoice; from: "flag" | "env" | "default" } {
    return udpChoice(this.#flag);
  }

  /** {@link resolveUdpPath} with this server's flag. */
  resolve(hostname: string): { path: UdpPathName; reason?: string } {
    return resolveUdpPath(hostname, this.#flag);
  }

  /**
   * Binds a UDP socket on the chosen path. Throws what Deno.listenDatagram
   * throws (AddrInUse, PermissionDenied, ...) on either path.
   */
  open(hostname: string, port: number, log: Logger): UdpSocket {
    const { path, reason } = this.resolve(hostname);
    if (path === "batched") {
      const socket = BatchedUdp.open(hostname, port, log);
      log.debug(
        `udp [${socket.localAddress}]:${socket.localPort}: batched path (recvmmsg/sendmmsg)`,
      );
      return socket;
    }
    if (reason && !this.#told.has(reason)) {
      // Once per reason: a reload re-opens listeners and need not say it again.
      this.#told.add(reason);
      log.debug(`udp: portable path (Deno.listenDatagram): ${reason}`);
    }
    return PortableUdp.open(hostname, port, log);
  }
}
