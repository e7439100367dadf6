/**
 * Runs the real program as a user would (`deno run main.ts -conf FILE`) and
 * queries it with `dig` or raw sockets.
 *
 * @module
 */

import { Child } from "./child.ts";
import { encodeQuery, type Message } from "../../lib/dns/wire.ts";
import { tcpQuery, udpQuery } from "./dns.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** A running idetcd process. */
export interface ServerProcess {
  /** The process ID. */
  readonly pid: number;
  /** Everything it printed so far (stdout and stderr interleaved by line). */
  output(): string;
  /** Waits until the output contains `text` (or matches), with a deadline. */
  waitForOutput(text: string | RegExp, timeoutMs?: number): Promise<void>;
  /** Sends a signal. */
  kill(signal?: Deno.Signal): void;
  /** Resolves with the exit code. */
  readonly exited: Promise<number>;
  /** SIGTERM, then waits for the exit. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options for {@link startServer}. */
export interface StartOptions {
  /** Extra command-line arguments. */
  args?: string[];
  /** Working directory. */
  cwd?: string;
  /** Extra environment (NO_COLOR=1 is always set). */
  env?: Record<string, string>;
  /** Wait for this output before returning (default: the version banner). */
  readyText?: string | RegExp | null;
  /** Milliseconds to wait for `readyText` (default 30,000). */
  timeoutMs?: number;
}

/** The longest any test runs one server process; older ones are killed as hung. */
const MAX_LIFE_MS = 5 * 60_000;

/** Starts `deno run main.ts` with the Corefile at `conf`. */
export async function startServer(
  conf: string | null,
  options: StartOptions = {},
): Promise<ServerProcess> {
  const args = ["run", "-A", MAIN];
  if (conf !== null) args.push("-conf", conf);
  args.push(...(options.args ?? []));
  const child = await Child.spawn(Deno.execPath(), args, {
    label: "idetcd",
    cwd: options.cwd,
    env: options.env,
  });
  // A node no test keeps this long is hung (seen once under heavy load: a
  // process that never exited); kill it so that the test waiting on it fails
  // with its output instead of the whole run waiting for ever.
  const lifeTimer = setTimeout(() => {
    console.error(`idetcd pid ${child.pid} still running after ${MAX_LIFE_MS / 1000} s: SIGKILL`);
    child.signal("SIGKILL");
  }, MAX_LIFE_MS);
  Deno.unrefTimer(lifeTimer);
  const exited = child.status.then((s) => {
    clearTimeout(lifeTimer);
    return s.code;
  });
  const proc: ServerProcess = {
    pid: child.pid,
    output: () => child.output(),
    waitForOutput: (want, timeoutMs = 20_000) => child.waitForOutput(want, timeoutMs),
    kill(signal = "SIGTERM") {
      child.signal(signal);
    },
    exited,
    [Symbol.asyncDispose]: () => child.stop(),
  };
  const ready = options.readyText === undefined ? /^idetcd-\d/m : options.readyText;
  if (ready !== null) {
    try {
      await proc.waitForOutput(ready, options.timeoutMs ?? 30_000);
    } catch (err) {
      await proc[Symbol.asyncDispose]();
      throw err;
    }
  }
  return proc;
}

/** Runs `dig` and returns its stdout; throws when dig fails to run. */
export async function dig(...args: string[]): Promise<string> {
  const out = await new Deno.Command("dig", {
    args: ["+time=2", "+tries=2", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(
      `dig ${args.join(" ")} failed: ${stdout}${new TextDecoder().decode(out.stderr)}`,
    );
  }
  return stdout;
}

/** Options for {@link queryUdp}. */
export interface QueryOptions {
  /** Tries before giving up (default 3), each waiting timeoutMs. */
  tries?: number;
  /** The EDNS0 UDP size to offer (no OPT record without it). */
  udpSize?: number;
  /** Milliseconds to wait for each try (default 2,000). */
  timeoutMs?: number;
}

/**
 * Sends one query over UDP to host:port and decodes the reply (3 tries by default);
 * datagrams that are not a DNS reply to it are ignored.
 */
export async function queryUdp(
  host: string,
  port: number,
  name: string,
  type: number,
  options: QueryOptions = {},
): Promise<Message> {
  const packet = encodeQuery(0, name, type, { udpSize: options.udpSize });
  const reply = await udpQuery(host, port, packet, {
    timeoutMs: options.timeoutMs ?? 2000,
    tries: options.tries ?? 3,
  });
  if (!reply) throw new Error(`no answer from ${host}:${port} for ${name}`);
  return reply;
}

/** Sends one query over TCP and decodes the reply. */
export async function queryTcp(
  host: string,
  port: number,
  name: string,
  type: number,
): Promise<Message> {
  const packet = encodeQuery(Math.floor(Math.random() * 65536), name, type);
  const reply = await tcpQuery(host, port, packet);
  if (!reply) throw new Error("connection closed before a full reply");
  return reply;
}

const tempDirs = new Set<string>();
globalThis.addEventListener("unload", () => {
  for (const dir of tempDirs) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch {
      // already removed by the test
    }
  }
});

/** Writes a Corefile into a new temp dir (removed when the test file ends) and returns its path. */
export async function writeCorefile(text: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "idetcd-test-" });
  tempDirs.add(dir);
  const path = `${dir}/Corefile`;
  await Deno.writeTextFile(path, text);
  return path;
}
