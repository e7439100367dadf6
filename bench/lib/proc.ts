/**
 * Child processes with time-stamped output lines, registered for clean-up.
 * The processes are tests/helpers/child.ts's {@link Child} (the harness the
 * tests and the demo use); {@link Proc} gives the benchmarks its exit code
 * as a number and its lines joined.
 *
 * @module
 */

import { Child, type Line } from "../../tests/helpers/child.ts";
import type { Scope } from "./cleanup.ts";

export type { Line };

/** Options for {@link spawn}. */
export interface SpawnOptions {
  /** Working directory. */
  cwd?: string;
  /** Extra environment (NO_COLOR=1 is always set). */
  env?: Record<string, string>;
}

/** A running child process: a {@link Child} keeping stamped lines. */
export class Proc {
  /** The process underneath. */
  readonly child: Child;
  /** Resolves with the exit code once the process has exited and its output is read. */
  readonly exited: Promise<number>;

  /** Starts `command` with `args` (synchronously: {@link spawnedAt} is now). */
  constructor(command: string, args: string[], options: SpawnOptions = {}) {
    this.child = Child.spawnSync(command, args, {
      cwd: options.cwd,
      env: options.env,
      lines: true,
    });
    this.exited = this.child.status.then((status) => status.code);
  }

  /** The process ID. */
  get pid(): number {
    return this.child.pid;
  }

  /** performance.now() just before the spawn. */
  get spawnedAt(): number {
    return this.child.spawnedAt;
  }

  /** Its output lines, stamped with the time they arrived. */
  get lines(): Line[] {
    return this.child.lines;
  }

  /** Everything printed so far, line by line. */
  output(): string {
    return this.lines.map((l) => l.text).join("\n");
  }

  /** True once the process has exited (and its output is read). */
  get hasExited(): boolean {
    return !this.child.running;
  }

  /** Waits for the first line matching `pattern`; throws on exit or after `timeoutMs`. */
  waitForLine(pattern: RegExp, timeoutMs = 30_000): Promise<Line> {
    return this.child.waitForLine(pattern, timeoutMs);
  }

  /** Sends a signal (ignored once the process is gone). */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    if (this.child.running) this.child.signal(signal);
  }

  /** SIGTERM, SIGKILL after `graceMs`, and waits for the exit. */
  async stop(graceMs = 10_000): Promise<void> {
    await this.child.stop(graceMs);
    await this.exited;
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
