/**
 * The batched UDP path on Linux: a non-blocking socket made through libc,
 * `recvmmsg` and `sendmmsg` in batches of up to 64 datagrams, `poll` (on
 * Deno's blocking pool) while the socket is empty.
 *
 * Why: `Deno.listenDatagram` costs one async op per datagram (about 2.4
 * syscalls and a futex wake-up per query); on this project's machines that
 * op was over 95% of the server's busy time. Here a busy socket costs well
 * under one syscall per query and the event loop is entered once per turn,
 * not once per datagram.
 *
 * Memory: every byte the kernel reads or writes during a synchronous call
 * (socket, bind, recvmmsg, sendmmsg, read/write of the eventfd) lies in one
 * ArrayBuffer (the arena), allocated when the socket opens and referenced
 * by it until the descriptor is closed, never transferred or detached. It
 * is far larger than 64 bytes, so V8 keeps it off its heap where it cannot
 * move. Replies are copied into the arena before `sendmmsg`; no other
 * JavaScript buffer's address is ever handed to the kernel. The one call
 * that runs on another thread, `poll`, gets a pollfd array in malloc'd
 * memory instead, copied to and from the arena around the call, and freed
 * only after the loop's last poll has returned. Deno does not wait for a
 * nonblocking call when it tears an isolate down (a test module's, a
 * Worker's), so a poll can return after the arena is freed; when the pollfd
 * array lay in the arena, that late write of `revents` corrupted the heap
 * (issue #12's "free(): invalid pointer"). Now it lands in 16 leaked bytes.
 * The struct layouts come from abi.ts alone.
 *
 * One turn of the loop: receive and answer up to {@link MAX_BATCHES_PER_TURN}
 * batches synchronously, sending the replies that were ready after each
 * batch; then `poll`, or, when the last batch was full (more is queued),
 * a macrotask yield first (see the loop for why). Replies that
 * were not ready (a chain that awaits: forward, the etcd copy's first load)
 * are staged when their promise resolves and sent by a microtask through
 * the same socket. `close()` wakes the poll through an eventfd; the poll's
 * 100 ms timeout bounds the wait if that write ever failed.
 *
 * @module
 */

import type { Logger } from "../../log.ts";
import {
  C,
  errnoName,
  getIovecLen,
  getMsgFlags,
  getMsgLen,
  getNamelen,
  getRevents,
  IOVEC,
  MMSGHDR,
  POLLFD,
  readSockaddr,
  setIovecLen,
  setNamelen,
  SOCKADDR_IN6,
  SOCKADDR_PORT,
  writeIovec,
  writeMmsghdr,
  writePollfd,
  writeSockaddr,
} from "./abi.ts";
import { type Libc, type LibcSymbols, openLibc } from "./ffi.ts";
import { addressText, toSockAddr } from "./addr.ts";
import type { UdpHandler, UdpSocket, UdpSource } from "./types.ts";

/** Datagrams per recvmmsg/sendmmsg call at most (the and the probe's 64). */
export const DEFAULT_BATCH = 64;
/** Receive room per datagram: the largest UDP payload fits, so no query is ever cut. */
export const DEFAULT_SLOT = 65_536;
/**
 * Batches handled before the loop yields to the event loop. Under a flood the
 * socket never runs dry; this bounds how long timers and TCP wait (about
 * 4 × 64 datagrams, a millisecond or so).
 */
export const MAX_BATCHES_PER_TURN = 4;
/** poll's timeout: the longest a close can wait if the eventfd wake-up were lost. */
export const POLL_TIMEOUT_MS = 100;

/** The two pollfds the loop waits on: the socket and the eventfd. */
const POLLFDS_BYTES = BigInt(2 * POLLFD.size);
/** Room for a peer address: a sockaddr_in6 (the larger), rounded up to 8 bytes. */
const NAME_STRIDE = Math.ceil(SOCKADDR_IN6.size / 8) * 8;
/** Bytes of scratch space: errno, an int option, a socklen_t, the eventfd counter, a sockaddr. */
const SCRATCH = 64;
const SCRATCH_ERRNO = 0;
const SCRATCH_INT = 8;
const SCRATCH_SOCKLEN = 16;
const SCRATCH_COUNTER = 24;
const SCRATCH_SOCKADDR = 32;

/** Options of {@link BatchedUdp.open} (tests use small slots to provoke truncation). */
export interface BatchOptions {
  /** Datagrams per call, 1..1024. */
  batch?: number;
  /** Receive bytes per datagram; a larger datagram is dropped as truncated (MSG_TRUNC). */
  slot?: number;
}

/** Counters for tests and diagnostics. */
export interface BatchStats {
  /** Datagrams taken from the socket (recvmmsg), truncated ones included. */
  received: number;
  /** Replies the kernel accepted (sendmmsg). */
  sent: number;
  /** Datagrams larger than the receive slot (MSG_TRUNC), dropped. */
  truncated: number;
  /** Replies not sent: the send queue was full while the socket was blocked, or too large. */
  dropped: number;
  /** Replies the kernel refused (no route, bad address, ...), dropped one by one. */
  sendErrors: number;
  /** recvmmsg calls that returned datagrams. */
  batches: number;
  /** poll calls. */
  polls: number;
}

/** Byte offsets of the arena's regions (all 8-byte aligned). */
interface Plan {
  recvVec: number;
  recvIov: number;
  recvNames: number;
  sendVec: number;
  sendIov: number;
  sendNames: number;
  pollfds: number;
  scratch: number;
  recvData: number;
  sendData: number;
  total: number;
}

function plan(batch: number, slot: number): Plan {
  let at = 0;
  const take = (bytes: number) => {
    const start = at;
    at += Math.ceil(bytes / 8) * 8;
    return start;
  };
  const recvVec = take(batch * MMSGHDR.size);
  const recvIov = take(batch * IOVEC.size);
  const recvNames = take(batch * NAME_STRIDE);
  const sendVec = take(batch * MMSGHDR.size);
  const sendIov = take(batch * IOVEC.size);
  const sendNames = take(batch * NAME_STRIDE);
  const pollfds = take(2 * POLLFD.size);
  const scratch = take(SCRATCH);
  const recvData = take(batch * slot);
  const sendData = take(batch * slot);
  return {
    recvVec,
    recvIov,
    recvNames,
    sendVec,
    sendIov,
    sendNames,
    pollfds,
    scratch,
    recvData,
    sendData,
    total: at,
  };
}

/** A system call failed: `errno` says why (e.g. C.EAFNOSUPPORT when the host has no IPv6). */
export class SyscallError extends Error {
  /** The C errno, for callers that react to one cause (compare with `C.E...`). */
  readonly errno: number;
  /** `call` names the failed system call in the message. */
  constructor(call: string, errno: number) {
    super(`${call}: ${errnoName(errno)} (os error ${errno})`);
    this.name = "SyscallError";
    this.errno = errno;
  }
}

/** bind's errno as the error Deno.listenDatagram would throw, so the listener words it the same. */
function bindError(errno: number): Error {
  if (errno === C.EADDRINUSE) {
    return new Deno.errors.AddrInUse("Address already in use (os error 98)");
  }
  if (errno === C.EACCES || errno === C.EPERM) {
    return new Deno.errors.PermissionDenied(`Permission denied (os error ${errno})`);
  }
  if (errno === C.EADDRNOTAVAIL) {
    return new Deno.errors.AddrNotAvailable("Cannot assign requested address (os error 99)");
  }
  return new SyscallError("bind", errno);
}

/** The source of the datagram being handled: reads its receive slot's sockaddr on demand. */
class SlotSource implements UdpSource {
  bytes: Uint8Array;
  at = 0;
  len = 0;
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }
  get address(): string {
    const sa = readSockaddr(this.bytes, this.at, this.len);
    return sa ? addressText(sa.family, sa.addr, 0) : "";
  }
  get port(): number {
    return this.len >= SOCKADDR_PORT + 2
      ? (this.bytes[this.at + SOCKADDR_PORT] << 8) | this.bytes[this.at + SOCKADDR_PORT + 1]
      : 0;
  }
}

/** A UDP socket served with recvmmsg/sendmmsg through libc. */
export class BatchedUdp implements UdpSocket {
  readonly path = "batched" as const;
  readonly localAddress: string;
  readonly localPort: number;
  /** Counters (tests and diagnostics). */
  readonly stats: BatchStats = {
    received: 0,
    sent: 0,
    truncated: 0,
    dropped: 0,
    sendErrors: 0,
    batches: 0,
    polls: 0,
  };

  readonly #libc: Libc;
  readonly #s: LibcSymbols;
  readonly #log: Logger;
  readonly #fd: number;
  readonly #efd: number;
  readonly #batch: number;
  readonly #slot: number;
  /** The arena: kept referenced for the socket's whole life (the kernel holds its addresses). */
  readonly #arena: ArrayBuffer;
  readonly #u8: Uint8Array;
  readonly #view: DataView;
  /** The arena's address, and those of the parts passed to calls (bigint, as FFI wants). */
  readonly #recvVecAddr: bigint;
  /** poll's own pollfd array: malloc'd, freed once no poll can be running (see the module comment). */
  readonly #pollNative: bigint;
  /** The arena's copy of it, where JavaScript reads and writes the fields. */
  readonly #pollAddr: bigint;
  readonly #errnoAddr: bigint;
  readonly #counterAddr: bigint;
  /** The address of send header j, for a sendmmsg that starts there. */
  readonly #sendVecAddr: bigint[];
  readonly #p: Plan;
  readonly #source: SlotSource;
  #closed = false;
  #released = false;
  #loop?: Promise<void>;
  #polling = false;
  /** Staged replies: slots [#sendFrom, #staged) of the send region wait for sendmmsg. */
  #staged = 0;
  #sendFrom = 0;
  /** The last flush stopped at EAGAIN: the next poll waits for POLLOUT too. */
  #blocked = false;
  #flushQueued = false;

  private constructor(
    libc: Libc,
    log: Logger,
    fd: number,
    efd: number,
    arena: { buffer: ArrayBuffer; base: bigint; plan: Plan; pollNative: bigint },
    batch: number,
    slot: number,
    local: { address: string; port: number },
  ) {
    this.#libc = libc;
    this.#s = libc.symbols;
    this.#log = log;
    this.#fd = fd;
    this.#efd = efd;
    this.#arena = arena.buffer;
    this.#u8 = new Uint8Array(this.#arena);
    this.#view = new DataView(this.#arena);
    this.#p = arena.plan;
    const at = (offset: number) => arena.base + BigInt(offset);
    this.#recvVecAddr = at(this.#p.recvVec);
    this.#pollAddr = at(this.#p.pollfds);
    this.#pollNative = arena.pollNative;
    this.#errnoAddr = at(this.#p.scratch + SCRATCH_ERRNO);
    this.#counterAddr = at(this.#p.scratch + SCRATCH_COUNTER);
    this.#sendVecAddr = Array.from(
      { length: batch },
      (_, j) => at(this.#p.sendVec + j * MMSGHDR.size),
    );
    this.#batch = batch;
    this.#slot = slot;
    this.#source = new SlotSource(this.#u8);
    this.localAddress = local.address;
    this.localPort = local.port;
  }

  /**
   * Binds `hostname:port` ("" or "::": every address, IPv4 and IPv6 on one
   * socket). Throws Deno.errors.AddrInUse / PermissionDenied /
   * AddrNotAvailable as Deno.listenDatagram would, a {@link SyscallError}
   * for other failures, and a plain Error when libc cannot be had.
   */
  static open(
    hostname: string,
    port: number,
    log: Logger,
    options: BatchOptions = {},
  ): BatchedUdp {
    const batch = options.batch ?? DEFAULT_BATCH;
    const slot = options.slot ?? DEFAULT_SLOT;
    if (!Number.isInteger(batch) || batch < 1 || batch > 1024) {
      throw new RangeError("batch 1..1024");
    }
    if (!Number.isInteger(slot) || slot < 1 || slot > DEFAULT_SLOT) {
      throw new RangeError(`slot 1..${DEFAULT_SLOT}`);
    }
    const sa = toSockAddr(hostname === "" ? "::" : hostname, port);
    if (!sa) throw new Error(`not an IP address: ${hostname}`);
    const libc = openLibc();
    if (typeof libc === "string") throw new Error(`batched UDP unavailable: ${libc}`);
    const s = libc.symbols;
    let fd = -1, efd = -1, pollNative = 0n;
    try {
      const p = plan(batch, slot);
      const buffer = new ArrayBuffer(p.total);
      const u8 = new Uint8Array(buffer);
      const view = new DataView(buffer);
      const base = libc.addressOf(u8);
      const at = (offset: number) => base + BigInt(offset);
      const scratch = (offset: number) => at(p.scratch + offset);
      const errno = () => libc.errno(scratch(SCRATCH_ERRNO), view, p.scratch + SCRATCH_ERRNO);

      fd = s.socket(sa.family, C.SOCK_DGRAM | C.SOCK_NONBLOCK | C.SOCK_CLOEXEC, 0);
      if (fd < 0) throw new SyscallError("socket", errno());
      if (sa.family === C.AF_INET6) {
        // Dual-stack: IPv4 clients arrive as ::ffff:a.b.c.d, whatever
        // net.ipv6.bindv6only says (the portable path gets the system default).
        view.setInt32(p.scratch + SCRATCH_INT, 0, true);
        if (s.setsockopt(fd, C.IPPROTO_IPV6, C.IPV6_V6ONLY, scratch(SCRATCH_INT), 4) < 0) {
          throw new SyscallError("setsockopt(IPV6_V6ONLY)", errno());
        }
      }
      const len = writeSockaddr(u8, p.scratch + SCRATCH_SOCKADDR, sa);
      if (s.bind(fd, scratch(SCRATCH_SOCKADDR), len) < 0) throw bindError(errno());
      view.setUint32(p.scratch + SCRATCH_SOCKLEN, SCRATCH - SCRATCH_SOCKADDR, true);
      if (s.getsockname(fd, scratch(SCRATCH_SOCKADDR), scratch(SCRATCH_SOCKLEN)) < 0) {
        throw new SyscallError("getsockname", errno());
      }
      const bound = readSockaddr(
        u8,
        p.scratch + SCRATCH_SOCKADDR,
        view.getUint32(p.scratch + SCRATCH_SOCKLEN, true),
      );
      if (!bound) throw new Error("getsockname: no address");
      efd = s.eventfd(0, C.EFD_NONBLOCK | C.EFD_CLOEXEC);
      if (efd < 0) throw new SyscallError("eventfd", errno());
      pollNative = BigInt(s.malloc(BigInt(2 * POLLFD.size)));
      if (pollNative === 0n) throw new SyscallError("malloc", errno());

      // The fixed parts of every header: where each slot's address, iovec and bytes are.
      for (let i = 0; i < batch; i++) {
        for (
          const [vec, iov, names, data] of [
            [p.recvVec, p.recvIov, p.recvNames, p.recvData],
            [p.sendVec, p.sendIov, p.sendNames, p.sendData],
          ]
        ) {
          writeIovec(view, iov + i * IOVEC.size, at(data + i * slot), slot);
          writeMmsghdr(
            view,
            vec + i * MMSGHDR.size,
            at(names + i * NAME_STRIDE),
            SOCKADDR_IN6.size,
            at(iov + i * IOVEC.size),
          );
        }
      }
      return new BatchedUdp(
        libc,
        log,
        fd,
        efd,
        { buffer, base, plan: p, pollNative },
        batch,
        slot,
        {
          address: addressText(bound.family, bound.addr, 0),
          port: bound.port,
        },
      );
    } catch (err) {
      if (pollNative !== 0n) s.free(pollNative);
      if (efd >= 0) s.close(efd);
      if (fd >= 0) s.close(fd);
      throw err;
    }
  }

  serve(handler: UdpHandler): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#loop ??= this.#run(handler);
    return this.#loop;
  }

  #errno(): number {
    return this.#libc.errno(this.#errnoAddr, this.#view, this.#p.scratch + SCRATCH_ERRNO);
  }

  async #run(handler: UdpHandler): Promise<void> {
    const s = this.#s;
    const p = this.#p;
    const view = this.#view;
    const recvVec = this.#recvVecAddr;
    try {
      while (!this.#closed) {
        let more = false;
        for (let turn = 0; turn < MAX_BATCHES_PER_TURN && !this.#closed; turn++) {
          more = false;
          const n = s.recvmmsg(this.#fd, recvVec, this.#batch, C.MSG_DONTWAIT, 0n);
          if (n < 0) {
            const errno = this.#errno();
            if (errno === C.EINTR) continue;
            // EAGAIN: empty. Anything else (a pending ICMP error, ENOMEM) is
            // reported once by the kernel; poll and read on.
            if (errno !== C.EAGAIN) this.#log.debug(`udp recvmmsg: ${errnoName(errno)}`);
            break;
          }
          if (n === 0) break;
          this.stats.batches++;
          this.stats.received += n;
          this.#answer(n, handler);
          this.#flush();
          more = n === this.#batch;
        }
        if (this.#closed) break;
        if (more) {
          // The turn's budget is spent and datagrams are still queued: yield to the
          // macrotask queue (timers, TCP, the lease keep-alive) before the next turn.
          // An already-ready poll did not always let timers run in between (a 0 ms
          // timer waited for a whole queue), and with a poll between turns a node
          // with a 2 s lease lost its keep-alive under a flood of 16,000 queries in
          // flight; with this yield it did not. The price, about 2 ms per yield
          // (Deno's setTimeout(0)), is paid only when a batch comes back full: a
          // flood is answered at about 60k qps here against 70-88k with the poll,
          // and at dnsperf -q 100 (the benchmark) a batch is rarely full (51 yields
          // in 200,000 queries).
          await new Promise<void>((resolve) => setTimeout(resolve, 0));
          continue;
        }
        const wantOut = this.#sendFrom < this.#staged && this.#blocked;
        writePollfd(view, p.pollfds, this.#fd, C.POLLIN | (wantOut ? C.POLLOUT : 0));
        writePollfd(view, p.pollfds + POLLFD.size, this.#efd, C.POLLIN);
        this.stats.polls++;
        this.#polling = true;
        try {
          s.memcpy(this.#pollNative, this.#pollAddr, POLLFDS_BYTES);
          await s.poll(this.#pollNative, 2n, POLL_TIMEOUT_MS);
        } finally {
          this.#polling = false;
        }
        s.memcpy(this.#pollAddr, this.#pollNative, POLLFDS_BYTES);
        if (getRevents(view, p.pollfds + POLLFD.size) & C.POLLIN) {
          // Reset the eventfd; its value does not matter, only that it woke us.
          s.read(this.#efd, this.#counterAddr, 8n);
        }
        if (getRevents(view, p.pollfds) & C.POLLOUT) {
          this.#blocked = false;
          this.#flush();
        }
      }
    } catch (err) {
      // A bug, not a network condition: say so; the descriptors still close.
      this.#log.error(`udp ${this.localAddress}:${this.localPort}: ${(err as Error).stack ?? err}`);
    } finally {
      this.#closed = true;
      this.#release();
    }
  }

  /** Answers the `n` datagrams of the batch just received. */
  #answer(n: number, handler: UdpHandler): void {
    const p = this.#p;
    const view = this.#view;
    const u8 = this.#u8;
    const source = this.#source;
    for (let i = 0; i < n; i++) {
      const h = p.recvVec + i * MMSGHDR.size;
      const len = getMsgLen(view, h);
      const flags = getMsgFlags(view, h);
      const namelen = getNamelen(view, h);
      // The kernel wrote the real lengths; give the next receive the full room again.
      setNamelen(view, h, SOCKADDR_IN6.size);
      if (flags & C.MSG_TRUNC) {
        // Larger than the slot: what we have is not the message, so no answer.
        this.stats.truncated++;
        this.#log.debug(`udp: datagram larger than ${this.#slot} bytes dropped`);
        continue;
      }
      const dataAt = p.recvData + i * this.#slot;
      const nameAt = p.recvNames + i * NAME_STRIDE;
      source.at = nameAt;
      source.len = Math.min(namelen, SOCKADDR_IN6.size);
      let answer;
      try {
        answer = handler(u8.subarray(dataAt, dataAt + len), source);
      } catch (err) {
        this.#log.error(`udp handler: ${(err as Error).message}`);
        continue;
      }
      if (!answer) continue;
      if (answer instanceof Uint8Array) {
        this.#stage(answer, u8, nameAt, source.len);
      } else {
        // The slot is reused by the next batch: keep the peer's address.
        const name = u8.slice(nameAt, nameAt + source.len);
        answer.then((reply) => {
          if (!reply || this.#closed) return;
          this.#stage(reply, name, 0, name.length);
          this.#scheduleFlush();
        }, (err) => this.#log.error(`udp handler: ${(err as Error).message}`));
      }
    }
  }

  /** Copies a reply and its destination into the next send slot (flushing first when all are taken). */
  #stage(reply: Uint8Array, names: Uint8Array, nameAt: number, namelen: number): void {
    if (this.#closed) return;
    if (reply.length > this.#slot || namelen === 0) {
      this.stats.dropped++;
      return;
    }
    if (this.#staged === this.#batch) {
      this.#flush();
      if (this.#staged === this.#batch) {
        // Still full: the socket's send buffer is full too. UDP may drop; we do.
        this.stats.dropped++;
        return;
      }
    }
    const p = this.#p;
    const j = this.#staged++;
    this.#u8.set(names.subarray(nameAt, nameAt + namelen), p.sendNames + j * NAME_STRIDE);
    setNamelen(this.#view, p.sendVec + j * MMSGHDR.size, namelen);
    this.#u8.set(reply, p.sendData + j * this.#slot);
    setIovecLen(this.#view, p.sendIov + j * IOVEC.size, reply.length);
  }

  /** A reply resolved outside the loop: send it (and any others resolved with it) in a microtask. */
  #scheduleFlush(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      if (this.#closed) return;
      this.#flush();
      // The loop's poll is not waiting for POLLOUT: wake it so it does.
      if (this.#blocked && this.#polling) this.#wake();
    });
  }

  /** Sends the staged replies; stops at EAGAIN (the next poll waits for POLLOUT). */
  #flush(): void {
    if (this.#closed) return;
    const s = this.#s;
    while (this.#sendFrom < this.#staged) {
      const from = this.#sendFrom;
      const r = s.sendmmsg(
        this.#fd,
        this.#sendVecAddr[from],
        this.#staged - from,
        C.MSG_DONTWAIT,
      );
      if (r > 0) {
        this.#sendFrom += r;
        this.stats.sent += r;
        continue;
      }
      const errno = this.#errno();
      if (errno === C.EINTR) continue;
      if (errno === C.EAGAIN) {
        this.#blocked = true;
        break;
      }
      // This message cannot go (no route, refused by a firewall, too big):
      // drop it and send the rest; the kernel reports the first failure only.
      this.stats.sendErrors++;
      this.#log.debug(`udp sendmmsg: ${errnoName(errno)}`);
      this.#sendFrom++;
    }
    if (this.#sendFrom === this.#staged) {
      this.#sendFrom = this.#staged = 0;
    } else if (this.#sendFrom > 0) {
      this.#compact();
    }
  }

  /** Moves the unsent slots to the front so new replies find room (after EAGAIN only). */
  #compact(): void {
    const p = this.#p;
    const view = this.#view;
    const u8 = this.#u8;
    let to = 0;
    for (let from = this.#sendFrom; from < this.#staged; from++, to++) {
      const fromVec = p.sendVec + from * MMSGHDR.size;
      const toVec = p.sendVec + to * MMSGHDR.size;
      const namelen = getNamelen(view, fromVec);
      const len = getIovecLen(view, p.sendIov + from * IOVEC.size);
      u8.copyWithin(
        p.sendNames + to * NAME_STRIDE,
        p.sendNames + from * NAME_STRIDE,
        p.sendNames + from * NAME_STRIDE + namelen,
      );
      setNamelen(view, toVec, namelen);
      u8.copyWithin(
        p.sendData + to * this.#slot,
        p.sendData + from * this.#slot,
        p.sendData + from * this.#slot + len,
      );
      setIovecLen(view, p.sendIov + to * IOVEC.size, len);
    }
    this.#staged = to;
    this.#sendFrom = 0;
  }

  /** Makes the loop's poll return now (eventfd readable). */
  #wake(): void {
    this.#view.setBigUint64(this.#p.scratch + SCRATCH_COUNTER, 1n, true);
    this.#s.write(this.#efd, this.#counterAddr, 8n);
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    // No poll is running: #release runs after the loop's last await, or
    // instead of a loop that never started.
    this.#s.free(this.#pollNative);
    this.#s.close(this.#efd);
    this.#s.close(this.#fd);
  }

  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      if (this.#loop) this.#wake();
      else this.#release();
    }
    await this.#loop;
  }
}
