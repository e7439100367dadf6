/**
 * 2. Claim storm: many claimers start at once, in one process (separate etcd
 * clients) and as real node processes. idetcd's claim beside the original
 * idetcd's get-then-put, run the same way.
 *
 * @module
 */

import { runStorm } from "../lib/claimers.ts";
import { Mirror } from "../../lib/etcd/mirror.ts";
import { createLogger } from "../../lib/log.ts";

/** The shared copy's log lines are not the benchmark's. */
const quietLog = createLogger("bench zone", () => {});
import { Scope } from "../lib/cleanup.ts";
import type { Context } from "../lib/context.ts";
import { clientIn, etcdIn, etcdRequestCount, etcdSentBytes, putMany } from "../lib/etcd.ts";
import { CLAIMED, corefile, idetcdDirective, MAIN_PATH, startNode } from "../lib/node.ts";
import { type Proc, spawn } from "../lib/proc.ts";
import type { Table } from "../lib/report.ts";
import { mean, ms } from "../lib/stats.ts";
import { freePort, waitFor } from "../../tests/helpers/wait.ts";
import { createClient } from "../../lib/etcd/client.ts";
import type { Etcd3 } from "etcd3";
import { encodeAddress, encodeLock, encodeMemory } from "../../lib/plugins/idetcd/records.ts";
import { originalClaim } from "../original.ts";

/** One row of the storm table. */
interface StormRow {
  scenario: string;
  claimers: number;
  /** Names handed out (one per claimer that got one). */
  names: string[];
  /** performance.now() span from the start to the last claim. */
  elapsedMs: number;
  /** Requests per claim: mean and max (client side), or server-side per claimer. */
  requests: string;
  /** Bytes etcd sent per claim (its /metrics), for the in-process runs. */
  bytesPerClaim?: string;
  /** Steps the claimers retried after an etcd error (in-process runs). */
  retries?: number;
  lostRaces?: number;
}

function describeUnique(row: StormRow): [string, string] {
  const distinct = new Set(row.names).size;
  const duplicates = row.names.length - distinct;
  const shared = new Map<string, number>();
  for (const n of row.names) shared.set(n, (shared.get(n) ?? 0) + 1);
  const sharedNames = [...shared.values()].filter((c) => c > 1).length;
  const missing = row.claimers - row.names.length;
  const unique = duplicates === 0 && missing === 0
    ? `yes (${distinct}/${row.claimers})`
    : `no (${distinct} distinct of ${row.names.length}${missing ? `, ${missing} got none` : ""})`;
  const dupText = duplicates === 0
    ? "0"
    : `${duplicates} (${sharedNames} ${
      sharedNames === 1 ? "name" : "names"
    } handed out more than once)`;
  return [unique, dupText];
}

function toRow(r: StormRow): string[] {
  const [unique, duplicates] = describeUnique(r);
  return [
    r.scenario,
    String(r.claimers),
    unique,
    duplicates,
    ms(r.elapsedMs),
    r.requests,
    r.bytesPerClaim ?? "–",
    r.retries === undefined ? "–" : String(r.retries),
    r.lostRaces === undefined ? "–" : String(r.lostRaces),
  ];
}

/** Clients the in-process claimers share (claimer i uses client i mod this), as the issue's run did. */
const SHARED_CLIENTS = 100;
/** etcd calls in flight from the storm's process at most (the CallGate of bench/lib/claimers.ts). */
const IN_FLIGHT = 256;
/** Claimers above which the storm's calls pass the gate. */
const GATE_ABOVE = 2_000;
/** How long a gated claimer's first claim may go unanswered, seconds (the default is 30). */
const GATED_CONNECT_TIMEOUT_S = 120;
/**
 * The in-process claimers' lease, seconds: long enough that few keep-alives
 * fall within the storm (the first comes after 75 s). A node keeps one lease alive; one process keeping
 * 10,000 alive (a stream each every 5 s with 20 s leases) would measure that
 * process, not the claim.
 */
const STORM_LEASE_SECONDS = 300;

/** What one in-process storm measured, beyond the table row. */
export interface InProcessFigures {
  row: StormRow;
  /** Bytes etcd sent per claim over the storm (every response and watch event). */
  bytesPerClaim: number;
  /** Mean etcd requests per claim (client side, retries included). */
  requestsPerClaim: number;
  /** Steps retried after an etcd error, all claimers together. */
  retries: number;
  /** Zone readings computed by the shared view (each shared by all waiting claimers). */
  readings: number;
  /** Zone listings read from etcd because the copy lagged. */
  directReads: number;
}

/**
 * N idetcd claimers in this process on {@link SHARED_CLIENTS} shared clients,
 * all started at once, reading the zone from one watch-fed copy (as a node's
 * claim reads its DNS copy); see {@link runStorm}.
 */
export async function idetcdInProcess(ctx: Context, n: number): Promise<InProcessFigures> {
  await using scope = new Scope();
  const etcd = await etcdIn(scope);
  const run = await runStorm({
    endpoint: etcd.endpoint,
    claimers: n,
    clients: SHARED_CLIENTS,
    leaseSeconds: STORM_LEASE_SECONDS,
    // Up to 2,000 claimers the process keeps up ungated (measured here); beyond, calls are gated.
    inFlight: n > GATE_ABOVE ? IN_FLIGHT : undefined,
    // A gated claimer's first call may wait its turn in the gate for most of the storm, which
    // is this process's queue, not etcd's silence (a node has no gate): allow the storm's span.
    connectTimeoutSeconds: n > GATE_ABOVE ? GATED_CONNECT_TIMEOUT_S : undefined,
    progress: (done, elapsed) =>
      ctx.log(`storm: ${n}: ${done} claimed after ${(elapsed / 1000).toFixed(0)} s`),
  });
  const claims = run.claims.filter((c) => c !== undefined);
  if (run.failures.length > 0) {
    ctx.log(`storm: ${run.failures.length} of ${n} claims failed, first: ${run.failures[0]}`);
  }
  for (const [reason, count] of run.retryReasons) {
    ctx.log(`storm: ${n}: ${count} claimers retried, first after: ${reason}`);
  }
  // What etcd holds must agree with what the claimers were told.
  if (run.locks !== new Set(claims.map((c) => c.id)).size) {
    ctx.log(`storm: WARNING etcd holds ${run.locks} locks for ${claims.length} claims`);
  }
  ctx.log(`storm: ${n}: released all at once in ${ms(run.releaseMs)}`);
  const perClaim = mean(run.requests);
  const bytesPerClaim = run.bytesSent / Math.max(1, claims.length);
  return {
    row: {
      scenario: `idetcd, ${n} claimers in one process (${Math.min(n, SHARED_CLIENTS)} clients)`,
      claimers: n,
      names: claims.map((c) => c.name),
      elapsedMs: run.elapsedMs,
      requests: `${perClaim.toFixed(1)} / ${Math.max(...run.requests)} (etcd saw ${
        (run.serverRequests / n).toFixed(1)
      })`,
      retries: run.retries,
      bytesPerClaim: `${(bytesPerClaim / 1000).toFixed(1)} kB`,
      lostRaces: run.lostRaces,
    },
    bytesPerClaim,
    requestsPerClaim: perClaim,
    retries: run.retries,
    readings: run.readings,
    directReads: run.directReads,
  };
}

/** N original get-then-put claimers in this process, each with its own client. */
async function originalInProcess(n: number): Promise<StormRow> {
  await using scope = new Scope();
  const etcd = await etcdIn(scope);
  const clients = Array.from({ length: n }, () => clientIn(scope, etcd.endpoint));
  const before = await etcdRequestCount(etcd.endpoint);
  const started = performance.now();
  let last = 0;
  const claims = await Promise.all(clients.map(async (client, i) => {
    const claim = await originalClaim(client, n, `original-${i + 1}`);
    last = Math.max(last, performance.now());
    return claim;
  }));
  const serverSide = (await etcdRequestCount(etcd.endpoint)) - before;
  const requests = claims.map((c) => c.requests);
  return {
    scenario: `original get-then-put, ${n} claimers in one process`,
    claimers: n,
    names: claims.flatMap((c) => (c.name ? [c.name] : [])),
    elapsedMs: last - started,
    requests: `${mean(requests).toFixed(1)} / ${Math.max(...requests)} (etcd saw ${
      (serverSide / n).toFixed(1)
    })`,
  };
}

/** Waits for every process's claim line; returns the names and the time of the last. */
async function collect(procs: Proc[], pattern: RegExp): Promise<{ names: string[]; last: number }> {
  const lines = await Promise.all(procs.map((p) => p.waitForLine(pattern, 120_000)));
  return {
    names: lines.flatMap((l) => {
      const name = pattern.exec(l.text)?.[1];
      return name ? [name] : [];
    }),
    last: Math.max(...lines.map((l) => l.at)),
  };
}

/** N real idetcd node processes on 127.0.1.1.. (bind) started at once. */
async function idetcdProcesses(ctx: Context, n: number): Promise<StormRow> {
  await using scope = new Scope();
  const etcd = await etcdIn(scope);
  const port = await freePort();
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "storm-" });
  const texts = Array.from({ length: n }, (_, i) => {
    // 127.0.1.x: clear of `deno task demo`, which uses 127.0.0.2-6.
    const address = `127.0.1.${i + 1}`;
    return corefile(
      address,
      idetcdDirective({
        endpoint: etcd.endpoint,
        limit: n,
        address,
        identity: `storm-node-${i + 1}`,
      }),
    );
  });
  const before = await etcdRequestCount(etcd.endpoint);
  const started = performance.now();
  const procs = await Promise.all(
    texts.map((text, i) => startNode(scope, `${dir}/Corefile.${i + 1}`, text, port)),
  );
  const { names, last } = await collect(procs, CLAIMED);
  const serverSide = (await etcdRequestCount(etcd.endpoint)) - before;
  // SIGTERM all together (each revokes its lease) rather than one by one at scope end.
  await Promise.all(procs.map((p) => p.stop()));
  return {
    scenario: `idetcd, ${n} node processes`,
    claimers: n,
    names,
    elapsedMs: last - started,
    requests: `etcd saw ${(serverSide / n).toFixed(1)} per node`,
  };
}

/** N processes running the original algorithm (bench/original.ts), started at once. */
async function originalProcesses(n: number): Promise<StormRow> {
  await using scope = new Scope();
  const etcd = await etcdIn(scope);
  const script = new URL("../original.ts", import.meta.url).pathname;
  const before = await etcdRequestCount(etcd.endpoint);
  const started = performance.now();
  const procs = Array.from({ length: n }, (_, i) =>
    spawn(scope, Deno.execPath(), [
      "run",
      "-A",
      script,
      etcd.endpoint,
      String(n),
      `original-node-${i + 1}`,
    ]));
  const { names, last } = await collect(procs, /^claimed (\S+)|^no free name/);
  const serverSide = (await etcdRequestCount(etcd.endpoint)) - before;
  await Promise.all(procs.map((p) => p.stop()));
  return {
    scenario: `original get-then-put, ${n} processes`,
    claimers: n,
    names,
    elapsedMs: last - started,
    requests: `etcd saw ${(serverSide / n).toFixed(1)} per node`,
  };
}

/** How long N bare `deno run main.ts -version` processes take: the floor of a process storm. */
async function processFloor(n: number): Promise<number> {
  await using scope = new Scope();
  const started = performance.now();
  const procs = Array.from(
    { length: n },
    () => spawn(scope, Deno.execPath(), ["run", "-A", MAIN_PATH, "-version"]),
  );
  await Promise.all(procs.map((p) => p.exited));
  return performance.now() - started;
}

/** Names in the copy-cost measurement of a full run. */
const COPY_NAMES = 10_000;
/** Nodes (copies) watching the zone while the claims' events are written, in the fan-out measurement. */
const COPY_WATCHERS = 50;

/** Writes what `names` claims leave in etcd: lock, one address record and the memory record each. */
async function seedClaims(client: Etcd3, names: number, from = 1): Promise<void> {
  const entries: [string, string][] = [];
  for (let id = from; id < from + names; id++) {
    const key = `/skydns/local/tf/worker${id}`;
    const claimedAt = new Date().toISOString();
    entries.push([
      key,
      encodeLock({
        id,
        name: `worker${id}.tf.local.`,
        identity: `node-${id}`,
        addresses: [`10.${id >> 16}.${(id >> 8) & 255}.${id & 255}`],
        claimedAt,
      }),
    ]);
    entries.push([`${key}/ip1`, encodeAddress(`10.${id >> 16}.${(id >> 8) & 255}.${id & 255}`)]);
    entries.push([`/skydns/local/tf/_idetcd/worker${id}`, encodeMemory(`node-${id}`, claimedAt)]);
  }
  await putMany(client, entries);
}

/** Starts `etcd grpc-proxy` in front of `endpoint`; its client URL, or undefined when it cannot run. */
async function grpcProxy(scope: Scope, endpoint: string): Promise<string | undefined> {
  const port = await freePort();
  const proc = spawn(scope, "etcd", [
    "grpc-proxy",
    "start",
    `--endpoints=${endpoint.replace("http://", "")}`,
    `--listen-addr=127.0.0.1:${port}`,
  ]);
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(async () => {
      const c = createClient({ endpoints: [url] }, ".");
      try {
        await c.get("/probe").string();
        return true;
      } catch {
        return false;
      } finally {
        c.close();
      }
    }, { timeoutMs: 10_000, what: "etcd grpc-proxy" });
    return url;
  } catch {
    await proc.stop();
    return undefined;
  }
}

/** What one node's copy of the zone costs, and what etcd sends when many copies watch it. */
export async function copyCost(ctx: Context, names: number, watchers: number): Promise<Table> {
  await using scope = new Scope();
  const etcd = await etcdIn(scope);
  const writer = clientIn(scope, etcd.endpoint);
  await seedClaims(writer, names);
  const rows: string[][] = [];

  // One node's initial list of the zone: time, bytes etcd sent, heap it holds.
  const reader = clientIn(scope, etcd.endpoint);
  await reader.get("/warm-up").string();
  (globalThis as { gc?: () => void }).gc?.();
  const heapBefore = Deno.memoryUsage().heapUsed;
  const sentBefore = await etcdSentBytes(etcd.endpoint);
  const started = performance.now();
  const copy = new Mirror(reader, "/skydns/local/tf/", quietLog, { trackLeases: false });
  scope.defer(() => copy.close());
  await copy.start();
  const listMs = performance.now() - started;
  const listBytes = (await etcdSentBytes(etcd.endpoint)) - sentBefore;
  (globalThis as { gc?: () => void }).gc?.();
  const heap = Deno.memoryUsage().heapUsed - heapBefore;
  rows.push([
    `one node's initial list (${copy.status().keys} keys)`,
    `${(listBytes / 1e6).toFixed(2)} MB`,
    ms(listMs),
    `${(heap / 1e6).toFixed(1)} MB heap`,
  ]);
  ctx.log(`storm: copy of ${names} names: ${listBytes} bytes, ${ms(listMs)}, heap +${heap}`);

  // Many copies watching while 1,000 more claims' records are written: direct, then via the proxy.
  const events = 1_000;
  const fanOut = async (url: string, label: string, from: number) => {
    const copies = Array.from({ length: watchers }, () => {
      const m = new Mirror(clientIn(scope, url), "/skydns/local/tf/", quietLog, {
        trackLeases: false,
      });
      scope.defer(() => m.close());
      return m;
    });
    await Promise.all(copies.map((m) => m.start()));
    const before = await etcdSentBytes(etcd.endpoint);
    const t0 = performance.now();
    await seedClaims(writer, events, from);
    const target = (await writer.get(`/skydns/local/tf/_idetcd/worker${from + events - 1}`).exec())
      .header.revision;
    await waitFor(() => copies.every((m) => m.revision >= Number(target)), {
      timeoutMs: 120_000,
      what: `${label}: every copy at the last write`,
    });
    const took = performance.now() - t0;
    const sent = (await etcdSentBytes(etcd.endpoint)) - before;
    await Promise.all(copies.map((m) => m.close()));
    rows.push([
      `${watchers} copies watching ${events} claims (${events * 3} keys written), ${label}`,
      `${(sent / 1e6).toFixed(2)} MB (${
        (sent / watchers / events).toFixed(0)
      } B per copy per claim)`,
      ms(took),
      "",
    ]);
    ctx.log(`storm: ${label}: etcd sent ${sent} bytes for ${watchers} watchers, ${ms(took)}`);
  };
  await fanOut(etcd.endpoint, "each straight to etcd", names + 1);
  const proxy = await grpcProxy(scope, etcd.endpoint);
  if (proxy) await fanOut(proxy, "through one `etcd grpc-proxy`", names + events + 1);
  else {rows.push([
      "through `etcd grpc-proxy`",
      "not measured: `etcd grpc-proxy start` did not come up",
      "",
      "",
    ]);}
  return {
    title: `2b. The watch-fed copy at ${names.toLocaleString("en")} names`,
    header: ["what", "bytes etcd sent", "time", "memory"],
    rows,
    notes: [
      `A fresh etcd holding what ${names} claims leave (lock, one address record, memory record ` +
      `each). The first row is one node's initial list of the zone (its Mirror starting), the ` +
      `part of a node's cost that grows with the cluster: N nodes list N names once each. Then ` +
      `${watchers} copies (as ${watchers} nodes) watch while ${events} more claims are written, ` +
      `each copy with its own client straight to etcd, and then through one \`etcd grpc-proxy\` ` +
      `(Debian's etcd-server ships it), which serves all the copies' identical watches from one ` +
      `watch of its own: bytes are etcd's \`etcd_network_client_grpc_sent_bytes_total\`.`,
    ],
  };
}

/** In-process storm sizes of a full run: the 100-claimer row is the bytes-per-claim baseline. */
const FULL_SIZES = [100, 1_000, 2_000, 10_000];

/** One row of the issue's targets table (bench/lib/targets.ts), written structurally. */
interface TargetRowLike {
  what: string;
  measured: string;
  target: string;
  gap: string;
  met?: boolean;
}

/** Adds the storm's targets to the run's targets table, when the context carries one. */
function reportTargets(ctx: Context, runs: InProcessFigures[]): void {
  // Structural: the targets table is optional in the context (older harnesses lack it).
  const rows = (ctx as unknown as { targets?: { rows: TargetRowLike[] } }).targets?.rows;
  if (!rows) return;
  const base = runs.find((r) => r.row.claimers === 100) ?? runs[0];
  const add = (what: string, measured: string, target: string, met: boolean, gap: string) =>
    rows.push({ what, measured, target, gap: met ? "met" : gap, met });
  for (const r of runs) {
    const n = r.row.claimers;
    const unique = r.row.names.length === n && new Set(r.row.names).size === n;
    if (n === 1_000) {
      add(
        `storm ${n}: requests per claim`,
        r.requestsPerClaim.toFixed(1),
        "≤ 4",
        r.requestsPerClaim <= 4,
        `+${(r.requestsPerClaim - 4).toFixed(1)}`,
      );
      add(
        `storm ${n}: time to last claim`,
        ms(r.row.elapsedMs),
        "< 5 s",
        r.row.elapsedMs < 5_000,
        `+${ms(r.row.elapsedMs - 5_000)}`,
      );
      add(
        `storm ${n}: all claimed, all unique`,
        unique ? "yes" : "no",
        "yes",
        unique,
        "duplicates or failures",
      );
    }
    if (n === 10_000) {
      const factor = r.bytesPerClaim / base.bytesPerClaim;
      add(
        `storm ${n}: all claimed, all unique`,
        unique ? "yes" : "no",
        "yes",
        unique,
        "duplicates or failures",
      );
      add(
        `storm ${n}: bytes per claim / ${base.row.claimers}-claimer figure`,
        `×${factor.toFixed(2)}`,
        "≤ ×2",
        factor <= 2,
        `×${(factor / 2).toFixed(2)} over`,
      );
      add(
        `storm ${n}: time to last claim`,
        ms(r.row.elapsedMs),
        "< 60 s",
        r.row.elapsedMs < 60_000,
        `+${ms(r.row.elapsedMs - 60_000)}`,
      );
    }
  }
}

/** Runs the claim storm. */
export async function storm(ctx: Context): Promise<Table[]> {
  const { stormClaimers: n, stormProcesses: p } = ctx.settings;
  const sizes = ctx.quick ? [n] : FULL_SIZES;
  const rows: StormRow[] = [];
  const runs: InProcessFigures[] = [];
  for (const size of sizes) {
    ctx.log(`storm: ${size} idetcd claimers in one process`);
    const run = await idetcdInProcess(ctx, size);
    ctx.log(
      `storm: ${size}: ${ms(run.row.elapsedMs)}, ${run.requestsPerClaim.toFixed(2)} requests and ${
        (run.bytesPerClaim / 1000).toFixed(2)
      } kB per claim, ${run.readings} zone readings, ${run.directReads} direct reads`,
    );
    runs.push(run);
    rows.push(run.row);
  }
  reportTargets(ctx, runs);
  const copyTable = ctx.quick ? undefined : await copyCost(ctx, COPY_NAMES, COPY_WATCHERS);
  ctx.log(`storm: ${n} original get-then-put claimers in one process`);
  rows.push(await originalInProcess(n));
  ctx.log(`storm: ${p} idetcd node processes`);
  rows.push(await idetcdProcesses(ctx, p));
  ctx.log(`storm: ${p} original get-then-put processes`);
  rows.push(await originalProcesses(p));
  ctx.log(`storm: ${p} bare processes (main.ts -version)`);
  const floor = await processFloor(p);
  for (const r of rows) {
    ctx.log(`storm: ${r.scenario}: ${describeUnique(r).join(", ")}; last claim ${ms(r.elapsedMs)}`);
  }
  const tables: Table[] = [{
    title: "2. Claim storm",
    header: [
      "scenario",
      "claimers",
      "all unique",
      "duplicates",
      "time to last claim",
      "etcd requests per claim (mean / max)",
      "etcd bytes sent per claim",
      "retried steps",
      "lost races",
    ],
    rows: rows.map(toRow),
    notes: [
      `Every claimer starts at once against one fresh local etcd; the limit equals the number of ` +
      `claimers. idetcd's in-process claimers share ${SHARED_CLIENTS} etcd clients and one watch-fed ` +
      `copy of the zone (as a node's claim reads its DNS copy); the original's have one client each. ` +
      `Bytes per claim: etcd's \`etcd_network_client_grpc_sent_bytes_total\` over the storm ` +
      `(every response and watch event, retries included) divided by the claims. A claim step ` +
      `that meets an etcd error (timed out, unavailable) is retried by the Claimer itself, as a ` +
      `node's is ("retried steps"; a first claim gives up only after 30 s without an answer from ` +
      `etcd, ${GATED_CONNECT_TIMEOUT_S} s above ${GATE_ABOVE} claimers, whose calls queue in a ` +
      `gate of ${IN_FLIGHT} in flight). "mean / max" counts the ` +
      `requests each claimer made until its claim resolved, retries included (idetcd: ` +
      `\`Claimer.stats.requests\`; a claim made early in a long storm later keep-alives its ` +
      `${STORM_LEASE_SECONDS} s lease, the lease's cost, not the claim's); the in-process claimers ` +
      `use a monotonic clock, not a node's suspend-aware one, which reads /proc/uptime for every ` +
      `held lease 5 times a second (50,000 reads a second for 10,000 claimers). "etcd saw" is the server's ` +
      `own count (gRPC messages received, from etcd's /metrics) divided by the claimers, which for ` +
      `node processes includes their DNS mirror's list and watch. Processes: time from spawning the ` +
      `first to the last "claimed" line; ${p} bare \`deno run main.ts -version\` processes started ` +
      `together take ${
        ms(floor)
      } on this machine (the floor). Duplicates: claimers that got a name ` +
      `another claimer also got.`,
    ],
  }];
  if (copyTable) tables.push(copyTable);
  return tables;
}
