/**
 * Back fast after a heal, and keep-alive pings etcd accepts.
 *
 * A partition is made with iptables on loopback, both directions of the etcd
 * client port dropped (so SYNs and data go unanswered, as across a cut
 * link), long enough that every connection is declared dead; the rules are
 * always removed in a finally. Measured from the heal: the first acknowledged
 * lease keep-alive (the claim's pattern), the first unary call, and the first
 * change a watch-fed Mirror applies. Each must come within 2 s.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Etcd3 } from "etcd3";
import {
  clientOptions,
  createClient,
  KEEPALIVE_TIME_MS,
  KEEPALIVE_TIMEOUT_MS,
  MAX_RECONNECT_BACKOFF_MS,
} from "../lib/etcd/client.ts";
import { Mirror } from "../lib/etcd/mirror.ts";
import { createLogger } from "../lib/log.ts";
import { startEtcd } from "./helpers/etcd.ts";
import { waitFor } from "./helpers/wait.ts";

/** The recovery the client promises after etcd answers again. */
const RECOVERY_BOUND_MS = 2_000;

async function run(cmd: string, ...args: string[]): Promise<boolean> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** iptables can be used here (root, the binary present, the filter table reachable). */
const IPTABLES = Deno.uid() === 0 && await run("iptables", "-w", "-L", "INPUT", "-n");

/** Drops both directions of TCP port `port` on this host until `heal()`. */
async function partition(port: number): Promise<{ heal(): Promise<void> }> {
  const rules = [
    ["INPUT", "-p", "tcp", "--dport", String(port), "-j", "DROP"],
    ["INPUT", "-p", "tcp", "--sport", String(port), "-j", "DROP"],
  ];
  const added: string[][] = [];
  let healed = false;
  const heal = async () => {
    if (healed) return;
    healed = true;
    for (const rule of added) await run("iptables", "-w", "-D", ...rule);
  };
  try {
    for (const rule of rules) {
      if (!await run("iptables", "-w", "-I", ...rule)) {
        throw new Error(`iptables -I ${rule.join(" ")} failed`);
      }
      added.push(rule);
    }
  } catch (err) {
    await heal();
    throw err;
  }
  return { heal };
}

Deno.test({
  name: "heal: keep-alive, calls and the watch are back within 2 s after a partition",
  ignore: !IPTABLES,
  async fn() {
    await using etcd = await startEtcd();
    const client = createClient({ endpoints: [etcd.endpoint] }, "/");
    const lines: string[] = [];
    const log = createLogger("test", (_level, line) => lines.push(line));
    // Mirrors made by lib/etcd/pool.ts should retry as often (see the report on issue #9).
    const mirror = new Mirror(client, "/heal/", log, { maxBackoffMs: MAX_RECONNECT_BACKOFF_MS });
    let stop = false;
    const loops: Promise<void>[] = [];
    let cut: { heal(): Promise<void> } | undefined;
    try {
      await mirror.start();
      const lease = await client.lease(60, { autoKeepAlive: false }).grant();

      // The claim's keep-alive: one exchange on a short stream, every 2 s, every 0.5 s after a failure.
      let keepaliveFailures = 0;
      let lastKeepalive = 0;
      const keepaliveOnce = async () => {
        const stream = await client.leaseClient.leaseKeepAlive();
        try {
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error("keepalive timed out")), 1_000);
            stream.on("data", () => {
              clearTimeout(timer);
              resolve();
            });
            stream.on("error", (err) => {
              clearTimeout(timer);
              reject(err);
            });
            stream.write({ ID: lease });
          });
        } finally {
          stream.end();
          stream.cancel();
        }
      };
      loops.push((async () => {
        while (!stop) {
          try {
            await keepaliveOnce();
            lastKeepalive = performance.now();
            keepaliveFailures = 0;
          } catch {
            keepaliveFailures++;
          }
          await new Promise((r) => setTimeout(r, keepaliveFailures ? 500 : 2_000));
        }
      })());
      // Unary calls with the client's default deadline.
      let lastPut = 0;
      loops.push((async () => {
        while (!stop) {
          try {
            await client.put("/other/unary").value(String(Date.now()));
            lastPut = performance.now();
          } catch {
            // counted by the gap after the heal
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      })());
      await waitFor(() => lastKeepalive > 0 && lastPut > 0, { what: "first keep-alive and put" });

      const cutAt = performance.now();
      cut = await partition(etcd.clientPort);
      // Long enough that every connection is dead (keep-alive pings unanswered)
      // and retries have backed off as far as they go.
      const deadAfter = KEEPALIVE_TIME_MS + KEEPALIVE_TIMEOUT_MS + 2_000;
      await waitFor(
        () =>
          !mirror.status().connected && keepaliveFailures >= 3 &&
          performance.now() - cutAt >= deadAfter,
        { timeoutMs: deadAfter + 20_000, what: "the partition to be noticed everywhere" },
      );

      await cut.heal();
      const healedAt = performance.now();
      const healedWall = Date.now();
      // Written by a fresh process; the mirror must apply it.
      await etcd.ctl("put", "/heal/after", "yes");
      await waitFor(
        () => lastKeepalive > healedAt && lastPut > healedAt && mirror.get("/heal/after"),
        { timeoutMs: 30_000, what: `recovery after the heal; log:\n${lines.join("\n")}` },
      );
      const keepaliveMs = Math.round(lastKeepalive - healedAt);
      const putMs = Math.round(lastPut - healedAt);
      const mirrorMs = mirror.status().lastEventAt! - healedWall;
      console.log(
        `partition of ${
          Math.round(healedAt - cutAt)
        } ms healed; back after: keep-alive ${keepaliveMs} ms, ` +
          `put ${putMs} ms, mirror ${mirrorMs} ms`,
      );
      assert.ok(keepaliveMs <= RECOVERY_BOUND_MS, `keep-alive back after ${keepaliveMs} ms`);
      assert.ok(putMs <= RECOVERY_BOUND_MS, `put back after ${putMs} ms`);
      assert.ok(mirrorMs <= RECOVERY_BOUND_MS, `mirror back after ${mirrorMs} ms`);
    } finally {
      await cut?.heal();
      stop = true;
      await Promise.all(loops);
      await mirror.close();
      client.close();
    }
  },
});

/** Captures grpc-js's own log lines (it writes them with console.error). */
function captureGrpcLog(): { lines: string[]; restore(): void } {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => {
    lines.push(args.map(String).join(" "));
    original(...args);
  };
  return { lines, restore: () => (console.error = original) };
}

/** Opens a raw watch on `key`; collects its events and errors. */
async function openWatch(client: Etcd3, key: string) {
  const stream = await client.watchClient.watch();
  const seen = { events: 0, errors: [] as string[] };
  stream.on("data", (res) => (seen.events += res.events.length));
  stream.on("error", (err) => seen.errors.push(String(err.message)));
  stream.write({ create_request: { key: Buffer.from(key), start_revision: 0 } });
  return { seen, stream };
}

Deno.test("keep-alive: etcd accepts the client's pings with and without open streams; faster pings get GOAWAY", async () => {
  // etcd's defaults: --grpc-keepalive-min-time 5s, pings without a stream not permitted.
  await using etcd = await startEtcd();
  await using control = await startEtcd();
  const grpcLog = captureGrpcLog();
  const ours = createClient({ endpoints: [etcd.endpoint] }, "/");
  const unaryOnly = createClient({ endpoints: [etcd.endpoint] }, "/");
  // The control: the same options but pings every second.
  const base = clientOptions({ endpoints: [control.endpoint] }, "/");
  const fast = new Etcd3({
    ...base,
    grpcOptions: { ...base.grpcOptions, "grpc.keepalive_time_ms": 1_000 },
  });
  let stop = false;
  try {
    const watched = await openWatch(ours, "ka");
    const controlWatch = await openWatch(fast, "ka");
    // A client with only unary calls (no stream open between them), some spaced beyond the ping interval.
    const unary = (async () => {
      let n = 0;
      while (!stop) {
        await unaryOnly.get("ka").string();
        await new Promise((r) => setTimeout(r, n++ % 3 === 2 ? KEEPALIVE_TIME_MS + 1_000 : 700));
      }
    })();
    // The control is refused within a few pings: this test can see a refusal.
    await waitFor(
      () =>
        grpcLog.lines.some((l) => l.includes(`:${control.clientPort}`) && /excess pings/.test(l)) ||
        controlWatch.seen.errors.some((e) => /too_many_pings|GOAWAY|ENHANCE_YOUR_CALM/i.test(e)),
      { timeoutMs: 20_000, what: "etcd to refuse pings every second" },
    );
    // Ours: at least three pings on the idle watch's connection.
    const started = performance.now();
    await waitFor(() => performance.now() - started >= 3 * KEEPALIVE_TIME_MS + 2_000, {
      timeoutMs: 4 * KEEPALIVE_TIME_MS + 5_000,
      intervalMs: 200,
      what: "three keep-alive intervals",
    });
    stop = true;
    await unary;
    const refused = grpcLog.lines.filter((l) =>
      l.includes(`:${etcd.clientPort}`) && /excess pings/.test(l)
    );
    assert.deepEqual(refused, [], "etcd accepted our pings");
    assert.deepEqual(watched.seen.errors, [], "the idle watch survived");
    await etcd.ctl("put", "ka", "1");
    await waitFor(() => watched.seen.events > 0, { what: "an event on the old watch" });
    watched.stream.cancel();
    controlWatch.stream.cancel();
  } finally {
    stop = true;
    grpcLog.restore();
    ours.close();
    unaryOnly.close();
    fast.close();
  }
});
