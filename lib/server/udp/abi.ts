/**
 * The C ABI the batched UDP path talks to: every struct layout, every
 * constant, and the only code that writes or reads those structs' fields.
 *
 * A wrong offset or length here lets the kernel write over the JavaScript
 * heap (silent corruption, or a SIGSEGV of the whole process), so nothing
 * else in the project spells a number of this kind: the batch loop asks this
 * module for offsets and uses its accessors. `abi_test.ts` compiles a tiny C
 * program (tests/helpers/abi_probe.c) and checks every figure here against
 * the machine's own headers.
 *
 * The figures are those of Linux with glibc on x86_64 and aarch64. Both are
 * LP64, little-endian, and use the asm-generic socket, poll, errno and fcntl
 * numbers, so one table serves both. Other ABIs differ (musl's `msghdr`
 * has `int msg_iovlen` and padding; macOS has `sin_len` and no
 * `recvmmsg`), which is why {@link abiSupported} says no to anything else
 * and the portable path (`Deno.listenDatagram`) is used there.
 *
 * @module
 */

/** One field of a C struct: byte offset and width. */
export interface Field {
  /** Bytes from the start of the struct (what `offsetof` gives). */
  readonly offset: number;
  /** Bytes the field occupies, so writers pick the right DataView setter. */
  readonly size: number;
}

/** A C struct: its `sizeof`, `_Alignof` and fields by their C names. */
export interface Layout<F extends string> {
  /** `sizeof`: the stride between elements of an array of these structs. */
  readonly size: number;
  /** `_Alignof`: where such a struct may start inside a larger buffer. */
  readonly align: number;
  /** Each field's place, checked against the C compiler's by the ABI test. */
  readonly fields: Readonly<Record<F, Field>>;
}

/** `struct sockaddr_in` (netinet/in.h). Port and address are in network byte order. */
export const SOCKADDR_IN: Layout<"sin_family" | "sin_port" | "sin_addr"> = {
  size: 16,
  align: 4,
  fields: {
    sin_family: { offset: 0, size: 2 },
    sin_port: { offset: 2, size: 2 },
    sin_addr: { offset: 4, size: 4 },
  },
};

/** `struct sockaddr_in6` (netinet/in.h). */
export const SOCKADDR_IN6: Layout<
  "sin6_family" | "sin6_port" | "sin6_flowinfo" | "sin6_addr" | "sin6_scope_id"
> = {
  size: 28,
  align: 4,
  fields: {
    sin6_family: { offset: 0, size: 2 },
    sin6_port: { offset: 2, size: 2 },
    sin6_flowinfo: { offset: 4, size: 4 },
    sin6_addr: { offset: 8, size: 16 },
    sin6_scope_id: { offset: 24, size: 4 },
  },
};

/** `struct iovec` (sys/uio.h). */
export const IOVEC: Layout<"iov_base" | "iov_len"> = {
  size: 16,
  align: 8,
  fields: {
    iov_base: { offset: 0, size: 8 },
    iov_len: { offset: 8, size: 8 },
  },
};

/** `struct msghdr` (sys/socket.h), glibc's: `size_t msg_iovlen` and `size_t msg_controllen`. */
export const MSGHDR: Layout<
  | "msg_name"
  | "msg_namelen"
  | "msg_iov"
  | "msg_iovlen"
  | "msg_control"
  | "msg_controllen"
  | "msg_flags"
> = {
  size: 56,
  align: 8,
  fields: {
    msg_name: { offset: 0, size: 8 },
    msg_namelen: { offset: 8, size: 4 },
    msg_iov: { offset: 16, size: 8 },
    msg_iovlen: { offset: 24, size: 8 },
    msg_control: { offset: 32, size: 8 },
    msg_controllen: { offset: 40, size: 8 },
    msg_flags: { offset: 48, size: 4 },
  },
};

/** `struct mmsghdr` (sys/socket.h, _GNU_SOURCE): a msghdr and the byte count the kernel fills in. */
export const MMSGHDR: Layout<"msg_hdr" | "msg_len"> = {
  size: 64,
  align: 8,
  fields: {
    msg_hdr: { offset: 0, size: 56 },
    msg_len: { offset: 56, size: 4 },
  },
};

/** `struct pollfd` (poll.h). */
export const POLLFD: Layout<"fd" | "events" | "revents"> = {
  size: 8,
  align: 4,
  fields: {
    fd: { offset: 0, size: 4 },
    events: { offset: 4, size: 2 },
    revents: { offset: 6, size: 2 },
  },
};

/** Every layout by its C name, for the ABI test. */
export const LAYOUTS: Readonly<Record<string, Layout<string>>> = {
  sockaddr_in: SOCKADDR_IN,
  sockaddr_in6: SOCKADDR_IN6,
  iovec: IOVEC,
  msghdr: MSGHDR,
  mmsghdr: MMSGHDR,
  pollfd: POLLFD,
};

/** Widths of the scalar types the FFI signatures in ffi.ts pass. */
export const SCALARS = {
  int: 4,
  short: 2,
  socklen_t: 4,
  sa_family_t: 2,
  in_port_t: 2,
  size_t: 8,
  ssize_t: 8,
  nfds_t: 8,
  eventfd_t: 8,
  "void*": 8,
} as const;

/** The constants, by their C names. */
export const C = {
  AF_INET: 2,
  AF_INET6: 10,
  SOCK_DGRAM: 2,
  SOCK_NONBLOCK: 0o4000,
  SOCK_CLOEXEC: 0o2000000,
  IPPROTO_UDP: 17,
  IPPROTO_IPV6: 41,
  IPV6_V6ONLY: 26,
  SOL_SOCKET: 1,
  SO_REUSEADDR: 2,
  SO_RCVBUF: 8,
  SO_SNDBUF: 7,
  MSG_CTRUNC: 0x8,
  MSG_TRUNC: 0x20,
  MSG_DONTWAIT: 0x40,
  POLLIN: 0x1,
  POLLOUT: 0x4,
  POLLERR: 0x8,
  POLLHUP: 0x10,
  POLLNVAL: 0x20,
  EFD_NONBLOCK: 0o4000,
  EFD_CLOEXEC: 0o2000000,
  EPERM: 1,
  EINTR: 4,
  EBADF: 9,
  EAGAIN: 11,
  EWOULDBLOCK: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  EMSGSIZE: 90,
  EAFNOSUPPORT: 97,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ENETUNREACH: 101,
  ENOBUFS: 105,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
} as const;

/** The errno names of {@link C}, for messages (strerror's text is a C string FFI may not read). */
const ERRNO_NAMES = new Map<number, string>(
  Object.entries(C).filter(([name]) => /^E[A-Z]+$/.test(name) && name !== "EWOULDBLOCK").map((
    [name, value],
  ) => [value, name]),
);

/** "EADDRINUSE" for 98; "errno N" for numbers not in the table. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

/**
 * Why this table does not describe the machine, or undefined when it does:
 * Linux on x86_64 or aarch64, little-endian. (glibc itself is checked when
 * libc is opened: ffi.ts requires `gnu_get_libc_version`.)
 */
export function abiSupported(
  os: string = Deno.build.os,
  arch: string = Deno.build.arch,
): string | undefined {
  if (os !== "linux") return `${os} has no recvmmsg/sendmmsg with these layouts`;
  if (arch !== "x86_64" && arch !== "aarch64") return `no ABI table for linux ${arch}`;
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) return "not little-endian";
  return undefined;
}

// The accessors below hard-code the widths they write; these checks tie
// them to the tables above, so changing a width without the accessor fails
// at load time instead of corrupting memory.
function expectWidth(field: Field, size: number, what: string): void {
  if (field.size !== size) {
    throw new Error(`abi.ts: ${what} is ${field.size} bytes, accessor writes ${size}`);
  }
}
expectWidth(MSGHDR.fields.msg_name, 8, "msg_name");
expectWidth(MSGHDR.fields.msg_namelen, 4, "msg_namelen");
expectWidth(MSGHDR.fields.msg_iov, 8, "msg_iov");
expectWidth(MSGHDR.fields.msg_iovlen, 8, "msg_iovlen");
expectWidth(MSGHDR.fields.msg_control, 8, "msg_control");
expectWidth(MSGHDR.fields.msg_controllen, 8, "msg_controllen");
expectWidth(MSGHDR.fields.msg_flags, 4, "msg_flags");
expectWidth(MMSGHDR.fields.msg_len, 4, "msg_len");
expectWidth(IOVEC.fields.iov_base, 8, "iov_base");
expectWidth(IOVEC.fields.iov_len, 8, "iov_len");
expectWidth(POLLFD.fields.fd, 4, "pollfd.fd");
expectWidth(POLLFD.fields.events, 2, "pollfd.events");
expectWidth(POLLFD.fields.revents, 2, "pollfd.revents");

const TWO_32 = 2 ** 32;

/** Writes a size_t given as a number (no bigint on the per-message path). */
function setSize(view: DataView, at: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`not a size_t: ${value}`);
  view.setUint32(at, value % TWO_32, true);
  view.setUint32(at + 4, Math.floor(value / TWO_32), true);
}

/** Writes a pointer (an address from ffi.ts). */
function setPointer(view: DataView, at: number, address: bigint): void {
  view.setBigUint64(at, address, true);
}

/**
 * Fills one `struct iovec` at `at` (a byte offset into `view`): `base` is
 * the address of the bytes, `len` their count.
 */
export function writeIovec(view: DataView, at: number, base: bigint, len: number): void {
  setPointer(view, at + IOVEC.fields.iov_base.offset, base);
  setSize(view, at + IOVEC.fields.iov_len.offset, len);
}

/** Sets one iovec's `iov_len` (the base stays). */
export function setIovecLen(view: DataView, at: number, len: number): void {
  setSize(view, at + IOVEC.fields.iov_len.offset, len);
}

/** One iovec's `iov_len`. */
export function getIovecLen(view: DataView, at: number): number {
  const o = at + IOVEC.fields.iov_len.offset;
  return view.getUint32(o, true) + view.getUint32(o + 4, true) * TWO_32;
}

/**
 * Fills one `struct mmsghdr` at `at` for a single-buffer message: the peer's
 * sockaddr at address `name` (room for `namelen` bytes), one iovec at
 * address `iov`, no control data, flags and msg_len zero.
 */
export function writeMmsghdr(
  view: DataView,
  at: number,
  name: bigint,
  namelen: number,
  iov: bigint,
): void {
  const h = at + MMSGHDR.fields.msg_hdr.offset;
  const f = MSGHDR.fields;
  setPointer(view, h + f.msg_name.offset, name);
  view.setUint32(h + f.msg_namelen.offset, namelen, true);
  view.setUint32(h + f.msg_namelen.offset + 4, 0, true); // padding before msg_iov
  setPointer(view, h + f.msg_iov.offset, iov);
  setSize(view, h + f.msg_iovlen.offset, 1);
  setPointer(view, h + f.msg_control.offset, 0n);
  setSize(view, h + f.msg_controllen.offset, 0);
  view.setInt32(h + f.msg_flags.offset, 0, true);
  view.setUint32(at + MMSGHDR.fields.msg_len.offset, 0, true);
}

/** Byte offsets, inside one mmsghdr, of the fields the hot loop touches per message. */
export const MMSG_NAMELEN: number = MMSGHDR.fields.msg_hdr.offset +
  MSGHDR.fields.msg_namelen.offset;
/** See {@link MMSG_NAMELEN}. */
export const MMSG_FLAGS: number = MMSGHDR.fields.msg_hdr.offset + MSGHDR.fields.msg_flags.offset;
/** See {@link MMSG_NAMELEN}. */
export const MMSG_LEN: number = MMSGHDR.fields.msg_len.offset;

/** Sets `msg_namelen` of the mmsghdr at `at` (before a receive: the room; before a send: the length). */
export function setNamelen(view: DataView, at: number, namelen: number): void {
  view.setUint32(at + MMSG_NAMELEN, namelen, true);
}

/** The `msg_namelen` the kernel left in the mmsghdr at `at`. */
export function getNamelen(view: DataView, at: number): number {
  return view.getUint32(at + MMSG_NAMELEN, true);
}

/** The `msg_flags` the kernel left in the mmsghdr at `at` (MSG_TRUNC and friends). */
export function getMsgFlags(view: DataView, at: number): number {
  return view.getInt32(at + MMSG_FLAGS, true);
}

/** The `msg_len` (bytes received or sent) of the mmsghdr at `at`. */
export function getMsgLen(view: DataView, at: number): number {
  return view.getUint32(at + MMSG_LEN, true);
}

/** Fills the `struct pollfd` at `at`. */
export function writePollfd(view: DataView, at: number, fd: number, events: number): void {
  view.setInt32(at + POLLFD.fields.fd.offset, fd, true);
  view.setInt16(at + POLLFD.fields.events.offset, events, true);
  view.setInt16(at + POLLFD.fields.revents.offset, 0, true);
}

/** The `revents` of the pollfd at `at`. */
export function getRevents(view: DataView, at: number): number {
  return view.getInt16(at + POLLFD.fields.revents.offset, true);
}

/** A socket address in the family's own layout: AF_INET (4 address bytes) or AF_INET6 (16). */
export interface SockAddr {
  /** `C.AF_INET` or `C.AF_INET6`; picks the layout written and read. */
  family: number;
  /** 4 bytes for AF_INET, 16 for AF_INET6. */
  addr: Uint8Array;
  /** In host order; converted to network order when written. */
  port: number;
}

/**
 * Writes `sa` at `at` as a sockaddr_in or sockaddr_in6 (zeroing the whole
 * struct first) and returns its length, the socklen_t to pass with it.
 */
export function writeSockaddr(bytes: Uint8Array, at: number, sa: SockAddr): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (sa.family === C.AF_INET) {
    const f = SOCKADDR_IN.fields;
    if (sa.addr.length !== f.sin_addr.size) throw new RangeError("AF_INET needs 4 address bytes");
    bytes.fill(0, at, at + SOCKADDR_IN.size);
    view.setUint16(at + f.sin_family.offset, C.AF_INET, true);
    view.setUint16(at + f.sin_port.offset, sa.port, false);
    bytes.set(sa.addr, at + f.sin_addr.offset);
    return SOCKADDR_IN.size;
  }
  if (sa.family === C.AF_INET6) {
    const f = SOCKADDR_IN6.fields;
    if (sa.addr.length !== f.sin6_addr.size) {
      throw new RangeError("AF_INET6 needs 16 address bytes");
    }
    bytes.fill(0, at, at + SOCKADDR_IN6.size);
    view.setUint16(at + f.sin6_family.offset, C.AF_INET6, true);
    view.setUint16(at + f.sin6_port.offset, sa.port, false);
    bytes.set(sa.addr, at + f.sin6_addr.offset);
    return SOCKADDR_IN6.size;
  }
  throw new RangeError(`unknown address family ${sa.family}`);
}

/**
 * Reads the sockaddr of `len` bytes at `at`, or undefined when it is not a
 * whole sockaddr_in / sockaddr_in6 (the kernel's answer is trusted only as
 * far as its length says). The address bytes are a copy.
 */
export function readSockaddr(bytes: Uint8Array, at: number, len: number): SockAddr | undefined {
  if (len < 2) return undefined;
  const family = bytes[at] | (bytes[at + 1] << 8);
  const port = (bytes[at + 2] << 8) | bytes[at + 3];
  if (family === C.AF_INET && len >= SOCKADDR_IN.size) {
    const o = at + SOCKADDR_IN.fields.sin_addr.offset;
    return { family, port, addr: bytes.slice(o, o + 4) };
  }
  if (family === C.AF_INET6 && len >= SOCKADDR_IN6.size) {
    const o = at + SOCKADDR_IN6.fields.sin6_addr.offset;
    return { family, port, addr: bytes.slice(o, o + 16) };
  }
  return undefined;
}

/** Offset of the port in both sockaddr layouts (the same place in each), for the hot path. */
export const SOCKADDR_PORT: number = SOCKADDR_IN.fields.sin_port.offset;
if (SOCKADDR_IN6.fields.sin6_port.offset !== SOCKADDR_PORT) {
  throw new Error("abi.ts: sin_port and sin6_port differ in offset");
}
