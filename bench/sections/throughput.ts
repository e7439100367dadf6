/**
 * 1. Query throughput, side by side: idetcd on both UDP paths and CoreDNS
 * (COREDNS_BIN) each given the same Corefile over the same 100 SkyDNS A
 * records in one etcd (`etcd` alone, `cache` + `etcd`, the production chain
 * `prometheus` + `errors` + `cache` + `etcd`), idetcd's own pattern names,
 * and the references: Knot (1 UDP worker) over the same records as zone
 * files, the bare Deno datagram echo loop and the FFI (recvmmsg/sendmmsg)
 * echo loop. dnsperf `-c 1 -q 100 -T 1`, every server once per round in an
 * order shuffled per round, so the machine's noise hits all alike; qps, the
 * server's own CPU time per answered query, lost queries, RSS idle and after
 * the load.
 *
 * @module
 */

import { freePort } from "../../tests/helpers/wait.ts";
import { claimerIn, PATTERN } from "../lib/claimers.ts";
import { Scope } from "../lib/cleanup.ts";
import type { Context } from "../lib/context.ts";
import { hasAddress, Probe } from "../lib/dns.ts";
import { dnsperf, type PerfResult, shuffle, writeQueryFile } from "../lib/dnsperf.ts";
import { clientIn, etcdIn, putMany } from "../lib/etcd.ts";
import { startKnot } from "../lib/knot.ts";
import { CLAIMED, startCoreDNS, startNode, type UdpPath } from "../lib/node.ts";
import { clockTicks, cpuTicksOf, memoryOf, type Proc, spawn } from "../lib/proc.ts";
import type { Table } from "../lib/report.ts";
import { int, mb, median, ratio } from "../lib/stats.ts";

/** SkyDNS A records under /skydns/local/bench/, the issue's 100. */
const RECORDS = 100;
const ZONE = "bench.local";
/** Claimed names besides the nodes' own, for the idetcd-names workload. */
const CLAIMERS = 20;
const LIMIT = 64;

/** Record `i`: its key, name and address. */
function record(i: number): { key: string; name: string; host: string } {
  return {
    key: `/skydns/local/bench/h${i}`,
    name: `h${i}.${ZONE}.`,
    host: `10.1.${i >> 8}.${i & 255}`,
  };
}

/** The Corefiles given to idetcd (and CoreDNS where it has the plugins). */
interface CorefileSpec {
  id: "etcd" | "cache" | "production" | "names";
  label: string;
  /** The issue's Knot target for idetcd's figure (undefined: none). */
  knotTarget?: number;
  /** CoreDNS gets the same Corefile (it has no idetcd plugin). */
  coredns: boolean;
  /** The Corefile; `metrics` is the server's own prometheus port, `identity` its idetcd identity. */
  text(endpoint: string, metrics: number, identity: string): string;
}

const etcdBlock = (endpoint: string) =>
  [`    etcd ${ZONE} {`, `        endpoint ${endpoint}`, "    }"].join("\n");
const block = (...lines: string[]) => [". {", "    bind 127.0.0.1", ...lines, "}", ""].join("\n");

const COREFILES: CorefileSpec[] = [
  {
    id: "etcd",
    label: "`etcd` alone",
    coredns: true,
    text: (e) => block(etcdBlock(e)),
  },
  {
    id: "cache",
    label: "`cache` + `etcd`",
    knotTarget: 0.8,
    coredns: true,
    text: (e) => block("    cache", etcdBlock(e)),
  },
  {
    id: "production",
    label: "`prometheus` + `errors` + `cache` + `etcd`",
    knotTarget: 0.6,
    coredns: true,
    text: (e, m) => block(`    prometheus 127.0.0.1:${m}`, "    errors", "    cache", etcdBlock(e)),
  },
  {
    id: "names",
    label: "`idetcd` names",
    knotTarget: 0.8,
    coredns: false,
    text: (e, _m, identity) =>
      block(
        "    idetcd {",
        `        endpoint ${e}`,
        `        limit ${LIMIT}`,
        `        pattern ${PATTERN}`,
        "        address 127.0.0.1",
        `        identity ${identity}`,
        "    }",
      ),
  },
];

type Kind = "idetcd" | "CoreDNS" | "Knot" | "echo" | "echo-ffi";

/** One server under load, and the query file dnsperf sends it. */
interface Server {
  id: string;
  kind: Kind;
  /** The row label, e.g. "idetcd (-udp batched)". */
  label: string;
  corefile?: CorefileSpec["id"];
  path?: UdpPath;
  /** "skydns" or "names": which query file (and which Knot run it is compared with). */
  workload: "skydns" | "names";
  port: number;
  proc: Proc;
  rssIdle?: number;
  rssLoaded?: number;
}

/** One dnsperf run against one server. */
interface Run {
  round: number;
  server: string;
  result: PerfResult;
  /** The server's CPU time per answered query, µs. */
  cpuUs: number;
  /** The server's CPU time over the run's length: 1.0 is one core busy all the time. */
  cores: number;
}

/** The section's output. */
export interface ThroughputResult {
  tables: Table[];
  /** Raw runs, for the appendix. */
  appendix: string[];
}

const LABELS: Record<Kind, string> = {
  idetcd: "idetcd",
  CoreDNS: "CoreDNS",
  Knot: "Knot (1 UDP worker)",
  echo: "echo loop, Deno.listenDatagram (bench/echo.ts)",
  "echo-ffi": "echo loop, FFI recvmmsg/sendmmsg (bench/echo_ffi.ts)",
};

/** Runs the side-by-side throughput comparison. */
export async function throughput(ctx: Context): Promise<ThroughputResult> {
  const { settings, tools } = ctx;
  await using scope = new Scope();
  const dir = `${ctx.tmp}/throughput`;
  await Deno.mkdir(dir, { recursive: true });
  const ticks = await clockTicks();

  ctx.log(`throughput: starting etcd and writing ${RECORDS} SkyDNS records`);
  const etcd = await etcdIn(scope);
  const client = clientIn(scope, etcd.endpoint);
  const records = Array.from({ length: RECORDS }, (_, i) => record(i));
  await putMany(client, records.map((r) => [r.key, JSON.stringify({ host: r.host })]));
  // Real claims (the program's Claimer) fill the pattern zone for the names workload.
  const claims = await Promise.all(
    Array.from({ length: CLAIMERS }, (_, i) =>
      claimerIn(scope, {
        endpoint: etcd.endpoint,
        identity: `bench-claimer-${i + 1}`,
        address: `10.0.0.${i + 1}`,
        limit: LIMIT,
      }).claim()),
  );

  ctx.log("throughput: starting idetcd (both UDP paths), CoreDNS, Knot and the echo loops");
  const servers: Server[] = [];
  // The echo loops start with the nodes (a Deno start each); they are waited for further down.
  const echoes = Promise.all((["echo", "echo-ffi"] as const).map(async (kind): Promise<Server> => {
    const port = await freePort();
    const script = new URL(kind === "echo" ? "../echo.ts" : "../echo_ffi.ts", import.meta.url);
    const proc = spawn(scope, Deno.execPath(), ["run", "-A", script.pathname, String(port)]);
    return { id: kind, kind, label: LABELS[kind], workload: "skydns", port, proc };
  }));
  const starts: Promise<void>[] = [];
  for (const spec of COREFILES) {
    const kinds: { kind: Kind; path?: UdpPath }[] = [
      { kind: "idetcd", path: "batched" },
      { kind: "idetcd", path: "portable" },
      ...(spec.coredns && tools.coredns ? [{ kind: "CoreDNS" as Kind }] : []),
    ];
    for (const { kind, path } of kinds) {
      starts.push((async () => {
        const port = await freePort();
        const id = `${spec.id}/${kind}${path ? `/${path}` : ""}`;
        const text = spec.text(etcd.endpoint, await freePort(), `bench-${id.replaceAll("/", "-")}`);
        const file = `${dir}/Corefile.${id.replaceAll("/", ".")}`;
        const proc = kind === "CoreDNS"
          ? await startCoreDNS(scope, tools.coredns!, file, text, port)
          : await startNode(scope, file, text, port, path);
        servers.push({
          id,
          kind,
          label: kind === "CoreDNS" ? "CoreDNS" : `idetcd (-udp ${path})`,
          corefile: spec.id,
          path,
          workload: spec.id === "names" ? "names" : "skydns",
          port,
          proc,
        });
      })());
    }
  }
  await Promise.all(starts);

  // The etcd copies load after start: wait until every server answers the last record.
  const last = records[records.length - 1];
  const nodeNames: { name: string; address: string }[] = [];
  await Promise.all(servers.map(async (s) => {
    const probe = new Probe("127.0.0.1", s.port);
    try {
      if (s.workload === "names") {
        const line = await s.proc.waitForLine(CLAIMED, 60_000);
        nodeNames.push({ name: CLAIMED.exec(line.text)![1], address: "127.0.0.1" });
      } else {
        await probe.pollUntil(last.name, 1, (m) => hasAddress(m, last.host), 60_000);
      }
    } catch (err) {
      throw new Error(`${s.id}: ${(err as Error).message}\n${s.proc.output()}`);
    } finally {
      await probe.close();
    }
  }));
  const names = [
    ...claims.map((c) => ({ name: c.name, address: c.addresses[0] })),
    ...nodeNames,
  ].sort((a, b) => a.name.localeCompare(b.name, "en", { numeric: true }));

  const knotPort = await freePort();
  const knotProbe = new Probe("127.0.0.1", knotPort);
  scope.defer(() => knotProbe.close());
  const knot = await startKnot(scope, tools.knotd, `${dir}/knot`, knotPort, [
    {
      origin: `${ZONE}.`,
      ttl: 300,
      records: records.map((r) => ({ name: r.name, ttl: 300, type: "A" as const, data: r.host })),
    },
    {
      origin: "tf.local.",
      ttl: 30,
      records: names.map((n) => ({ name: n.name, ttl: 30, type: "A" as const, data: n.address })),
    },
  ], knotProbe);
  for (const workload of ["skydns", "names"] as const) {
    servers.push({
      id: `knot/${workload}`,
      kind: "Knot",
      label: LABELS.Knot,
      workload,
      port: knotPort,
      proc: knot.proc,
    });
  }
  for (const echo of await echoes) {
    await echo.proc.waitForLine(/echo ready/, 30_000);
    servers.push(echo);
  }

  const files = { skydns: `${dir}/skydns.txt`, names: `${dir}/names.txt` };
  await writeQueryFile(files.skydns, records.map((r) => ({ name: r.name, type: "A" })));
  await writeQueryFile(files.names, names.map((n) => ({ name: n.name, type: "A" })));

  // Same answers first: every DNS server answers every name of its file with the right address.
  const wrong: string[] = [];
  for (const s of servers.filter((s) => s.kind !== "echo" && s.kind !== "echo-ffi")) {
    const probe = new Probe("127.0.0.1", s.port);
    try {
      const expected = s.workload === "names"
        ? names
        : records.map((r) => ({ name: r.name, address: r.host }));
      for (const e of expected) {
        const reply = await probe.query(e.name, 1, 1000);
        if (!reply || !hasAddress(reply, e.address)) wrong.push(`${s.id}: ${e.name}`);
      }
    } finally {
      await probe.close();
    }
  }
  for (const w of wrong) ctx.log(`throughput: WARNING wrong or no answer: ${w}`);

  // Idle: started, loaded, checked, before any load.
  await new Promise((r) => setTimeout(r, 1_000));
  for (const s of servers) s.rssIdle = (await memoryOf(s.proc.pid))?.rss;

  if (settings.warmupSeconds > 0) {
    ctx.log(`throughput: warm-up (${settings.warmupSeconds} s per server)`);
    for (const s of servers) {
      await dnsperf(
        scope,
        tools.dnsperf,
        s.port,
        files[s.workload],
        settings.warmupSeconds,
        settings.shape,
      );
    }
  }

  const runs: Run[] = [];
  for (let round = 0; round < settings.rounds; round++) {
    // A new order every round (seeded, so runs are repeatable): no server always goes first.
    for (const s of shuffle(servers, round + 1)) {
      const before = await cpuTicksOf(s.proc.pid);
      const result = await dnsperf(
        scope,
        tools.dnsperf,
        s.port,
        files[s.workload],
        settings.seconds,
        settings.shape,
      );
      const after = await cpuTicksOf(s.proc.pid);
      const cpuSeconds = before !== undefined && after !== undefined
        ? (after - before) / ticks
        : NaN;
      const cpuUs = result.completed > 0 ? cpuSeconds * 1e6 / result.completed : NaN;
      runs.push({ round, server: s.id, result, cpuUs, cores: cpuSeconds / settings.seconds });
      ctx.log(
        `throughput: round ${round + 1}/${settings.rounds} ${s.id}: ${int(result.qps)} qps, ` +
          `${cpuUs.toFixed(1)} µs CPU/query` + (result.lost ? `, ${result.lost} lost` : ""),
      );
    }
  }
  for (const s of servers) s.rssLoaded = (await memoryOf(s.proc.pid))?.rss;

  const of = (id: string) => runs.filter((r) => r.server === id);
  const qps = (id: string) => median(of(id).map((r) => r.result.qps));
  // Ratios per round (runs seconds apart), then the median over rounds.
  const perRound = (num: string, den: string) =>
    median(
      Array.from({ length: settings.rounds }, (_, round) => {
        const n = of(num).find((r) => r.round === round)?.result.qps ?? NaN;
        const d = of(den).find((r) => r.round === round)?.result.qps ?? NaN;
        return n / d;
      }).filter(Number.isFinite),
    );
  const lost = (id: string) => {
    const sent = of(id).reduce((s, r) => s + r.result.sent, 0);
    const lost = of(id).reduce((s, r) => s + r.result.lost, 0);
    return sent > 0 ? `${int(lost)} (${((100 * lost) / sent).toFixed(2)}%)` : "–";
  };
  const row = (s: Server, vsCoreDNS: string, vsKnot: string) => [
    s.label,
    int(qps(s.id)),
    median(of(s.id).map((r) => r.cpuUs)).toFixed(1),
    median(of(s.id).map((r) => r.cores)).toFixed(2),
    lost(s.id),
    s.kind === "Knot" && s.workload === "names" ? "(same process)" : mb(s.rssIdle ?? NaN),
    s.kind === "Knot" && s.workload === "names" ? "(same process)" : mb(s.rssLoaded ?? NaN),
    vsCoreDNS,
    vsKnot,
  ];

  const rows: string[][] = [];
  for (const spec of COREFILES) {
    const group = servers.filter((s) => s.corefile === spec.id);
    const coredns = group.find((s) => s.kind === "CoreDNS");
    const knotId = `knot/${spec.id === "names" ? "names" : "skydns"}`;
    rows.push([`**${spec.label}**`, "", "", "", "", "", "", "", ""]);
    for (const s of group) {
      const vsKnot = perRound(s.id, knotId);
      const vsCore = coredns && s !== coredns ? perRound(s.id, coredns.id) : NaN;
      rows.push(row(
        s,
        s === coredns
          ? "1"
          : spec.coredns
          ? coredns ? `${ratio(vsCore)} (≥ 1.00)` : "skipped (COREDNS_BIN unset)"
          : "– (no such plugin)",
        s.kind === "idetcd" && spec.knotTarget
          ? `${ratio(vsKnot)} (≥ ${ratio(spec.knotTarget)})`
          : ratio(vsKnot),
      ));
      if (s.kind !== "idetcd") continue;
      const who = `${spec.label}: idetcd (-udp ${s.path})`;
      if (spec.coredns) {
        if (coredns) ctx.targets.atLeast(`${who} / CoreDNS`, vsCore, 1.0);
        else ctx.targets.skipped(`${who} / CoreDNS`, "≥ 1.00", "COREDNS_BIN unset");
      }
      if (spec.knotTarget) ctx.targets.atLeast(`${who} / Knot`, vsKnot, spec.knotTarget);
    }
    if (spec.coredns && !coredns) {
      rows.push(["CoreDNS", "skipped (COREDNS_BIN unset)", "", "", "", "", "", "", ""]);
    }
  }
  rows.push(["**references** (no DNS work for the echo loops)", "", "", "", "", "", "", "", ""]);
  for (const s of servers.filter((s) => s.kind === "Knot" || s.kind.startsWith("echo"))) {
    const label = s.kind === "Knot" ? `${s.label}, ${s.workload === "names" ? "names" : ZONE}` : s
      .label;
    rows.push(
      row({ ...s, label }, "", s.kind === "Knot" ? "1" : ratio(perRound(s.id, "knot/skydns"))),
    );
  }

  const appendix = [
    "<details><summary>Raw dnsperf runs (throughput)</summary>",
    "",
    "```txt",
    ...runs.map((r) =>
      `round ${r.round + 1}  ${r.server.padEnd(26)} ${int(r.result.qps).padStart(9)} qps  ` +
      `${r.cpuUs.toFixed(1).padStart(6)} µs CPU/query ${
        r.cores.toFixed(2)
      } cores  lost ${r.result.lost}  avg latency ${r.result.latencyMs.toFixed(3)} ms  ${
        Object.entries(r.result.rcodes).map(([k, v]) => `${k} ${v}`).join(", ")
      }`
    ),
    "```",
    "",
    "</details>",
  ];

  return {
    tables: [{
      title: "1. Query throughput, side by side (dnsperf, UDP on loopback)",
      header: [
        "server",
        "qps",
        "CPU µs / query",
        "CPU used (cores)",
        "lost",
        "RSS idle",
        "RSS after load",
        "/ CoreDNS (target)",
        "/ Knot (target)",
      ],
      rows,
      notes: [
        `Median of ${settings.rounds} interleaved round(s) of ${settings.seconds} s per server ` +
        `(\`dnsperf -c ${settings.shape.clients} -q ${settings.shape.outstanding} -T 1 -t 1\`)` +
        (settings.warmupSeconds > 0 ? `, after a ${settings.warmupSeconds} s warm-up each` : "") +
        `; every round runs every server once, in an order shuffled per round. Ratios are the ` +
        `median of the per-round ratios. idetcd and CoreDNS get the same Corefile (\`. { bind ` +
        `127.0.0.1 ... }\`, only the prometheus port differs so they can run at once) over the ` +
        `same ${RECORDS} SkyDNS A records (\`/skydns/local/bench/hN\`) in one etcd; the query ` +
        `file is those ${RECORDS} names. The \`idetcd\` names: ${names.length} claimed ` +
        `\`${PATTERN}\` names (${CLAIMERS} claimers and the two nodes). Knot serves the same ` +
        `records from zone files with \`udp-workers: 1\`. CPU µs / query: the server's own ` +
        `user + system time (/proc/PID/stat, ${ticks} ticks/s) over the run divided by the ` +
        `queries answered; CPU used: that time over the run's length (1.00: one core busy throughout; ` +
        `dnsperf's one sender thread needs about one of the 2 cores). RSS: VmRSS once loaded and ` +
        `checked, and after the last round.`,
        wrong.length > 0
          ? `WARNING: ${wrong.length} wrong or missing answers before the runs: ${
            wrong.slice(0, 10).join("; ")
          }`
          : "Before the runs, every server answered every name of its query file with the right " +
            "address.",
      ],
    }],
    appendix,
  };
}
