/**
 * 4. Scale: a node whose etcd plugin mirrors 10,000 and 100,000 SkyDNS
 * records: its memory, its query rate, and the time from start to the first
 * correct answer (the whole copy loaded).
 *
 * @module
 */

import { freePort } from "../../tests/helpers/wait.ts";
import { Scope } from "../lib/cleanup.ts";
import type { Context } from "../lib/context.ts";
import { hasAddress, Probe } from "../lib/dns.ts";
import { dnsperf, type PerfResult, shuffle, writeQueryFile } from "../lib/dnsperf.ts";
import { clientIn, etcdIn, putMany } from "../lib/etcd.ts";
import { CLAIMED, corefile, etcdDirective, idetcdDirective, startNode } from "../lib/node.ts";
import { memoryOf } from "../lib/proc.ts";
import type { Table } from "../lib/report.ts";
import { int, median, mib, ms, seconds } from "../lib/stats.ts";

/** Records are spread over this many sub-domains, like services in a real tree. */
const GROUPS = 100;
/** Names in the dnsperf query file. */
const SAMPLE = 1_000;

/** Record `i`: its key, its name and its address. */
function record(i: number): { key: string; name: string; host: string } {
  const group = `g${i % GROUPS}`;
  return {
    key: `/skydns/local/scale/${group}/h${i}`,
    name: `h${i}.${group}.scale.local.`,
    host: `10.${100 + ((i >> 16) & 127)}.${(i >> 8) & 255}.${i & 255}`,
  };
}

/** One size: write, start, measure. */
async function measure(ctx: Context, size: number): Promise<string[]> {
  await using scope = new Scope();
  const etcd = await etcdIn(scope);
  const client = clientIn(scope, etcd.endpoint);
  ctx.log(`scale: writing ${int(size)} records`);
  const records = Array.from({ length: size }, (_, i) => record(i));
  const writeStarted = performance.now();
  await putMany(client, records.map((r) => [r.key, JSON.stringify({ host: r.host })]));
  const writeMs = performance.now() - writeStarted;

  const port = await freePort();
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "scale-" });
  const probe = new Probe("127.0.0.1", port);
  scope.defer(() => probe.close());
  // The last record written: answered correctly only once the whole copy is loaded.
  const last = records[records.length - 1];
  ctx.log(`scale: starting a node over ${int(size)} records`);
  const node = await startNode(
    scope,
    `${dir}/Corefile`,
    corefile(
      "127.0.0.1",
      idetcdDirective({
        endpoint: etcd.endpoint,
        limit: 10,
        address: "127.0.0.1",
        identity: "bench-scale-node",
      }),
      etcdDirective(["scale.local"], etcd.endpoint),
    ),
    port,
  );
  const answeredAt = await probe.pollUntil(last.name, 1, (m) => hasAddress(m, last.host), 120_000);
  const firstAnswerMs = answeredAt - node.spawnedAt;
  await node.waitForLine(CLAIMED, 30_000);
  // Let start-up garbage settle before reading the resident size.
  await new Promise((r) => setTimeout(r, 1_000));
  const loaded = await memoryOf(node.pid);

  const file = `${dir}/queries.txt`;
  await writeQueryFile(
    file,
    shuffle(records, size).slice(0, SAMPLE).map((r) => ({ name: r.name, type: "A" })),
  );
  ctx.log(`scale: dnsperf over ${int(Math.min(SAMPLE, size))} of the names`);
  const runs: PerfResult[] = [];
  for (let round = 0; round < ctx.settings.rounds; round++) {
    runs.push(
      await dnsperf(
        scope,
        ctx.tools.dnsperf,
        port,
        file,
        ctx.settings.scaleSeconds,
        ctx.settings.shape,
      ),
    );
  }
  const qps = median(runs.map((r) => r.qps));
  const lost = runs.reduce((s, r) => s + r.lost, 0);
  const sent = runs.reduce((s, r) => s + r.sent, 0);
  const after = await memoryOf(node.pid);
  ctx.log(
    `scale: ${int(size)} records: first answer ${ms(firstAnswerMs)}, RSS ${
      mib(loaded?.rss ?? NaN)
    }, ${int(qps)} qps`,
  );
  return [
    int(size),
    seconds(writeMs),
    ms(firstAnswerMs),
    mib(loaded?.rss ?? NaN),
    `${mib(after?.rss ?? NaN)} / ${mib(after?.peak ?? NaN)}`,
    int(qps),
    sent > 0 ? `${((100 * lost) / sent).toFixed(2)}%` : "–",
  ];
}

/** Runs the scale measurement for every configured size. */
export async function scale(ctx: Context): Promise<Table[]> {
  const rows: string[][] = [];
  for (const size of ctx.settings.scaleSizes) rows.push(await measure(ctx, size));
  return [{
    title: "4. Scale (SkyDNS records in the etcd plugin's in-memory copy)",
    header: [
      "records",
      "etcd write (not idetcd)",
      "start -> first answer",
      "RSS after load",
      "RSS / peak RSS after the queries",
      "qps (A)",
      "lost",
    ],
    rows,
    notes: [
      `One node process (idetcd + etcd plugins) over A records \`/skydns/local/scale/gG/hN\` ` +
      `(${GROUPS} groups). "start -> first answer": from spawning \`deno run main.ts\` until the ` +
      `last record written answers correctly (polled over UDP), so it includes Deno's start and ` +
      `the full list from etcd. RSS from /proc/PID/status (VmRSS 1 s after the first answer; ` +
      `then VmRSS and VmHWM, the peak, after the dnsperf runs: the heap grows under load). qps: dnsperf ` +
      `(\`-c ${ctx.settings.shape.clients} -q ${ctx.settings.shape.outstanding}\`, ` +
      `median of ${ctx.settings.rounds} run(s) of ${ctx.settings.scaleSeconds} s) over ${
        int(SAMPLE)
      } random names of the set.`,
    ],
  }];
}
