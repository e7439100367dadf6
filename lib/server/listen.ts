/**
 * Sockets: one UDP and one TCP listener per listen address, feeding a Dispatcher.
 *
 * UDP goes through lib/server/udp/: the batched path (recvmmsg/sendmmsg via
 * libc) on Linux when it can be had, else Deno.listenDatagram; both call
 * the same handler here.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { type Dispatcher, type Endpoint, unmapAddress } from "./dispatch.ts";
import { type UdpAnswer, UdpPaths, type UdpSocket, type UdpSource } from "./udp/mod.ts";

/** Limits for TCP connections. */
export interface TcpLimits {
  /**
   * A new connection must deliver its first whole message within this long (ms);
   * miekg/dns's read timeout, 2 s. Short, because a connection that never asks
   * anything only holds a slot.
   */
  firstReadTimeoutMs: number;
  /** Each later message must arrive whole within this long (ms); miekg/dns's idle timeout, 8 s. */
  idleTimeoutMs: number;
  /**
   * Open connections at most. At the cap a new connection closes the idle one
   * with the oldest activity to get in; it is closed itself only when every
   * open one is busy (mid-message or with replies to write).
   */
  maxConnections: number;
}

/** A reply not written within this long closes the connection (miekg/dns's write timeout). */
const WRITE_TIMEOUT_MS = 5_000;
/** Queries of one connection answered at once; reading pauses beyond it. */
const MAX_PENDING_PER_CONNECTION = 16;

/** Default TCP limits. */
export const DEFAULT_TCP_LIMITS: TcpLimits = {
  firstReadTimeoutMs: 2_000,
  idleTimeoutMs: 8_000,
  maxConnections: 1_000,
};

/** What the cap needs to know about one open TCP connection. */
interface TcpSession {
  readonly conn: Deno.Conn;
  /** performance.now() of the last bytes read or reply written (accept time at first). */
  lastActivity: number;
  /** Bytes of a message have been read and it is not yet being answered. */
  midMessage: boolean;
  /** Queries being answered or replies being written. */
  pending: number;
}

/**
 * Idle: nothing of a message half-read and nothing owed to the client, so
 * closing it loses no query. Only idle connections are closed to make room.
 */
function isIdle(session: TcpSession): boolean {
  return !session.midMessage && session.pending === 0;
}

/** A UDP+TCP listener pair on one address. */
export class Listener {
  /** The address to bind ("" for every address). */
  readonly host: string;
  /** The port as configured (0 asks the system for one). */
  readonly port: number;
  #udp?: UdpSocket;
  /** The UDP socket's own address, as the dispatcher takes it (one object, not one per datagram). */
  #udpLocal?: Endpoint;
  #tcp?: Deno.Listener;
  #sessions = new Map<Deno.Conn, TcpSession>();
  #closed = false;
  #loops: Promise<void>[] = [];
  #dispatcher: Dispatcher;
  #log: Logger;
  #limits: TcpLimits;
  #udpPaths: UdpPaths;

  /**
   * A listener on `host`:`port` feeding `dispatcher`; nothing is bound until
   * {@link open}. `udpPaths` chooses the UDP path: the server's own (with its
   * `-udp` flag), or one of its own going by IDETCD_UDP and auto.
   */
  constructor(
    host: string,
    port: number,
    dispatcher: Dispatcher,
    log: Logger,
    limits: TcpLimits = DEFAULT_TCP_LIMITS,
    udpPaths: UdpPaths = new UdpPaths(),
  ) {
    this.host = host;
    this.port = port;
    this.#dispatcher = dispatcher;
    this.#log = log;
    this.#limits = limits;
    this.#udpPaths = udpPaths;
  }

  /** The port actually bound (useful with port 0). */
  get boundPort(): number {
    return this.#udp?.localPort ?? this.port;
  }

  /** Binds both sockets; throws a one-line error when the address is unavailable. */
  open(): void {
    // With no bind, listen on every address: "::" is dual-stack on Linux and
    // macOS, so both 127.0.0.1 and ::1 reach it; fall back to IPv4 when the
    // host has no IPv6.
    const hosts = this.host ? [this.host] : ["::", "0.0.0.0"];
    let lastError: unknown;
    for (const hostname of hosts) {
      try {
        const udp = this.#udpPaths.open(hostname, this.port, this.#log);
        const port = udp.localPort;
        try {
          this.#tcp = Deno.listen({ transport: "tcp", hostname, port });
        } catch (err) {
          void udp.close();
          throw err;
        }
        this.#udp = udp;
        this.#udpLocal = { address: udp.localAddress, port: udp.localPort };
        this.#loops.push(udp.serve(this.#answerUdp), this.#serveTcp(this.#tcp));
        return;
      } catch (err) {
        lastError = err;
        if (err instanceof Deno.errors.AddrInUse || err instanceof Deno.errors.PermissionDenied) {
          break;
        }
      }
    }
    const where = `${this.host || "*"}:${this.port}`;
    if (lastError instanceof Deno.errors.PermissionDenied) {
      throw new Error(
        `cannot listen on ${where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE; try -dns.port 1053)`,
      );
    }
    if (lastError instanceof Deno.errors.AddrInUse) {
      throw new Error(`cannot listen on ${where}: address already in use`);
    }
    throw new Error(`cannot listen on ${where}: ${(lastError as Error)?.message}`);
  }

  /**
   * One UDP datagram, on either path: the dispatcher answers it at once (a
   * kept reply) or with a promise (the socket sends it when it resolves).
   * `data` and `source` are only valid during this call; the dispatcher
   * copies what it keeps.
   */
  #answerUdp = (data: Uint8Array, source: UdpSource): UdpAnswer => {
    const answer = this.#dispatcher.answer(data, "udp", source, this.#udpLocal!);
    if (answer instanceof Uint8Array) return answer;
    const from = source.address;
    return answer.catch((err) => {
      this.#log.error(`udp query from ${from}: ${err}`);
      return null;
    });
  };

  async #serveTcp(listener: Deno.Listener): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (this.#closed) return;
        this.#log.debug(`tcp accept: ${(err as Error).message}`);
        // Accept can fail under fd exhaustion; back off instead of spinning.
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
      if (this.#sessions.size >= this.#limits.maxConnections && !this.#evictIdle()) {
        // Every open connection is mid-message or owes replies: none can go
        // without losing a query, so the newcomer waits for a later attempt.
        this.#log.debug(`tcp: ${this.#sessions.size} connections, all busy; closing a new one`);
        conn.close();
        continue;
      }
      const session: TcpSession = {
        conn,
        lastActivity: performance.now(),
        midMessage: false,
        pending: 0,
      };
      this.#sessions.set(conn, session);
      this.#serveConnection(session).finally(() => {
        this.#sessions.delete(conn);
        try {
          conn.close();
        } catch {
          // already closed
        }
      });
    }
  }

  /**
   * Closes the idle connection with the oldest activity, so that idle
   * connections cannot shut new clients out; false when none is idle. It
   * leaves the map at once (its loop ends on its own) so the count is exact.
   */
  #evictIdle(): boolean {
    let oldest: TcpSession | undefined;
    for (const session of this.#sessions.values()) {
      if (isIdle(session) && (!oldest || session.lastActivity < oldest.lastActivity)) {
        oldest = session;
      }
    }
    if (!oldest) return false;
    this.#sessions.delete(oldest.conn);
    try {
      oldest.conn.close();
    } catch {
      // already closed
    }
    return true;
  }

  async #serveConnection(session: TcpSession): Promise<void> {
    const conn = session.conn;
    const remote = conn.remoteAddr as Deno.NetAddr;
    const localAddr = conn.localAddr as Deno.NetAddr;
    const client: Endpoint = { address: unmapAddress(remote.hostname), port: remote.port };
    const local: Endpoint = { address: localAddr.hostname, port: localAddr.port };
    // Bytes in mean a message is being read, or is in hand until its task is
    // counted below; either way the connection is not idle.
    const reader = new FrameReader(conn, () => {
      session.lastActivity = performance.now();
      session.midMessage = true;
    });
    // Replies may complete out of order (RFC 7766 allows it); writes are
    // serialised. A client that stops reading stalls our writes: each write
    // has a deadline, and reading pauses while too many replies are pending,
    // so one connection cannot pile up memory or hold its slot forever.
    let writing: Promise<void> = Promise.resolve();
    let broken = false;
    const pending = new Set<Promise<void>>();
    let first = true;
    const send = (reply: Uint8Array) => {
      const out = new Uint8Array(reply.length + 2);
      out[0] = reply.length >> 8;
      out[1] = reply.length & 0xff;
      out.set(reply, 2);
      writing = writing.then(async () => {
        if (broken) return;
        if (await withDeadline(writeAll(conn, out), WRITE_TIMEOUT_MS)) {
          session.lastActivity = performance.now();
        } else {
          broken = true;
          try {
            conn.close();
          } catch {
            // already closed
          }
        }
      }).catch(() => {
        broken = true;
      });
      return writing;
    };
    while (!this.#closed && !broken) {
      if (pending.size >= MAX_PENDING_PER_CONNECTION) {
        await Promise.race(pending);
        continue;
      }
      // The first message has the short read timeout: a connection proves it
      // is a client before it gets the idle timeout of an established one.
      const frame = await reader.next(
        first ? this.#limits.firstReadTimeoutMs : this.#limits.idleTimeoutMs,
      );
      if (!frame) break;
      first = false;
      const task = Promise.resolve(this.#dispatcher.answer(frame, "tcp", client, local))
        .then((reply) => (reply ? send(reply) : undefined))
        .catch((err) => this.#log.error(`tcp query from ${client.address}: ${err}`));
      pending.add(task);
      session.pending++;
      session.midMessage = reader.buffered > 0;
      task.then(() => {
        pending.delete(task);
        session.pending--;
      });
    }
    await Promise.allSettled(pending);
    await writing;
  }

  /** Stops accepting and closes every socket. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // The batched socket's close waits for its poll to return (at most 100 ms).
    const udpClosed = this.#udp?.close();
    try {
      this.#tcp?.close();
    } catch {
      // already closed
    }
    for (const conn of this.#sessions.keys()) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
    await Promise.allSettled([udpClosed, ...this.#loops]);
  }
}

/** Writes all of `bytes`; resolves true when done. */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<boolean> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
  return true;
}

/** Reads 2-byte-length-framed messages, each within a deadline. */
class FrameReader {
  #conn: Deno.Conn;
  #buf = new Uint8Array(0);
  #onRead: () => void;

  /** `onRead` hears of every read that brought bytes. */
  constructor(conn: Deno.Conn, onRead: () => void) {
    this.#conn = conn;
    this.#onRead = onRead;
  }

  /** Bytes read but not yet returned as a message (the start of the next one). */
  get buffered(): number {
    return this.#buf.length;
  }

  /** Reads until `n` bytes are buffered or `deadline` (performance.now()) passes. */
  async #fill(n: number, deadline: number): Promise<boolean> {
    while (this.#buf.length < n) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      const chunk = new Uint8Array(Math.max(4096, n - this.#buf.length));
      const read = await withDeadline(this.#conn.read(chunk), left).catch(() => null);
      if (read === undefined || read === null || read === 0) return false;
      const next = new Uint8Array(this.#buf.length + read);
      next.set(this.#buf);
      next.set(chunk.subarray(0, read), this.#buf.length);
      this.#buf = next;
      this.#onRead();
    }
    return true;
  }

  /**
   * The next message, or null at end of stream, on a zero length, or when no
   * whole message arrived within `timeoutMs`: the timeout counts per message
   * (as miekg/dns's read deadline), not per read, so a trickling client cannot
   * keep a connection forever.
   */
  async next(timeoutMs: number): Promise<Uint8Array | null> {
    const deadline = performance.now() + timeoutMs;
    if (!(await this.#fill(2, deadline))) return null;
    const len = (this.#buf[0] << 8) | this.#buf[1];
    if (len === 0) return null;
    if (!(await this.#fill(2 + len, deadline))) return null;
    const frame = this.#buf.slice(2, 2 + len);
    this.#buf = this.#buf.slice(2 + len);
    return frame;
  }
}

/**
 * Resolves with `work`'s value, or undefined when `ms` pass first (the work
 * itself is not cancelled: the caller closes what it was using).
 */
function withDeadline<T>(work: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}
