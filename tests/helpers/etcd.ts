/**
 * Starts a real etcd for a test: the `etcd` binary from PATH, a temporary data
 * directory and free loopback ports. No mock stands in for etcd.
 *
 * - {@link startEtcd}: an etcd of the test's own, for tests that stop,
 *   restart, pause or fill it, need it on a port chosen in advance, or read
 *   what all its clients share (revisions, compaction, the lease list, auth).
 * - {@link sharedEtcd}: one etcd for a whole test file, each test under a key
 *   prefix of its own, for every other test.
 *
 * @module
 */

import { Child } from "./child.ts";
import { freePort, waitFor } from "./wait.ts";

/** What a test can do with an etcd it does not own: reach it and run `etcdctl`. */
export interface EtcdAccess {
  /** Client URL, e.g. "http://127.0.0.1:40123". */
  readonly endpoint: string;
  /** The port of {@link endpoint}. */
  readonly clientPort: number;
  /** Runs `etcdctl` against it and returns stdout; throws on a non-zero exit. */
  ctl(...args: string[]): Promise<string>;
}

/** A running (or stopped) test etcd. */
export interface TestEtcd extends EtcdAccess {
  /** Its data directory (removed on dispose). */
  readonly dataDir: string;
  /** The etcd process while it runs (undefined once stopped). */
  readonly process: Child | undefined;
  /** Stops etcd (SIGKILL, see stop's comment) and waits for it to exit; the data is kept for `start`. */
  stop(): Promise<void>;
  /** Starts it again on the same ports with the same data. */
  start(): Promise<void>;
  /** Stops etcd and removes its data directory. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options for {@link startEtcd}. */
export interface StartEtcdOptions {
  /**
   * Serve clients on this port instead of a free one: a test can point a
   * server at a port first and start etcd there later.
   */
  clientPort?: number;
  /** Its data directory, which etcd creates (default: a new temporary one); removed on dispose. */
  dataDir?: string;
  /** The address it listens on for clients and peers (default 127.0.0.1). */
  host?: string;
  /** Its peer port (default: a free one on 127.0.0.1). */
  peerPort?: number;
  /** Copy etcd's output to this file (default: kept in memory only, for errors). */
  logPath?: string;
  /** etcd's --log-level (default "error"). */
  logLevel?: "debug" | "info" | "warn" | "error";
  /** Start it in a session of its own, so a Ctrl-C in the terminal reaches only the parent. */
  detached?: boolean;
}

/** Starts etcd and waits until it answers. */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<TestEtcd> {
  const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "idetcd-test-etcd-" });
  const clientPort = options.clientPort ?? await freePort();
  const peerPort = options.peerPort ?? await freePort();
  const host = options.host ?? "127.0.0.1";
  const endpoint = `http://${host}:${clientPort}`;
  const peer = `http://${host}:${peerPort}`;
  let child: Child | undefined;

  const ctl = async (...args: string[]) => {
    const out = await new Deno.Command("etcdctl", {
      args: [`--endpoints=${endpoint}`, "--dial-timeout=2s", "--command-timeout=5s", ...args],
      env: { ETCDCTL_API: "3" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`etcdctl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
    }
    return new TextDecoder().decode(out.stdout);
  };

  const start = async () => {
    const proc = await Child.spawn("etcd", [
      "--name=test",
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${endpoint}`,
      `--advertise-client-urls=${endpoint}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=test=${peer}`,
      `--log-level=${options.logLevel ?? "error"}`,
      "--logger=zap",
    ], { logPath: options.logPath, detached: options.detached, maxOutput: 1_000_000 });
    child = proc;
    try {
      // etcd's own /health (what `etcdctl endpoint health` asks), without a process per poll.
      await waitFor(async () => {
        if (!proc.running) throw new Error(`etcd exited during start (${proc.describeExit()})`);
        try {
          const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
          const body = await res.json();
          return res.ok && body.health === "true";
        } catch {
          return false;
        }
      }, { timeoutMs: 20_000, what: `etcd on ${endpoint}` });
    } catch (err) {
      child = undefined;
      await proc.stop(2000);
      throw new Error(`${(err as Error).message}; the end of its output:\n${proc.tail()}`);
    }
  };

  const stop = async () => {
    if (!child) return;
    const proc = child;
    child = undefined;
    // SIGKILL, not SIGTERM: a gracefully stopping etcd sends its clients an
    // HTTP/2 GOAWAY, and Deno 2.9.6's node:http2 (under grpc-js) can die on
    // one inside nghttp2 (denoland/deno#36788: an assertion, exit 134, or a
    // silent exit 139), which killed whole test processes and nodes. The
    // tests here are about etcd going away, which SIGKILL is too; etcd's
    // data survives it (its WAL is synced). The README's Troubleshooting
    // says what this means for a real etcd restart.
    proc.signal("SIGKILL");
    await proc.status;
  };

  try {
    await start();
  } catch (err) {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    throw err;
  }
  return {
    endpoint,
    clientPort,
    dataDir,
    get process() {
      return child;
    },
    stop,
    start,
    ctl,
    async [Symbol.asyncDispose]() {
      await stop();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * One test's share of a {@link sharedEtcd}: the file's etcd, and a key prefix
 * no other test of the file uses. It cannot stop or restart etcd: a test
 * that needs to takes an etcd of its own ({@link startEtcd}).
 */
export interface EtcdScope extends EtcdAccess {
  /**
   * This test's key prefix, "/t001", "/t002", ... (one width, so none is a
   * prefix of another): the `prefix` of idetcd, the `path` of the etcd
   * plugin, the first part of every key the test writes or reads.
   */
  readonly prefix: string;
}

/** The etcd of one test file; see {@link sharedEtcd}. */
export interface SharedEtcd {
  /**
   * Starts the file's etcd on first use (so a file whose tests are all
   * filtered out or ignored starts none) and gives the caller a fresh prefix.
   */
  scope(): Promise<EtcdScope>;
}

/**
 * One etcd for the tests of a file that need no etcd of their own, each under
 * its own key prefix; call it once at the top of the file. It is stopped and
 * its data removed after the file's last test (`Deno.test.afterAll`). The
 * tests of a file run one after another, and each keeps to its prefix, so
 * none sees another's keys; what they share is etcd's revision counter and
 * its lease list, so a test that reads either takes its own etcd.
 */
export function sharedEtcd(): SharedEtcd {
  let etcd: Promise<TestEtcd> | undefined;
  let scopes = 0;
  Deno.test.afterAll(async () => {
    const running = await etcd?.catch(() => undefined);
    await running?.[Symbol.asyncDispose]();
  });
  return {
    async scope() {
      const { endpoint, clientPort, ctl } = await (etcd ??= startEtcd());
      scopes++;
      return { endpoint, clientPort, ctl, prefix: `/t${String(scopes).padStart(3, "0")}` };
    },
  };
}
