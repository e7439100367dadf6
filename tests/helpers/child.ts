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
  #child: Deno.ChildProcess;
  #text = "";

  private constructor(
    command: string,
    args: string[],
    options: ChildOptions,
    log: Deno.FsFile | undefined,
  ) {
    this.label = options.label ?? command;
    this.logPath = options.logPath;
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
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        this.#text += decoder.decode(chunk, { stream: true });
        if (this.#text.length > max) this.#text = this.#text.slice(-Math.floor(max / 2));
        if (log) writes = writes.then(() => log.write(chunk)).catch(() => {});
      }
    };
    const pumps = Promise.all([pump(this.#child.stdout), pump(this.#child.stderr)]);
    this.status = this.#child.status.then(async (s) => {
      await pumps.catch(() => {});
      await writes;
      log?.close();
      this.result = s;
      return s;
    });
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

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.signal("SIGTERM");
    const timer = setTimeout(() => this.signal("SIGKILL"), graceMs);
    await this.status;
    clearTimeout(timer);
  }
}
