/**
 * Child processes with time-stamped output lines, registered for clean-up.
 *
 * @module
 */

import type { Scope } from "./cleanup.ts";

/** One line a child printed, with the time (performance.now()) it arrived. */
export interface Line {
  at: number;
  text: string;
}

/** Options for {@link spawn}. */
export interface SpawnOptions {
  cwd?: string;
  env?: Record<string, string>;
}

/** A running child process. */
export class Proc {
  readonly pid: number;
  /** performance.now() just before the spawn. */
  readonly spawnedAt: number;
  readonly lines: Line[] = [];
  /** Resolves with the exit code once the process has exited and its output is read. */
  readonly exited: Promise<number>;
  #child: Deno.ChildProcess;
  #code?: number;
  #waiters = new Set<() => void>();

  constructor(command: string, args: string[], options: SpawnOptions = {}) {
    this.spawnedAt = performance.now();
    this.#child = new Deno.Command(command, {
      args,
      cwd: options.cwd,
      env: { NO_COLOR: "1", ...options.env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    const pumps = Promise.all([this.#pump(this.#child.stdout), this.#pump(this.#child.stderr)]);
    this.exited = this.#child.status.then(async (status) => {
      await pumps;
      this.#code = status.code;
      this.#notify();
      return status.code;
    });
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let partial = "";
    for await (const chunk of stream) {
      // Stamp lines when their bytes arrive: that is what "time to the claimed line" measures.
      const at = performance.now();
      partial += decoder.decode(chunk, { stream: true });
      const parts = partial.split("\n");
      partial = parts.pop()!;
      for (const text of parts) this.lines.push({ at, text });
      if (parts.length > 0) this.#notify();
    }
    if (partial) this.lines.push({ at: performance.now(), text: partial });
  }

  #notify(): void {
    for (const wake of this.#waiters) wake();
  }

  /** Everything printed so far. */
  output(): string {
    return this.lines.map((l) => l.text).join("\n");
  }

  /** True once the process has exited. */
  get hasExited(): boolean {
    return this.#code !== undefined;
  }

  /** Waits for the first line matching `pattern`; throws on exit or after `timeoutMs`. */
  async waitForLine(pattern: RegExp, timeoutMs = 30_000): Promise<Line> {
    const deadline = performance.now() + timeoutMs;
    while (true) {
      const line = this.lines.find((l) => pattern.test(l.text));
      if (line) return line;
      if (this.#code !== undefined) {
        throw new Error(
          `process ${this.pid} exited with ${this.#code} before printing ${pattern}:\n${this.output()}`,
        );
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Error(
          `timed out waiting for ${pattern} from process ${this.pid}:\n${this.output()}`,
        );
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, Math.min(left, 1_000));
        this.#waiters.add(wake);
      });
    }
  }

  /** Sends a signal (ignored once the process is gone). */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.#code !== undefined) return;
    try {
      this.#child.kill(signal);
    } catch {
      // already exited
    }
  }

  /** SIGTERM, SIGKILL after `graceMs`, and waits for the exit. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.#code !== undefined) {
      await this.exited;
      return;
    }
    this.kill("SIGTERM");
    const timer = setTimeout(() => this.kill("SIGKILL"), graceMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Spawns `command` and registers its stop with `scope`. */
export function spawn(
  scope: Scope,
  command: string,
  args: string[],
  options: SpawnOptions = {},
): Proc {
  const proc = new Proc(command, args, options);
  scope.defer(() => proc.stop());
  return proc;
}

/** The resident set size of a process, and its peak, in bytes (Linux /proc). */
export async function memoryOf(pid: number): Promise<{ rss: number; peak: number } | undefined> {
  try {
    const status = await Deno.readTextFile(`/proc/${pid}/status`);
    const kb = (field: string) =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
    const rss = kb("VmRSS");
    const peak = kb("VmHWM");
    return Number.isFinite(rss) ? { rss: rss * 1024, peak: peak * 1024 } : undefined;
  } catch {
    return undefined;
  }
}

/** Runs a command to completion and returns its stdout (throws on failure). */
export async function run(command: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `${command} ${args.join(" ")} exited with ${out.code}: ${text}${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
  return text;
}

/** Clock ticks per second of /proc/PID/stat's times (`getconf CLK_TCK`; 100 on Linux). */
export async function clockTicks(): Promise<number> {
  try {
    const ticks = Number((await run("getconf", ["CLK_TCK"])).trim());
    if (Number.isInteger(ticks) && ticks > 0) return ticks;
  } catch {
    // no getconf: Linux's USER_HZ is 100 everywhere that matters
  }
  return 100;
}

/**
 * The CPU time a process has used so far (user + system, its own threads,
 * not its children), in clock ticks, from /proc/PID/stat; undefined when the
 * process is gone.
 */
export async function cpuTicksOf(pid: number): Promise<number | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 and 15 of proc(5) (utime, stime) are 11 and 12 after pid and comm.
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks : undefined;
  } catch {
    return undefined;
  }
}
