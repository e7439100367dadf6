/**
 * One upstream: a pooled UDP socket with in-flight queries matched by ID,
 * per-query TCP exchanges, and CoreDNS's in-band health checking
 * (plugin/pkg/proxy: proxy.go, connect.go, health.go).
 *
 * @module
 */

import { encodeQuery } from "../../dns/wire.ts";
import { parseIPv6 } from "../../go/ip.ts";
import { joinHostPort } from "../../go/net.ts";
import { Type } from "../../dns/types.ts";
import type { UpstreamAddress } from "./setup.ts";

/** Read timeout of one upstream try (CoreDNS's proxy readTimeout). */
export const READ_TIMEOUT_MS = 2_000;
/** Timeout of a health-check exchange (CoreDNS's dns.Client timeouts there). */
export const HEALTH_CHECK_TIMEOUT_MS = 1_000;

/** A failed exchange; `message` reads like Go's net errors ("read udp ...: i/o timeout"). */
export class ExchangeError extends Error {
  /** `message` reads like Go's net errors. */
  constructor(message: string) {
    super(message);
    this.name = "ExchangeError";
  }
}

/** "1.2.3.4:53" or "[::1]:53", as Go's net.JoinHostPort writes it. */
export function formatAddress(a: UpstreamAddress): string {
  return joinHostPort(a.host, a.port);
}

/** Whether two IP strings denote the same address (IPv6 compared by value). */
function sameHost(a: string, b: string): boolean {
  if (a === b) return true;
  const x = parseIPv6(a), y = parseIPv6(b);
  return !!x && !!y && x.every((byte, i) => byte === y[i]);
}

/**
 * Random 16-bit message IDs (miekg's dns.Id), drawn from the CSPRNG in
 * batches: one per transport, so no two share a buffer.
 */
export class MessageIds {
  #batch = new Uint16Array(512);
  #next = this.#batch.length;

  /** The next random ID. */
  next(): number {
    if (this.#next >= this.#batch.length) {
      crypto.getRandomValues(this.#batch);
      this.#next = 0;
    }
    return this.#batch[this.#next++];
  }
}

interface Pending {
  resolve(bytes: Uint8Array): void;
  reject(err: Error): void;
}

/** One bound UDP socket and the queries waiting on it. */
class UdpSocket {
  readonly conn: Deno.DatagramConn;
  readonly pending = new Map<number, Pending>();
  lastUsed = performance.now();
  #closed = false;
  #loop: Promise<void>;
  #remote: UpstreamAddress;

  constructor(remote: UpstreamAddress) {
    this.#remote = remote;
    const hostname = remote.host.includes(":") ? "::" : "0.0.0.0";
    this.conn = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
    this.#loop = this.#receive();
  }

  /** Whether the socket was closed (by us or by a socket error). */
  get closed(): boolean {
    return this.#closed;
  }

  get local(): string {
    const a = this.conn.addr as Deno.NetAddr;
    return formatAddress({ host: a.hostname, port: a.port });
  }

  async #receive(): Promise<void> {
    const buf = new Uint8Array(65_535);
    while (!this.#closed) {
      let data: Uint8Array, addr: Deno.Addr;
      try {
        [data, addr] = await this.conn.receive(buf);
      } catch (err) {
        // A socket error other than our own close: retire the socket and fail its queries.
        this.close(new ExchangeError(`read udp ${this.local}: ${(err as Error).message}`));
        return;
      }
      const from = addr as Deno.NetAddr;
      // Only the upstream may answer (guards against off-path spoofing), by ID.
      if (from.port !== this.#remote.port || !sameHost(from.hostname, this.#remote.host)) continue;
      if (data.length < 2) continue;
      const id = (data[0] << 8) | data[1];
      const waiter = this.pending.get(id);
      if (!waiter) continue; // late or out-of-order reply
      this.pending.delete(id);
      waiter.resolve(data.slice());
    }
  }

  /** Closes the socket and fails whatever still waits on it. */
  close(reason = new ExchangeError("use of closed network connection")): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // already closed
    }
    for (const waiter of this.pending.values()) waiter.reject(reason);
    this.pending.clear();
  }

  /** Resolves when the receive loop has ended (after close). */
  done(): Promise<void> {
    return this.#loop;
  }
}

/** The UDP side of an upstream: one socket reused for every query, replaced when idle too long. */
export class UdpChannel {
  #remote: UpstreamAddress;
  #expireMs: number;
  #socket?: UdpSocket;
  #retired: Promise<void>[] = [];
  #closed = false;
  #ids = new MessageIds();

  /** Sockets to `remote` are replaced after `expireMs` idle. */
  constructor(remote: UpstreamAddress, expireMs: number) {
    this.#remote = remote;
    this.#expireMs = expireMs;
  }

  /** The local port of the socket in use, if one is open. */
  get localPort(): number | undefined {
    const socket = this.#socket;
    return socket && !socket.closed ? (socket.conn.addr as Deno.NetAddr).port : undefined;
  }

  #current(): UdpSocket {
    const now = performance.now();
    let socket = this.#socket;
    // CoreDNS drops cached connections unused for `expire`; a fresh socket also gets a fresh port.
    if (socket?.closed) {
      this.#retired.push(socket.done());
      socket = undefined;
    }
    if (socket && socket.pending.size === 0 && now - socket.lastUsed > this.#expireMs) {
      socket.close();
      this.#retired.push(socket.done());
      socket = undefined;
    }
    if (!socket) socket = this.#socket = new UdpSocket(this.#remote);
    socket.lastUsed = now;
    return socket;
  }

  /**
   * Sends the query `build(id)` under a fresh random ID and resolves with
   * the raw reply carrying that ID, or rejects after `timeoutMs`.
   */
  exchange(build: (id: number) => Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    if (this.#closed) {
      return Promise.reject(new ExchangeError("use of closed network connection"));
    }
    let socket: UdpSocket;
    try {
      socket = this.#current();
    } catch (err) {
      return Promise.reject(new ExchangeError(`dial udp: ${(err as Error).message}`));
    }
    if (socket.pending.size >= 60_000) {
      return Promise.reject(new ExchangeError("too many queries in flight"));
    }
    let id = this.#ids.next();
    while (socket.pending.has(id)) id = this.#ids.next();
    const packet = build(id);
    const remote = formatAddress(this.#remote);
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (socket.pending.get(id) !== waiter) return;
        socket.pending.delete(id);
        reject(new ExchangeError(`read udp ${socket.local}->${remote}: i/o timeout`));
      }, timeoutMs);
      const waiter: Pending = {
        resolve: (bytes) => {
          clearTimeout(timer);
          resolve(bytes);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      socket.pending.set(id, waiter);
      socket.conn.send(packet, {
        transport: "udp",
        hostname: this.#remote.host,
        port: this.#remote.port,
      }).catch((err) => {
        if (socket.pending.get(id) !== waiter) return;
        socket.pending.delete(id);
        waiter.reject(
          new ExchangeError(`write udp ${socket.local}->${remote}: ${(err as Error).message}`),
        );
      });
    });
  }

  /** Closes the socket; pending exchanges reject. */
  async close(): Promise<void> {
    this.#closed = true;
    const socket = this.#socket;
    this.#socket = undefined;
    socket?.close();
    await Promise.allSettled([...this.#retired, socket?.done()]);
    this.#retired = [];
  }
}

/** Go's wording for the socket errors a forwarder sees most. */
function goErrorText(err: unknown): string {
  if (err instanceof Deno.errors.ConnectionRefused) return "connect: connection refused";
  if (err instanceof Deno.errors.ConnectionReset) return "connection reset by peer";
  return (err as Error).message;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

/** Reads exactly `n` bytes, or throws at end of stream. */
async function readFull(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const read = await conn.read(out.subarray(got));
    if (read === null) throw new Error("EOF");
    got += read;
  }
  return out;
}

/** Tracks TCP exchanges so shutdown can cut them. */
export class TcpExchanger {
  #remote: UpstreamAddress;
  #open = new Set<Deno.Conn>();
  #connecting = new Set<Promise<unknown>>();
  #ids = new MessageIds();

  /** Connections go to `remote`. */
  constructor(remote: UpstreamAddress) {
    this.#remote = remote;
  }

  /**
   * One query over a new TCP connection (2-byte length framing); skips
   * replies with other IDs, as CoreDNS's connect.go does.
   */
  async exchange(build: (id: number) => Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const remote = formatAddress(this.#remote);
    const id = this.#ids.next();
    const packet = build(id);
    let conn: Deno.Conn | undefined;
    let timedOut = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => {
        timedOut = true;
        try {
          conn?.close();
        } catch {
          // already closed
        }
        resolve("timeout");
      }, timeoutMs);
    });
    try {
      const connecting = Deno.connect({
        transport: "tcp",
        hostname: this.#remote.host,
        port: this.#remote.port,
      });
      const settled = connecting.then(() => {}, () => {});
      this.#connecting.add(settled);
      settled.finally(() => this.#connecting.delete(settled));
      let first: Deno.Conn | "timeout";
      try {
        first = await Promise.race([connecting, expired]);
      } catch (err) {
        throw new ExchangeError(`dial tcp ${remote}: ${goErrorText(err)}`);
      }
      if (first === "timeout") {
        // Close the connection if it still comes up after we gave up on it.
        connecting.then((c) => c.close(), () => {});
        throw new ExchangeError(`dial tcp ${remote}: i/o timeout`);
      }
      conn = first;
      this.#open.add(conn);
      const local = conn.localAddr as Deno.NetAddr;
      const where = `tcp ${formatAddress({ host: local.hostname, port: local.port })}->${remote}`;
      try {
        const frame = new Uint8Array(packet.length + 2);
        frame[0] = packet.length >> 8;
        frame[1] = packet.length & 0xff;
        frame.set(packet, 2);
        await writeAll(conn, frame);
        while (true) {
          const head = await readFull(conn, 2);
          const body = await readFull(conn, (head[0] << 8) | head[1]);
          if (body.length >= 2 && ((body[0] << 8) | body[1]) === id) return body;
        }
      } catch (err) {
        if (timedOut) throw new ExchangeError(`read ${where}: i/o timeout`);
        throw new ExchangeError(`read ${where}: ${goErrorText(err)}`);
      }
    } finally {
      clearTimeout(timer);
      if (conn) {
        this.#open.delete(conn);
        try {
          conn.close();
        } catch {
          // closed by the timer
        }
      }
    }
  }

  /** Cuts open exchanges and waits for pending connects to settle. */
  async close(): Promise<void> {
    for (const conn of this.#open) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
    await Promise.allSettled([...this.#connecting]);
  }
}

/** Options of one upstream. */
export interface ProxyOptions {
  /** Idle UDP sockets are replaced after this long (ms). */
  expireMs: number;
  /** Pause between health checks of an unhealthy upstream (ms). */
  healthCheckIntervalMs: number;
  /** Health checks over TCP (force_tcp). */
  healthCheckTcp: boolean;
  /** RD bit of health-check queries. */
  healthCheckRecursion: boolean;
  /** Name the health check asks NS for. */
  healthCheckDomain: string;
  /** Timeout of one health-check exchange (ms); default 1 s. */
  healthCheckTimeoutMs?: number;
}

/** One upstream with its health state. */
export class Proxy {
  /** The upstream it sends to. */
  readonly address: UpstreamAddress;
  /** "host:port", for logs and errors. */
  readonly name: string;
  #udp: UdpChannel;
  #tcp: TcpExchanger;
  #options: ProxyOptions;
  #fails = 0;
  #probe?: Promise<void>;
  #stopped = false;
  #sleepTimer?: ReturnType<typeof setTimeout>;
  #wake?: () => void;

  /** An upstream at `address`, health-checked as `options` say. */
  constructor(address: UpstreamAddress, options: ProxyOptions) {
    this.address = address;
    this.name = formatAddress(address);
    this.#options = options;
    this.#udp = new UdpChannel(address, options.expireMs);
    this.#tcp = new TcpExchanger(address);
  }

  /** Consecutive failed health checks. */
  get fails(): number {
    return this.#fails;
  }

  /** Whether more than `maxFails` health checks failed in a row (never with maxFails 0). */
  down(maxFails: number): boolean {
    return maxFails !== 0 && this.#fails > maxFails;
  }

  /** Sends `build(id)` over `transport` and resolves with the raw reply. */
  exchange(
    build: (id: number) => Uint8Array,
    transport: "udp" | "tcp",
    timeoutMs: number,
  ): Promise<Uint8Array> {
    if (this.#stopped) {
      return Promise.reject(new ExchangeError("use of closed network connection"));
    }
    return transport === "udp"
      ? this.#udp.exchange(build, timeoutMs)
      : this.#tcp.exchange(build, timeoutMs);
  }

  /** One `<domain> IN NS` probe; any reply with our ID counts as healthy (CoreDNS's dnsHc). */
  async check(): Promise<boolean> {
    const o = this.#options;
    try {
      const reply = await this.exchange(
        (id) => encodeQuery(id, o.healthCheckDomain, Type.NS, { rd: o.healthCheckRecursion }),
        o.healthCheckTcp ? "tcp" : "udp",
        o.healthCheckTimeoutMs ?? HEALTH_CHECK_TIMEOUT_MS,
      );
      if (reply.length < 12) throw new ExchangeError("short reply");
      this.#fails = 0;
      return true;
    } catch {
      if (!this.#stopped) this.#fails++;
      return false;
    }
  }

  /**
   * Starts probing (unless already probing): check now, then every interval
   * until a check succeeds (CoreDNS's up.Probe).
   */
  healthcheck(): void {
    if (this.#probe || this.#stopped) return;
    this.#probe = (async () => {
      while (!this.#stopped) {
        if (await this.check()) break;
        if (this.#stopped) break;
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
          this.#sleepTimer = setTimeout(resolve, this.#options.healthCheckIntervalMs);
        });
        this.#sleepTimer = undefined;
        this.#wake = undefined;
      }
    })().finally(() => {
      this.#probe = undefined;
    });
  }

  /** Stops health checks and closes every socket. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#sleepTimer);
    this.#wake?.();
    await Promise.allSettled([this.#udp.close(), this.#tcp.close()]);
    await this.#probe;
  }
}
