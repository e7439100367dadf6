/**
 * Hands the C allocator's free memory back to the system after a burst.
 *
 * Why: the etcd client's gRPC traffic is made of many small native
 * allocations (the backing stores of the Buffers that grpc-js and protobufjs
 * create per frame and per field). A burst of them, a watch response
 * carrying 100,000 deletions or a re-list of a big prefix, is freed after
 * the next GC, but glibc keeps the freed chunks in its arenas: measured here,
 * about 25 MB of RSS stayed after 100,000 keys had come and gone, until
 * `malloc_trim(0)` gave it back. So while a process holds an etcd client, a
 * {@link MallocTrimmer} looks at the RSS every few seconds and, when it has
 * grown well above the lowest seen, asks glibc to trim (backing off while
 * trims give nothing back: the memory is then in use, not free).
 *
 * The moment that pays is just after V8's memory reducer has run: about 8-10 s
 * after a burst ends it collects the heap, freeing the native buffers the
 * garbage held, and a second pass follows some seconds later (measured here
 * after 1,000,000 random-name queries: RSS 266 -> 138 -> 125 MB, then 114 MB
 * once trimmed). Each pass shows as a fall in the RSS, which ends any backoff,
 * so the look is frequent (it is one read of the RSS) and the trim follows
 * each pass within seconds rather than a whole interval later.
 *
 * Linux glibc only, and only with the FFI permission for libc (which the
 * release binary and `deno task start` grant for the batched UDP path);
 * elsewhere nothing happens.
 *
 * @module
 */

import { LIBC_PATHS } from "../server/udp/ffi.ts";

/** How often the RSS is looked at, ms (a look is one read of the RSS; trims are rarer). */
export const TRIM_INTERVAL_MS = 2_000;
/** RSS above the lowest seen that is worth a trim, bytes. */
export const TRIM_SLACK_BYTES = 8 * 1024 * 1024;
/** A trim that gives back less than this counts as fruitless (the next ones back off), bytes. */
const FRUITFUL_BYTES = 2 * 1024 * 1024;
/**
 * The most ticks skipped after fruitless trims (10 s at the default
 * interval): a trim costs milliseconds while a big copy of etcd is live, and
 * memory freed by a GC that the RSS does not show falling (freed to the
 * allocator, not unmapped) should not wait long for one: measured after
 * 100,000 keys were deleted, 26 MB were still free in the arenas 25 s after
 * the fall with a 30 s ceiling.
 */
const MAX_BACKOFF_TICKS = 5;
/**
 * Ticks after a fall in the RSS on which a trim is tried even when the last
 * gave nothing: V8 frees the collected garbage's ArrayBuffer memory on a
 * background thread, after the collection that showed as the fall.
 */
const EAGER_TICKS = 5;

/** Options for {@link MallocTrimmer}; the defaults are the process's own. */
export interface MallocTrimmerOptions {
  /** Asks the allocator to give free memory back (glibc's `malloc_trim(0)`). */
  trim: () => void;
  /** The process's resident set size, bytes. */
  rss?: () => number;
  /** RSS above the lowest seen that is worth a trim, bytes. */
  slackBytes?: number;
}

/** Decides, once per {@link MallocTrimmer.tick}, whether a trim is worth it, and does it. */
export class MallocTrimmer {
  #trim: () => void;
  #rss: () => number;
  #slack: number;
  #floor = Infinity;
  #last = 0; // no fall before the first look
  #skip = 0;
  #backoff = 1;
  #eager = 0;
  #trims = 0;

  /** A trimmer that does nothing until ticked. */
  constructor(options: MallocTrimmerOptions) {
    this.#trim = options.trim;
    this.#rss = options.rss ?? (() => Deno.memoryUsage().rss);
    this.#slack = options.slackBytes ?? TRIM_SLACK_BYTES;
  }

  /** Trims done so far. */
  get trims(): number {
    return this.#trims;
  }

  /** One look at the RSS: trims when it is well above the lowest seen. */
  tick(): void {
    const rss = this.#rss();
    this.#floor = Math.min(this.#floor, rss);
    // A fall since the last look is a GC giving memory back (V8's heap, and
    // the native buffers it held): the moment a trim pays, backoff or not.
    // The next few looks trim without backoff (EAGER_TICKS): the trim at the
    // fall may find little, and the one that pays comes a tick or two later.
    if (rss < this.#last - FRUITFUL_BYTES) {
      this.#skip = 0;
      this.#backoff = 1;
      this.#eager = EAGER_TICKS;
    }
    this.#last = rss;
    if (rss <= this.#floor + this.#slack) {
      this.#backoff = 1;
      this.#skip = 0;
      return;
    }
    if (this.#skip > 0) {
      this.#skip--;
      return;
    }
    this.#trim();
    this.#trims++;
    const after = this.#rss();
    this.#floor = Math.min(this.#floor, after);
    this.#last = after;
    if (this.#eager > 0) {
      this.#eager--;
    } else if (rss - after < FRUITFUL_BYTES) {
      // What is resident is in use (a big copy of etcd): look again later.
      this.#skip = this.#backoff;
      this.#backoff = Math.min(this.#backoff * 2, MAX_BACKOFF_TICKS);
    } else {
      this.#backoff = 1;
    }
  }
}

/**
 * glibc's `malloc_trim(0)` through FFI, or undefined where it cannot be had
 * (not Linux, no glibc at the known paths, no FFI permission for it). Never
 * prompts for the permission.
 */
export function openMallocTrim(): (() => void) | undefined {
  if (Deno.build.os !== "linux") return undefined;
  const paths = LIBC_PATHS[Deno.build.arch as "x86_64" | "aarch64"] ?? [];
  for (const path of paths) {
    try {
      if (Deno.permissions.querySync({ name: "ffi", path }).state !== "granted") continue;
      Deno.statSync(path);
      // Not closed: libc stays mapped for the process's life anyway.
      const lib = Deno.dlopen(
        path,
        {
          malloc_trim: { parameters: ["usize"], result: "i32" },
        } as const,
      );
      return () => void lib.symbols.malloc_trim(0n);
    } catch {
      // Not there, or not glibc (no malloc_trim): try the next path.
    }
  }
  return undefined;
}

/**
 * Ticks a {@link MallocTrimmer} every {@link TRIM_INTERVAL_MS} without
 * keeping the process alive; `close()` stops it. Does nothing where
 * {@link openMallocTrim} finds no `malloc_trim`.
 */
export function startMallocTrimmer(): { close(): void } {
  const trim = openMallocTrim();
  if (!trim) return { close() {} };
  const trimmer = new MallocTrimmer({ trim });
  const timer = setInterval(() => trimmer.tick(), TRIM_INTERVAL_MS);
  Deno.unrefTimer(timer);
  return { close: () => clearInterval(timer) };
}
