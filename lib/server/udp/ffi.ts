/**
 * The libc functions the batched UDP path calls, through Deno FFI.
 *
 * Every pointer crosses as a plain address (`usize`, always a bigint:
 * Deno 2 types 64-bit parameters as bigint, and a number passed there
 * instead took a slow path and, in a probe, crashed the process once the
 * call was optimised), never as a Deno pointer object: with `--allow-ffi` limited to libc's path (how the release
 * binary is built) Deno refuses `Deno.UnsafePointer.of` and
 * `Deno.UnsafePointerView`, and only calling a library's symbols is allowed.
 * The addresses of the batch loop's buffers are learnt from libc itself
 * (`memmove(p, p, 0)` returns `p`), and errno is read by copying it out of
 * `__errno_location()` with `memcpy`.
 *
 * Deno FFI has no errno of its own: {@link Libc.errno} must be called right
 * after the failing call, in the same synchronous turn, so that nothing else
 * on this thread touches errno in between. A `nonblocking: true` call (poll)
 * runs on another thread, so its errno is lost; the loop never needs it.
 *
 * libc is opened once per isolate (the main one, each Worker, each test
 * module of `deno test`), on first use, and never closed by this code
 * ({@link openLibc}); Deno drops the handle when the isolate ends. The
 * library is mapped into the process anyway (Deno links it), so the handle
 * costs nothing and a dlclose never unmaps it.
 *
 * The one call that runs on another thread, `poll`, may outlive the isolate
 * that made it (Deno does not wait for a `nonblocking` call when it tears an
 * isolate down), so it must be given memory that is still owned then:
 * malloc'd, never an ArrayBuffer (batch_loop.ts). Giving it the arena was
 * the cause of issue #12's "free(): invalid pointer": poll wrote `revents`
 * into the arena after the isolate had freed it.
 *
 * @module
 */

import { abiSupported } from "./abi.ts";

/**
 * Where glibc's `libc.so.6` lives on the distributions idetcd ships for,
 * by architecture. Absolute paths, because `--allow-ffi=libc.so.6` is
 * resolved against the working directory; the release binary is compiled
 * with `--allow-ffi=` this list (scripts/compile.ts), and the first path
 * that the permission covers and that opens is used.
 */
export const LIBC_PATHS: Readonly<Record<"x86_64" | "aarch64", readonly string[]>> = {
  x86_64: [
    "/lib/x86_64-linux-gnu/libc.so.6", // Debian, Ubuntu
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/lib64/libc.so.6", // Fedora, RHEL, SUSE, Amazon Linux
    "/usr/lib64/libc.so.6",
    "/usr/lib/libc.so.6", // Arch
  ],
  aarch64: [
    "/lib/aarch64-linux-gnu/libc.so.6",
    "/usr/lib/aarch64-linux-gnu/libc.so.6",
    "/lib64/libc.so.6",
    "/usr/lib64/libc.so.6",
    "/usr/lib/libc.so.6",
  ],
};

/**
 * The FFI signatures. Pointers are `usize` addresses (see the module comment).
 * Exported for the types derived from it ({@link LibcSymbols}); open it only
 * through {@link openLibc}.
 */
export const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "usize", "u32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "usize", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "usize", "usize"], result: "i32" },
  recvmmsg: { parameters: ["i32", "usize", "u32", "i32", "usize"], result: "i32" },
  sendmmsg: { parameters: ["i32", "usize", "u32", "i32"], result: "i32" },
  // Runs on Deno's blocking pool so the event loop keeps running while the
  // socket is idle; a blocking call on the main thread would starve timers,
  // TCP and signal handlers.
  poll: { parameters: ["usize", "u64", "i32"], result: "i32", nonblocking: true },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  read: { parameters: ["i32", "usize", "usize"], result: "isize" },
  write: { parameters: ["i32", "usize", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "usize" },
  memcpy: { parameters: ["usize", "usize", "usize"], result: "usize" },
  // The address of a JavaScript buffer: memmove(p, p, 0) copies nothing and returns p.
  memmove: { parameters: ["buffer", "buffer", "usize"], result: "usize" },
  // Native memory for the one structure another thread writes (poll's pollfd
  // array): never memory the garbage collector owns.
  malloc: { parameters: ["usize"], result: "usize" },
  free: { parameters: ["usize"], result: "void" },
  // Only glibc has it: opening fails on another libc whose layouts abi.ts does not describe.
  gnu_get_libc_version: { parameters: [], result: "usize" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The opened library's functions. */
export type LibcSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** An opened libc: its functions and the helpers that stand in for pointer access. */
export interface Libc {
  /** The handle, kept referenced so that it lives as long as this object (it is never closed). */
  readonly library: Deno.DynamicLibrary<typeof SYMBOLS>;
  /** The bound functions, typed from {@link SYMBOLS}. */
  readonly symbols: LibcSymbols;
  /** The path it was opened from. */
  readonly path: string;
  /** The address of `buffer`'s first byte (valid while `buffer` is referenced and not detached). */
  addressOf(buffer: Uint8Array): bigint;
  /**
   * errno of the last failed call on this thread. `scratch` is the address
   * of 4 writable bytes that `scratchView` reads (the caller's own buffer,
   * so nothing is allocated on an error path).
   */
  errno(scratch: bigint, scratchView: DataView, scratchOffset: number): number;
}

function wrap(lib: Deno.DynamicLibrary<typeof SYMBOLS>, path: string): Libc {
  const s = lib.symbols;
  return {
    library: lib,
    symbols: s,
    path,
    addressOf(buffer) {
      // A view of an ArrayBuffer made with `new ArrayBuffer(n)` has its bytes
      // outside V8's heap, where no collection moves them; a resizable one may
      // move when it grows. (A small `new Uint8Array(n)` may live on the heap.)
      if (buffer.buffer instanceof SharedArrayBuffer || buffer.buffer.resizable) {
        throw new TypeError("addressOf: want a fixed-length, non-shared ArrayBuffer");
      }
      return BigInt(s.memmove(buffer, buffer, 0n));
    },
    errno(scratch, view, offset) {
      s.memcpy(scratch, BigInt(s.__errno_location()), 4n);
      return view.getInt32(offset, true);
    },
  };
}

/** What {@link findLibc} found: a library to use, or why there is none. */
export type LibcProbe =
  | { ok: true; lib: Deno.DynamicLibrary<typeof SYMBOLS>; path: string }
  | { ok: false; reason: string };

/**
 * Opens the first libc path of this architecture that the FFI permission
 * covers. Asks the permission first (never prompts): a denied or
 * unanswered permission means the portable path, not a question.
 */
export function findLibc(
  arch: string = Deno.build.arch,
  paths: readonly string[] = LIBC_PATHS[arch as "x86_64"] ?? [],
): LibcProbe {
  const unsupported = abiSupported();
  if (unsupported) return { ok: false, reason: unsupported };
  const failures: string[] = [];
  let granted = 0;
  for (const path of paths) {
    let state: Deno.PermissionState;
    try {
      state = Deno.permissions.querySync({ name: "ffi", path }).state;
    } catch {
      state = "denied";
    }
    if (state !== "granted") continue;
    granted++;
    try {
      return { ok: true, lib: Deno.dlopen(path, SYMBOLS), path };
    } catch (err) {
      failures.push(`${path}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  if (granted === 0) {
    return {
      ok: false,
      reason: `no FFI permission for libc (run with --allow-ffi=${paths.join(",")})`,
    };
  }
  return { ok: false, reason: `cannot open glibc: ${failures.join("; ")}` };
}

let opened: Libc | string | undefined;

/**
 * This isolate's libc, opened on the first call and kept for the isolate's
 * life, or why it cannot be had (asked once: the answer does not change
 * while the process runs).
 */
export function openLibc(): Libc | string {
  if (opened === undefined) {
    const probe = findLibc();
    opened = probe.ok ? wrap(probe.lib, probe.path) : probe.reason;
  }
  return opened;
}
