/**
 * A UDP DNS client for measurements: tests/helpers/exchange.ts's UdpClient
 * (one socket, replies matched to queries by ID) with the bench's "poll
 * until the answer is right".
 *
 * @module
 */

import { decodeMessage, encodeQuery, type Message } from "../../lib/dns/wire.ts";
import { UdpClient } from "../../tests/helpers/exchange.ts";

/** A UDP client for one server. */
export class Probe {
  /** The server's address. */
  readonly host: string;
  /** The server's port. */
  readonly port: number;
  #client: UdpClient;

  /** A client of `host`:`port` on a socket of its own. */
  constructor(host: string, port: number) {
    this.host = host;
    this.port = port;
    this.#client = new UdpClient(host, port);
  }

  /** Sends one query; resolves with the reply, or undefined after `timeoutMs`. */
  async query(name: string, type: number, timeoutMs = 200): Promise<Message | undefined> {
    const sent = performance.now();
    let reply: Uint8Array | null;
    try {
      reply = await this.#client.exchange(encodeQuery(0, name, type), { timeoutMs, tries: 1 });
    } catch {
      // Sending to a port nobody listens on yet can fail; the timeout answers, as for a lost one.
      const left = timeoutMs - (performance.now() - sent);
      if (left > 0) await new Promise((r) => setTimeout(r, left));
      return undefined;
    }
    if (!reply) return undefined;
    try {
      return decodeMessage(reply);
    } catch {
      return undefined; // not a DNS message
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
  close(): Promise<void> {
    return this.#client.close();
  }
}

/** True when `msg` answers with an A record carrying `address`. */
export function hasAddress(msg: Message, address: string): boolean {
  return msg.rcode === 0 && msg.answer.some((rr) => rr.type === 1 && rr.data === address);
}
