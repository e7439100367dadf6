/**
 * Starts a real etcd for a test: the `etcd` binary from PATH, a temporary data
 * directory and free loopback ports. No mock stands in for etcd.
 *
 * @module
 */

import { freePort, waitFor } from "./wait.ts";

/** A running (or stopped) test etcd. */
export interface TestEtcd {
  /** Client URL, e.g. "http://127.0.0.1:40123". */
  readonly endpoint: string;
  readonly clientPort: number;
  readonly dataDir: string;
  /** Stops etcd (SIGTERM) and waits for it to exit; the data is kept for `start`. */
  stop(): Promise<void>;
  /** Starts it again on the same ports with the same data. */
  start(): Promise<void>;
  /** Runs `etcdctl` against it and returns stdout; throws on a non-zero exit. */
  ctl(...args: string[]): Promise<string>;
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
}

/** Starts etcd and waits until it answers. */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<TestEtcd> {
  const dataDir = await Deno.makeTempDir({ prefix: "idetcd-test-etcd-" });
  const clientPort = options.clientPort ?? await freePort();
  const peerPort = await freePort();
  const endpoint = `http://127.0.0.1:${clientPort}`;
  let child: Deno.ChildProcess | undefined;

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
    child = new Deno.Command("etcd", {
      args: [
        "--name=test",
        `--data-dir=${dataDir}`,
        `--listen-client-urls=${endpoint}`,
        `--advertise-client-urls=${endpoint}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=test=http://127.0.0.1:${peerPort}`,
        "--log-level=error",
        "--logger=zap",
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const proc = child;
    await waitFor(async () => {
      const status = await Promise.race([
        proc.status.then(() => "exited" as const),
        Promise.resolve("running" as const),
      ]);
      if (status === "exited") throw new Error("etcd exited during start");
      try {
        await ctl("endpoint", "health");
        return true;
      } catch {
        return false;
      }
    }, { timeoutMs: 20_000, what: `etcd on ${endpoint}` });
  };

  const stop = async () => {
    if (!child) return;
    const proc = child;
    child = undefined;
    try {
      proc.kill("SIGTERM");
    } catch {
      // already gone
    }
    await proc.status;
  };

  await start();
  return {
    endpoint,
    clientPort,
    dataDir,
    stop,
    start,
    ctl,
    async [Symbol.asyncDispose]() {
      await stop();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
}
