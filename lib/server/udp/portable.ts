/**
 * The portable UDP path: `Deno.listenDatagram`, one async op per datagram.
 * Used on systems other than Linux glibc x86_64/aarch64, without the FFI
 * permission, and when chosen (`-udp portable`, IDETCD_UDP=portable).
 *
 * @module
 */

import type { Logger } from "../../log.ts";
import { unmapText } from "./addr.ts";
import type { UdpHandler, UdpSocket } from "./types.ts";

/** A UDP socket on Deno's datagram API. */
export class PortableUdp implements UdpSocket {
  readonly path = "portable" as const;
  readonly localAddress: string;
  readonly localPort: number;
  #conn: Deno.DatagramConn;
  #closed = false;
  #loop?: Promise<void>;
  #log: Logger;

  private constructor(conn: Deno.DatagramConn, log: Logger) {
    this.#conn = conn;
    this.#log = log;
    const addr = conn.addr as Deno.NetAddr;
    this.localAddress = addr.hostname;
    this.localPort = addr.port;
  }

  /** Binds `hostname:port`; throws Deno's errors (AddrInUse, PermissionDenied, ...). */
  static open(hostname: string, port: number, log: Logger): PortableUdp {
    return new PortableUdp(Deno.listenDatagram({ transport: "udp", hostname, port }), log);
  }

  serve(handler: UdpHandler): Promise<void> {
    this.#loop ??= this.#run(handler);
    return this.#loop;
  }

  async #run(handler: UdpHandler): Promise<void> {
    const udp = this.#conn;
    // One receive buffer for the socket's life: without one, Deno allocates a
    // fresh 64 KiB buffer per datagram, which the returned view keeps alive
    // until a GC; under a flood that is hundreds of MB that the allocator
    // keeps afterwards. Each datagram is copied out at its own size.
    const buffer = new Uint8Array(65_536);
    while (!this.#closed) {
      let data: Uint8Array, addr: Deno.Addr;
      try {
        [data, addr] = await udp.receive(buffer);
        data = data.slice();
      } catch (err) {
        if (this.#closed) return;
        // ICMP errors from earlier sends surface here on some systems; keep serving.
        this.#log.debug(`udp receive: ${(err as Error).message}`);
        continue;
      }
      const remote = addr as Deno.NetAddr;
      let answer;
      try {
        answer = handler(data, { address: unmapText(remote.hostname), port: remote.port });
      } catch (err) {
        this.#log.error(`udp handler: ${(err as Error).message}`);
        continue;
      }
      if (answer instanceof Uint8Array) {
        this.#send(answer, remote);
      } else if (answer) {
        answer.then((reply) => {
          if (reply) this.#send(reply, remote);
        }, (err) => this.#log.error(`udp handler: ${(err as Error).message}`));
      }
    }
  }

  #send(reply: Uint8Array, to: Deno.NetAddr): void {
    if (this.#closed) return;
    this.#conn.send(reply, to).catch((err) => {
      this.#log.debug(`udp send to ${to.hostname}: ${(err as Error).message}`);
    });
  }

  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch {
        // already closed
      }
    }
    await this.#loop;
  }
}
