/**
 * 2. Claim storm: many claimers start at once, in one process (separate etcd
 * clients) and as real node processes. idetcd's claim beside the original
 * idetcd's get-then-put, run the same way.
 *
 * @module
 */

import { claimerIn } from "../lib/claimers.ts";
import { Mirror } from "../../lib/etcd/mirror.ts";
import { createLogger } from "../../lib/log.ts";

/** The shared copy's log lines are not the benchmark's. */
const quietLog = createLogger("bench zone", () => {});
import { Scope } from "../lib/cleanup.ts";
import type { Context } from "../lib/context.ts";
import { clientIn, etcdIn, etcdRequestCount } from "../lib/etcd.ts";
import { CLAIMED, corefile, idetcdDirective, MAIN_PATH, startNode } from "../lib/node.ts";
import { type Proc, spawn } from "../lib/proc.ts";
import type { Table } from "../lib/report.ts";
import { mean, ms } from "../lib/stats.ts";
import { freePort } from "../../tests/helpers/wait.ts";
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
    r.lostRaces === undefined ? "–" : String(r.lostRaces),
  ];
}

/** N idetcd claimers in this process, each with its own client, all started at once. */
async function idetcdInProcess(ctx: Context, n: number): Promise<StormRow> {
  await using scope = new Scope();
  const etcd = await etcdIn(scope);
  // One watch-fed copy of the zone for all, as a node has one for its DNS anyway.
  const zone = new Mirror(clientIn(scope, etcd.endpoint), "/skydns/local/tf/", quietLog, {
    trackLeases: false,
  });
  scope.defer(() => zone.close());
  await zone.start();
  const claimers = Array.from({ length: n }, (_, i) =>
    claimerIn(scope, {
      endpoint: etcd.endpoint,
      identity: `storm-${i + 1}`,
      address: `10.1.${Math.floor((i + 1) / 250)}.${((i + 1) % 250) + 1}`,
      limit: n,
      zone,
    }));
  const before = await etcdRequestCount(etcd.endpoint);
  const started = performance.now();
  let last = 0;
  const claims = await Promise.all(claimers.map(async (c) => {
    const claimed = await c.claim();
    last = Math.max(last, performance.now());
    return claimed;
  }));
  const serverSide = (await etcdRequestCount(etcd.endpoint)) - before;
  // What etcd holds must agree with what the claimers were told.
  const client = clientIn(scope, etcd.endpoint);
  const locks = (await client.getAll().prefix("/skydns/local/tf/worker").keys())
    .filter((k) => /^\/skydns\/local\/tf\/worker\d+$/.test(k));
  if (locks.length !== new Set(claims.map((c) => c.id)).size) {
    ctx.log(`storm: WARNING etcd holds ${locks.length} locks for ${claims.length} claims`);
  }
  const requests = claimers.map((c) => c.stats.requests);
  return {
    scenario: `idetcd, ${n} claimers in one process`,
    claimers: n,
    names: claims.map((c) => c.name),
    elapsedMs: last - started,
    requests: `${mean(requests).toFixed(1)} / ${Math.max(...requests)} (etcd saw ${
      (serverSide / n).toFixed(1)
    })`,
    lostRaces: claimers.reduce((s, c) => s + c.stats.lostRaces, 0),
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

/** Runs the claim storm. */
export async function storm(ctx: Context): Promise<Table[]> {
  const { stormClaimers: n, stormProcesses: p } = ctx.settings;
  const rows: StormRow[] = [];
  ctx.log(`storm: ${n} idetcd claimers in one process`);
  rows.push(await idetcdInProcess(ctx, n));
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
  return [{
    title: "2. Claim storm",
    header: [
      "scenario",
      "claimers",
      "all unique",
      "duplicates",
      "time to last claim",
      "etcd requests per claim (mean / max)",
      "lost races",
    ],
    rows: rows.map(toRow),
    notes: [
      `Every claimer starts at once against one fresh local etcd; the limit equals the number of ` +
      `claimers. In-process claimers each have their own etcd client; "mean / max" counts the ` +
      `requests each claimer made (idetcd: \`Claimer.stats.requests\`), "etcd saw" is the server's ` +
      `own count (gRPC messages received, from etcd's /metrics) divided by the claimers, which for ` +
      `node processes includes their DNS mirror's list and watch. Processes: time from spawning the ` +
      `first to the last "claimed" line; ${p} bare \`deno run main.ts -version\` processes started ` +
      `together take ${
        ms(floor)
      } on this machine (the floor). Duplicates: claimers that got a name ` +
      `another claimer also got.`,
    ],
  }];
}
