/**
 * A child process with its output kept, for tests, the demo and anything
 * else that runs the real programs (idetcd, etcd, CoreDNS): stdout and
 * stderr read as they come (so a chatty child never blocks on a full pipe),
 * optionally copied to a log file, waited on with a deadline, and stopped
 * with SIGTERM, then SIGKILL after a grace period.
 *
 * @module
 */

import { waitFor } from "./wait.ts";

/** One line a child printed, with the time (performance.now()) its bytes arrived. */
export interface Line {
  /** performance.now() when the chunk holding the line's end was read. */
  at: number;
  /** The line, without its newline. */
  text: string;
}

/** How to start a {@link Child}. */
export interface ChildOptions {
  /** What messages call it (default: the command). */
  label?: string;
  /** Working directory. */
  cwd?: string;
  /** Extra environment (NO_COLOR=1 is always set). */
  env?: Record<string, string>;
  /** Also write everything it prints to this file (created or truncated). */
  logPath?: string;
  /**
   * Its own session (no controlling terminal): a Ctrl-C in the terminal then
   * reaches only the parent, which can stop its children in order.
   */
  detached?: boolean;
  /** Keep at most about this many characters of output (the newest); default unlimited. */
  maxOutput?: number;
  /**
   * Also keep each line, stamped with the time its bytes arrived, in
   * {@link Child.lines} (what the benchmarks time "the claimed line" by).
   */
  lines?: boolean;
}

/** A running (or exited) child process. */
export class Child {
  /** What messages call it. */
  readonly label: string;
  /** The process ID. */
  readonly pid: number;
  /** The log file its output is copied to, when there is one. */
  readonly logPath?: string;
  /** Resolves once it has exited and all its output is read (and written to the log). */
  readonly status: Promise<Deno.CommandStatus>;
  /** The exit status, once it has exited. */
  result?: Deno.CommandStatus;
  /** performance.now() just before the spawn. */
  readonly spawnedAt: number;
  /** Its output lines as they arrived, when started with `lines: true` (else empty). */
  readonly lines: Line[] = [];
  #child: Deno.ChildProcess;
  #text = "";
  /** Wakes {@link waitForLine}s when lines arrive or the process exits. */
  #waiters = new Set<() => void>();

  private constructor(
    command: string,
    args: string[],
    options: ChildOptions,
    log: Deno.FsFile | undefined,
  ) {
    this.label = options.label ?? command;
    this.logPath = options.logPath;
    this.spawnedAt = performance.now();
    this.#child = new Deno.Command(command, {
      args,
      cwd: options.cwd,
      env: { NO_COLOR: "1", ...options.env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      detached: options.detached ?? false,
    }).spawn();
    this.pid = this.#child.pid;
    const max = options.maxOutput ?? Infinity;
    let writes: Promise<unknown> = Promise.resolve();
    const keepLines = options.lines ?? false;
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      const decoder = new TextDecoder();
      let partial = "";
      for await (const chunk of stream) {
        // Stamp lines when their bytes arrive: that is what "time to the claimed line" measures.
        const at = performance.now();
        const text = decoder.decode(chunk, { stream: true });
        this.#text += text;
        if (this.#text.length > max) this.#text = this.#text.slice(-Math.floor(max / 2));
        if (log) writes = writes.then(() => log.write(chunk)).catch(() => {});
        if (keepLines) {
          const parts = (partial + text).split("\n");
          partial = parts.pop()!;
          for (const line of parts) this.lines.push({ at, text: line });
          if (parts.length > 0) this.#notify();
        }
      }
      if (partial) this.lines.push({ at: performance.now(), text: partial });
    };
    const pumps = Promise.all([pump(this.#child.stdout), pump(this.#child.stderr)]);
    this.status = this.#child.status.then(async (s) => {
      await pumps.catch(() => {});
      await writes;
      log?.close();
      this.result = s;
      this.#notify();
      return s;
    });
  }

  #notify(): void {
    for (const wake of this.#waiters) wake();
  }

  /** Starts `command` with `args`. */
  static async spawn(command: string, args: string[], options: ChildOptions = {}): Promise<Child> {
    const log = options.logPath === undefined
      ? undefined
      : await Deno.open(options.logPath, { write: true, create: true, truncate: true });
    try {
      return new Child(command, args, options, log);
    } catch (err) {
      log?.close();
      throw err;
    }
  }

  /**
   * Starts `command` with `args` at once (the log file, if any, opened
   * synchronously): for callers that must have the process, and its
   * {@link spawnedAt}, before their next await.
   */
  static spawnSync(command: string, args: string[], options: ChildOptions = {}): Child {
    const log = options.logPath === undefined
      ? undefined
      : Deno.openSync(options.logPath, { write: true, create: true, truncate: true });
    try {
      return new Child(command, args, options, log);
    } catch (err) {
      log?.close();
      throw err;
    }
  }

  /** Whether it has not exited yet. */
  get running(): boolean {
    return this.result === undefined;
  }

  /** Everything it printed so far (stdout and stderr as they arrived). */
  output(): string {
    return this.#text;
  }

  /** The last `n` lines of its output, indented, for an error report. */
  tail(n = 20): string {
    const lines = this.#text.trimEnd().split("\n").slice(-n);
    return lines.map((l) => `    | ${l}`).join("\n") || "    | (no output)";
  }

  /** "running", "exit code N" or "killed by SIGNAL". */
  describeExit(): string {
    const s = this.result;
    if (!s) return "running";
    return s.signal ? `killed by ${s.signal}` : `exit code ${s.code}`;
  }

  /** Sends a signal; nothing when it has already exited. */
  signal(sig: Deno.Signal): void {
    try {
      this.#child.kill(sig);
    } catch {
      // already gone
    }
  }

  /** Waits until its output contains `want` (or matches it); throws at the deadline or on exit. */
  async waitForOutput(want: string | RegExp, timeoutMs = 20_000): Promise<void> {
    await waitFor(() => {
      const text = this.#text;
      const found = typeof want === "string" ? text.includes(want) : want.test(text);
      if (!found && !this.running) {
        throw new Error(
          `${this.label} exited (${this.describeExit()}) before printing ${want}:\n${text}`,
        );
      }
      return found;
    }, { timeoutMs, what: `${this.label} to print ${want}; got:\n${this.#text}` });
  }

  /**
   * The first of {@link lines} matching `pattern` (start it with `lines:
   * true`), as soon as it arrives; throws on exit without one or after
   * `timeoutMs`.
   */
  async waitForLine(pattern: RegExp, timeoutMs = 30_000): Promise<Line> {
    const deadline = performance.now() + timeoutMs;
    while (true) {
      const line = this.lines.find((l) => pattern.test(l.text));
      if (line) return line;
      if (!this.running) {
        throw new Error(
          `${this.label} (process ${this.pid}) exited (${this.describeExit()}) before printing ${pattern}:\n${this.output()}`,
        );
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new Error(
          `timed out waiting for ${pattern} from ${this.label} (process ${this.pid}):\n${this.output()}`,
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

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.signal("SIGTERM");
    const timer = setTimeout(() => this.signal("SIGKILL"), graceMs);
    await this.status;
    clearTimeout(timer);
  }
}
