/**
 * A UDP DNS client for measurements: one socket, a reader loop matching
 * replies to queries by ID, and "poll until the answer is right".
 *
 * @module
 */

import { decodeMessage, encodeQuery, type Message } from "../../lib/dns/wire.ts";

/** A UDP client for one server. */
export class Probe {
  readonly host: string;
  readonly port: number;
  #sock: Deno.DatagramConn;
  #pending = new Map<number, (msg: Message) => void>();
  #nextId = Math.floor(Math.random() * 65536);
  #closed = false;
  #reader: Promise<void>;

  constructor(host: string, port: number) {
    this.host = host;
    this.port = port;
    this.#sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
    this.#reader = this.#read();
  }

  async #read(): Promise<void> {
    while (!this.#closed) {
      let data: Uint8Array;
      try {
        [data] = await this.#sock.receive();
      } catch {
        // ICMP port unreachable (server not up yet) surfaces here; keep reading.
        if (this.#closed) return;
        continue;
      }
      let msg: Message;
      try {
        msg = decodeMessage(data);
      } catch {
        continue;
      }
      const resolve = this.#pending.get(msg.id);
      if (resolve) {
        this.#pending.delete(msg.id);
        resolve(msg);
      }
    }
  }

  /** Sends one query; resolves with the reply, or undefined after `timeoutMs`. */
  async query(name: string, type: number, timeoutMs = 200): Promise<Message | undefined> {
    const id = this.#nextId = (this.#nextId + 1) & 0xffff;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const reply = new Promise<Message | undefined>((resolve) => {
      this.#pending.set(id, resolve);
      timer = setTimeout(() => {
        this.#pending.delete(id);
        resolve(undefined);
      }, timeoutMs);
    });
    try {
      await this.#sock.send(encodeQuery(id, name, type), {
        transport: "udp",
        hostname: this.host,
        port: this.port,
      });
    } catch {
      // Sending to a port nobody listens on yet can fail; the timeout answers.
    }
    try {
      return await reply;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Queries in a closed loop (the next query as soon as the previous reply
   * arrives) until `accept` approves a reply; returns performance.now() of that
   * reply. Throws after `timeoutMs`.
   */
  async pollUntil(
    name: string,
    type: number,
    accept: (msg: Message) => boolean,
    timeoutMs = 10_000,
  ): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      const msg = await this.query(name, type, 100);
      if (msg && accept(msg)) return performance.now();
      // No reply (not listening yet): do not spin on send errors.
      if (!msg) await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`${name} did not give the expected answer within ${timeoutMs} ms`);
  }

  /** Closes the socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#sock.close();
    await this.#reader;
  }
}

/** True when `msg` answers with an A record carrying `address`. */
export function hasAddress(msg: Message, address: string): boolean {
  return msg.rcode === 0 && msg.answer.some((rr) => rr.type === 1 && rr.data === address);
}
