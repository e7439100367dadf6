/**
 * 1. Query throughput: dnsperf against idetcd, Knot (the same records as
 * zone files) and a bare Deno UDP echo loop, on loopback, in three workloads,
 * interleaved round by round so the machine's noise hits all three alike.
 *
 * @module
 */

import type { Message } from "../../lib/dns/wire.ts";
import { freePort } from "../../tests/helpers/wait.ts";
import { claimerIn } from "../lib/claimers.ts";
import { Scope } from "../lib/cleanup.ts";
import type { Context } from "../lib/context.ts";
import { Probe } from "../lib/dns.ts";
import {
  dnsperf,
  type PerfResult,
  type QueryLine,
  shuffle,
  writeQueryFile,
} from "../lib/dnsperf.ts";
import { clientIn, etcdIn, putMany } from "../lib/etcd.ts";
import { startKnot, type ZoneRecord } from "../lib/knot.ts";
import { CLAIMED, corefile, etcdDirective, idetcdDirective, startNode } from "../lib/node.ts";
import { spawn } from "../lib/proc.ts";
import type { Table } from "../lib/report.ts";
import { int, median, ratio } from "../lib/stats.ts";

/** Claimed names besides the node's own. */
const CLAIMERS = 20;
/** skydns SRV targets: /skydns/local/example/_tcp/_app/app-server0N = 1.1.2.N:8080. */
const SRV_TARGETS = 3;
const SRV_NAME = "_app._tcp.example.local.";

type ServerName = "idetcd" | "Knot" | "echo";
const SERVERS: ServerName[] = ["idetcd", "Knot", "echo"];

/** A workload: its label in the table and its query file. */
interface Workload {
  label: string;
  queries: QueryLine[];
  file: string;
}

/** One dnsperf run. */
interface Run {
  round: number;
  workload: string;
  server: ServerName;
  result: PerfResult;
}

/** The section's output. */
export interface ThroughputResult {
  tables: Table[];
  /** Raw runs, for the appendix. */
  appendix: string[];
}

/** A comparable summary of a reply: rcode and record counts (OPT not counted). */
function shape(msg: Message | undefined): string {
  if (!msg) return "no reply";
  const additional = msg.additional.filter((rr) => rr.type !== 41).length;
  return `rcode ${msg.rcode}, ${msg.answer.length} answers, ${msg.authority.length} authority, ${additional} additional`;
}

/** Runs the throughput comparison. */
export async function throughput(ctx: Context): Promise<ThroughputResult> {
  const { settings } = ctx;
  await using scope = new Scope();
  const dir = `${ctx.tmp}/throughput`;
  await Deno.mkdir(dir, { recursive: true });

  ctx.log("throughput: starting etcd and writing the records");
  const etcd = await etcdIn(scope);
  const client = clientIn(scope, etcd.endpoint);
  const srv = Array.from({ length: SRV_TARGETS }, (_, i) => ({
    key: `/skydns/local/example/_tcp/_app/app-server0${i + 1}`,
    host: `1.1.2.${i + 1}`,
  }));
  await putMany(client, srv.map((s) => [s.key, JSON.stringify({ host: s.host, port: 8080 })]));

  // Real claims (the program's Claimer, one etcd client each) fill the pattern zone.
  const limit = 64;
  const claims = await Promise.all(
    Array.from({ length: CLAIMERS }, (_, i) =>
      claimerIn(scope, {
        endpoint: etcd.endpoint,
        identity: `bench-claimer-${i + 1}`,
        address: `10.0.0.${i + 1}`,
        limit,
      }).claim()),
  );

  ctx.log("throughput: starting idetcd, Knot and the echo loop");
  const port = await freePort();
  const node = await startNode(
    scope,
    `${dir}/Corefile`,
    corefile(
      "127.0.0.1",
      idetcdDirective({
        endpoint: etcd.endpoint,
        limit,
        address: "127.0.0.1",
        identity: "bench-throughput-node",
      }),
      etcdDirective(["example.local"], etcd.endpoint),
    ),
    port,
  );
  const claimedLine = await node.waitForLine(CLAIMED, 30_000);
  const nodeName = CLAIMED.exec(claimedLine.text)![1];
  const probe = new Probe("127.0.0.1", port);
  scope.defer(() => probe.close());
  // The etcd plugin's copy loads after start: wait until the SRV answer is complete.
  await probe.pollUntil(SRV_NAME, 33, (m) => m.answer.length === SRV_TARGETS, 20_000);

  const names = [
    ...claims.map((c) => ({ name: c.name, address: c.addresses[0] })),
    { name: nodeName, address: "127.0.0.1" },
  ].sort((a, b) => a.name.localeCompare(b.name, "en", { numeric: true }));

  const knotPort = await freePort();
  const knotProbe = new Probe("127.0.0.1", knotPort);
  scope.defer(() => knotProbe.close());
  const weight = Math.floor(100 / SRV_TARGETS);
  const srvRecords: ZoneRecord[] = srv.flatMap((s) => {
    const target = s.key.split("/").reverse().slice(0, 5).join(".") + ".";
    return [
      { name: SRV_NAME, ttl: 300, type: "SRV" as const, data: `10 ${weight} 8080 ${target}` },
      { name: target, ttl: 300, type: "A" as const, data: s.host },
    ];
  });
  await startKnot(scope, ctx.tools.knotd, `${dir}/knot`, knotPort, [
    {
      origin: "tf.local.",
      ttl: 30,
      records: names.map((n) => ({ name: n.name, ttl: 30, type: "A" as const, data: n.address })),
    },
    { origin: "example.local.", ttl: 30, records: srvRecords },
  ], knotProbe);

  const echoPort = await freePort();
  const echo = spawn(scope, Deno.execPath(), [
    "run",
    "--allow-net",
    "--unstable-net",
    new URL("../echo.ts", import.meta.url).pathname,
    String(echoPort),
  ]);
  await echo.waitForLine(/echo ready/, 30_000);
  const ports: Record<ServerName, number> = { idetcd: port, Knot: knotPort, echo: echoPort };

  // The three workloads.
  const a: QueryLine[] = names.map((n) => ({ name: n.name, type: "A" }));
  const srvQ: QueryLine[] = [{ name: SRV_NAME, type: "SRV" }];
  const nx: QueryLine[] = [
    ...Array.from({ length: 5 }, (_, i) => ({ name: `worker${40 + i}.tf.local.`, type: "A" })),
    ...Array.from({ length: 5 }, (_, i) => ({ name: `missing${i}.tf.local.`, type: "A" })),
    ...Array.from({ length: 10 }, (_, i) => ({ name: `nosuch${i}.example.local.`, type: "A" })),
  ];
  const mix = shuffle([
    ...Array.from({ length: 40 }, (_, i) => a[i % a.length]),
    ...Array.from({ length: 40 }, () => srvQ[0]),
    ...nx,
  ]);
  const workloads: Workload[] = [
    { label: "A: pattern names (idetcd)", queries: a, file: `${dir}/a.txt` },
    { label: "SRV: skydns (etcd)", queries: srvQ, file: `${dir}/srv.txt` },
    { label: "mix: 80% A/SRV, 20% NXDOMAIN", queries: mix, file: `${dir}/mix.txt` },
  ];
  for (const w of workloads) await writeQueryFile(w.file, w.queries);

  // The same records: every distinct query gets the same kind of reply from both.
  const mismatches: string[] = [];
  const distinct = new Map(
    workloads.flatMap((w) => w.queries).map((q) => [`${q.name} ${q.type}`, q]),
  );
  for (const q of distinct.values()) {
    const type = q.type === "SRV" ? 33 : 1;
    const [ours, knot] = [
      await probe.query(q.name, type, 1000),
      await knotProbe.query(q.name, type, 1000),
    ];
    if (shape(ours) !== shape(knot)) {
      mismatches.push(`${q.name} ${q.type}: idetcd ${shape(ours)}; Knot ${shape(knot)}`);
    }
  }
  for (const m of mismatches) ctx.log(`throughput: WARNING replies differ: ${m}`);

  ctx.log(`throughput: warm-up (${settings.warmupSeconds} s per server)`);
  for (const server of SERVERS) {
    await dnsperf(
      scope,
      ctx.tools.dnsperf,
      ports[server],
      workloads[2].file,
      settings.warmupSeconds,
      settings.shape,
    );
  }

  const runs: Run[] = [];
  for (let round = 0; round < settings.rounds; round++) {
    for (const [wi, w] of workloads.entries()) {
      // Rotate the order each time so no server always runs first (or last).
      const order = SERVERS.map((_, i) => SERVERS[(i + round + wi) % SERVERS.length]);
      for (const server of order) {
        const result = await dnsperf(
          scope,
          ctx.tools.dnsperf,
          ports[server],
          w.file,
          settings.seconds,
          settings.shape,
        );
        runs.push({ round, workload: w.label, server, result });
        ctx.log(
          `throughput: round ${round + 1}/${settings.rounds} ${w.label} ${server}: ${
            int(result.qps)
          } qps` +
            (result.lost ? `, ${result.lost} lost` : ""),
        );
      }
    }
  }

  const rows = workloads.map((w) => {
    const of = (server: ServerName) =>
      runs.filter((r) => r.workload === w.label && r.server === server);
    const qps = (server: ServerName) => median(of(server).map((r) => r.result.qps));
    // Ratios per round (side by side in time), then the median over rounds.
    const perRound = (num: ServerName, den: ServerName) =>
      median(
        Array.from({ length: settings.rounds }, (_, round) => {
          const n = of(num).find((r) => r.round === round)!.result.qps;
          const d = of(den).find((r) => r.round === round)!.result.qps;
          return n / d;
        }),
      );
    const lost = of("idetcd").reduce((s, r) => s + r.result.lost, 0);
    const sent = of("idetcd").reduce((s, r) => s + r.result.sent, 0);
    const idetcdToKnot = perRound("idetcd", "Knot");
    return [
      w.label,
      int(qps("idetcd")),
      int(qps("Knot")),
      int(qps("echo")),
      ratio(idetcdToKnot) + (idetcdToKnot >= 0.3 ? "" : " (below 0.30)"),
      ratio(perRound("echo", "Knot")),
      ratio(perRound("idetcd", "echo")),
      sent > 0 ? `${((100 * lost) / sent).toFixed(2)}%` : "–",
    ];
  });

  const appendix = [
    "<details><summary>Raw dnsperf runs (throughput)</summary>",
    "",
    "```txt",
    ...runs.map((r) =>
      `round ${r.round + 1}  ${r.workload.padEnd(30)} ${r.server.padEnd(7)} ${
        int(r.result.qps).padStart(9)
      } qps  lost ${r.result.lost}  avg latency ${r.result.latencyMs.toFixed(3)} ms  ${
        Object.entries(r.result.rcodes).map(([k, v]) => `${k} ${v}`).join(", ")
      }`
    ),
    "```",
    "",
    "</details>",
  ];

  return {
    tables: [{
      title: "1. Query throughput (dnsperf, UDP on loopback)",
      header: [
        "workload",
        "idetcd qps",
        "Knot qps",
        "echo qps",
        "idetcd / Knot",
        "echo / Knot",
        "idetcd / echo",
        "idetcd lost",
      ],
      rows,
      notes: [
        `Median of ${settings.rounds} interleaved round(s) of ${settings.seconds} s per server and workload ` +
        `(\`dnsperf -c ${settings.shape.clients} -q ${settings.shape.outstanding} -T 1\`), after a ` +
        `${settings.warmupSeconds} s warm-up each. Ratios are the median of the per-round ratios. ` +
        `Target: idetcd / Knot >= 0.30. "echo" is bench/echo.ts, the ceiling of Deno's UDP API. ` +
        `${names.length} claimed names, ${SRV_TARGETS} SRV targets; Knot with default settings.`,
        ...(mismatches.length > 0
          ? [
            `WARNING: ${mismatches.length} queries got different kinds of replies from idetcd and Knot: ${
              mismatches.join("; ")
            }`,
          ]
          : [
            "Every query of the workloads gets the same rcode and record counts from idetcd and Knot.",
          ]),
      ],
    }],
    appendix,
  };
}
