/**
 * Raw DNS exchanges for tests that compare servers: any packet (odd flags,
 * EDNS options, TSIG), over UDP or TCP, with a deadline per exchange. A
 * server that sends nothing is a result (`null`), not a hang.
 *
 * @module
 */

import { tcpExchange } from "./dns.ts";

/** Where and how long to wait. */
export interface ExchangeOptions {
  /** Milliseconds to wait for each try (default 1,000). */
  timeoutMs?: number;
  /** UDP sends before giving up (default 3); loopback drops datagrams only under load. */
  tries?: number;
}

/**
 * A UDP client for one server: one socket, many outstanding queries told
 * apart by message ID (the client rewrites the ID of every packet it sends).
 */
export class UdpClient {
  #sock: Deno.DatagramConn;
  #pending = new Map<number, (reply: Uint8Array) => void>();
  #nextId = Math.floor(Math.random() * 65536);
  #loop: Promise<void>;
  #closed = false;

  /** A client of `host`:`port`, on a socket of its own. */
  constructor(readonly host: string, readonly port: number) {
    this.#sock = Deno.listenDatagram({
      transport: "udp",
      hostname: host.includes(":") ? "::" : "127.0.0.1",
      port: 0,
    });
    this.#loop = this.#receive();
  }

  async #receive(): Promise<void> {
    while (!this.#closed) {
      let bytes: Uint8Array;
      try {
        [bytes] = await this.#sock.receive();
      } catch (err) {
        if (this.#closed || err instanceof Deno.errors.BadResource) return;
        // ICMP port unreachable (the server is not up yet) surfaces here: keep reading.
        continue;
      }
      if (bytes.length < 2) continue;
      const deliver = this.#pending.get((bytes[0] << 8) | bytes[1]);
      if (deliver) deliver(bytes);
    }
  }

  /** Sends `packet` (under a fresh ID) and resolves with the reply, or null when none came. */
  async exchange(packet: Uint8Array, options: ExchangeOptions = {}): Promise<Uint8Array | null> {
    const { timeoutMs = 1000, tries = 3 } = options;
    let id = this.#nextId;
    while (this.#pending.has(id)) id = (id + 1) & 0xffff;
    this.#nextId = (id + 1) & 0xffff;
    const query = packet.slice();
    query[0] = id >> 8;
    query[1] = id & 0xff;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      for (let attempt = 0; attempt < tries; attempt++) {
        const reply = new Promise<Uint8Array | null>((resolve) => {
          this.#pending.set(id, resolve);
          timer = setTimeout(() => resolve(null), timeoutMs);
        });
        await this.#sock.send(query, { transport: "udp", hostname: this.host, port: this.port });
        const got = await reply;
        clearTimeout(timer);
        if (got) return got;
      }
      return null;
    } finally {
      clearTimeout(timer);
      this.#pending.delete(id);
    }
  }

  /** Closes the socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#sock.close();
    await this.#loop;
  }
}

/**
 * One query over a fresh TCP connection (RFC 1035 section 4.2.2 framing).
 * Resolves with the reply, or null when the server closed the connection or
 * sent nothing before the deadline.
 */
export function exchangeTcp(
  host: string,
  port: number,
  packet: Uint8Array,
  options: ExchangeOptions = {},
): Promise<Uint8Array | null> {
  return tcpExchange(host, port, packet, { timeoutMs: options.timeoutMs ?? 2000 });
}

/** Runs `work` over `items` with at most `limit` in flight; results in input order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await work(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
