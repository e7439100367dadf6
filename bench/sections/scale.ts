/**
 * 5. Scale: a node (one per UDP path) whose etcd plugin mirrors 10,000 and
 * 100,000 SkyDNS records: its memory, its query rate, the time from start to
 * the first correct answer (the whole copy loaded), and its memory once every
 * key is deleted again.
 *
 * @module
 */

import { freePort } from "../../tests/helpers/wait.ts";
import { Scope } from "../lib/cleanup.ts";
import type { Context } from "../lib/context.ts";
import { hasAddress, Probe } from "../lib/dns.ts";
import { dnsperf, type PerfResult, shuffle, writeQueryFile } from "../lib/dnsperf.ts";
import { clientIn, etcdIn, putMany } from "../lib/etcd.ts";
import {
  CLAIMED,
  corefile,
  etcdDirective,
  idetcdDirective,
  startNode,
  type UdpPath,
} from "../lib/node.ts";
import { memoryOf, type Proc } from "../lib/proc.ts";
import { restingRss } from "./memory.ts";
import type { Table } from "../lib/report.ts";
import { int, mb, median, ms, seconds } from "../lib/stats.ts";

/** Records are spread over this many sub-domains, like services in a real tree. */
const GROUPS = 100;
/** Names in the dnsperf query file. */
const SAMPLE = 1_000;
/** Both UDP paths of idetcd. */
const PATHS: UdpPath[] = ["batched", "portable"];

/** Record `i`: its key, its name and its address. */
function record(i: number): { key: string; name: string; host: string } {
  const group = `g${i % GROUPS}`;
  return {
    key: `/skydns/local/scale/${group}/h${i}`,
    name: `h${i}.${group}.scale.local.`,
    host: `10.${100 + ((i >> 16) & 127)}.${(i >> 8) & 255}.${i & 255}`,
  };
}

/** One node of a size: its UDP path, port and process. */
interface ScaleNode {
  path: UdpPath;
  port: number;
  proc: Proc;
  firstAnswerMs: number;
}

/** One size: write, start a node on each UDP path, measure, delete every key, measure again. */
async function measure(ctx: Context, size: number): Promise<string[][]> {
  await using scope = new Scope();
  const etcd = await etcdIn(scope);
  const client = clientIn(scope, etcd.endpoint);
  ctx.log(`scale: writing ${int(size)} records`);
  const records = Array.from({ length: size }, (_, i) => record(i));
  const writeStarted = performance.now();
  await putMany(client, records.map((r) => [r.key, JSON.stringify({ host: r.host })]));
  const writeMs = performance.now() - writeStarted;

  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "scale-" });
  // The last record written: answered correctly only once the whole copy is loaded.
  const last = records[records.length - 1];
  ctx.log(`scale: starting a node per UDP path over ${int(size)} records`);
  const nodes: ScaleNode[] = await Promise.all(PATHS.map(async (path) => {
    const port = await freePort();
    const probe = new Probe("127.0.0.1", port);
    scope.defer(() => probe.close());
    const proc = await startNode(
      scope,
      `${dir}/Corefile.${path}`,
      corefile(
        "127.0.0.1",
        idetcdDirective({
          endpoint: etcd.endpoint,
          limit: 10,
          address: "127.0.0.1",
          identity: `bench-scale-node-${path}`,
        }),
        etcdDirective(["scale.local"], etcd.endpoint),
      ),
      port,
      path,
    );
    const answeredAt = await probe.pollUntil(
      last.name,
      1,
      (m) => hasAddress(m, last.host),
      120_000,
    );
    await proc.waitForLine(CLAIMED, 30_000);
    return { path, port, proc, firstAnswerMs: answeredAt - proc.spawnedAt };
  }));
  // Let start-up garbage settle before reading the resident size.
  await new Promise((r) => setTimeout(r, 1_000));
  const loaded = await Promise.all(nodes.map((n) => memoryOf(n.proc.pid)));

  const file = `${dir}/queries.txt`;
  await writeQueryFile(
    file,
    shuffle(records, size).slice(0, SAMPLE).map((r) => ({ name: r.name, type: "A" })),
  );
  ctx.log(`scale: dnsperf over ${int(Math.min(SAMPLE, size))} of the names`);
  const runs = new Map<ScaleNode, PerfResult[]>(nodes.map((n) => [n, []]));
  for (let round = 0; round < ctx.settings.rounds; round++) {
    // Alternating, so both paths see the same minutes of the machine.
    for (const n of round % 2 ? [...nodes].reverse() : nodes) {
      runs.get(n)!.push(
        await dnsperf(
          scope,
          ctx.tools.dnsperf,
          n.port,
          file,
          ctx.settings.scaleSeconds,
          ctx.settings.shape,
        ),
      );
    }
  }
  const after = await Promise.all(nodes.map((n) => memoryOf(n.proc.pid)));

  ctx.log(`scale: deleting the ${int(size)} keys`);
  await client.delete().prefix("/skydns/local/scale/");
  await Promise.all(nodes.map(async (n) => {
    const probe = new Probe("127.0.0.1", n.port);
    try {
      // Generous: etcd 3.4 itself takes minutes on a busy machine to send
      // watchers one revision of 100,000 deletions (etcdctl watch alike:
      // 70 s to 3 min measured here), whatever the client does with them.
      await probe.pollUntil(last.name, 1, (m) => m.rcode === 3, 600_000);
    } finally {
      await probe.close();
    }
  }));
  await new Promise((r) => setTimeout(r, ctx.settings.scaleSettleSeconds * 1_000));
  const deleted = await Promise.all(nodes.map((n) => memoryOf(n.proc.pid)));
  const rest = ctx.settings.scaleSettleSeconds * 9_000;
  const deletedRest = await Promise.all(nodes.map((n) => restingRss(n.proc.pid, rest)));

  return nodes.map((n, i) => {
    const own = runs.get(n)!;
    const qps = median(own.map((r) => r.qps));
    const lost = own.reduce((s, r) => s + r.lost, 0);
    const sent = own.reduce((s, r) => s + r.sent, 0);
    ctx.log(
      `scale: ${int(size)} records, ${n.path}: first answer ${ms(n.firstAnswerMs)}, RSS ${
        mb(loaded[i]?.rss ?? NaN)
      }, ${int(qps)} qps, RSS after deletion ${mb(deleted[i]?.rss ?? NaN)}, at rest ${
        mb(deletedRest[i])
      }`,
    );
    if (size === 100_000) {
      ctx.targets.atMostBytes(
        `RSS, idetcd (-udp ${n.path}), after deleting 100,000 keys`,
        deleted[i]?.rss ?? NaN,
        80e6,
      );
      ctx.targets.atMostBytes(
        `RSS, idetcd (-udp ${n.path}), after deleting 100,000 keys, at rest`,
        deletedRest[i],
        80e6,
      );
    }
    return [
      int(size),
      n.path,
      seconds(writeMs),
      ms(n.firstAnswerMs),
      mb(loaded[i]?.rss ?? NaN),
      `${mb(after[i]?.rss ?? NaN)} / ${mb(after[i]?.peak ?? NaN)}`,
      int(qps),
      sent > 0 ? `${((100 * lost) / sent).toFixed(2)}%` : "–",
      `${mb(deleted[i]?.rss ?? NaN)} / ${mb(deletedRest[i])}`,
    ];
  });
}

/** Runs the scale measurement for every configured size. */
export async function scale(ctx: Context): Promise<Table[]> {
  const rows: string[][] = [];
  for (const size of ctx.settings.scaleSizes) rows.push(...await measure(ctx, size));
  return [{
    title: "5. Scale (SkyDNS records in the etcd plugin's in-memory copy)",
    header: [
      "records",
      "UDP path",
      "etcd write (not idetcd)",
      "start -> first answer",
      "RSS after load",
      "RSS / peak RSS after the queries",
      "qps (A)",
      "lost",
      "RSS after deleting every key / at rest",
    ],
    rows,
    notes: [
      `One node process per UDP path (\`-udp batched\`, \`-udp portable\`; idetcd + etcd ` +
      `plugins), side by side over one etcd holding A records \`/skydns/local/scale/gG/hN\` ` +
      `(${GROUPS} groups). "start -> first answer": from spawning \`deno run main.ts\` until the ` +
      `last record written answers correctly (polled over UDP), so it includes Deno's start and ` +
      `the full list from etcd. RSS from /proc/PID/status (VmRSS 1 s after the first answer; ` +
      `then VmRSS and VmHWM, the peak, after the dnsperf runs: the heap grows under load). qps: dnsperf ` +
      `(\`-c ${ctx.settings.shape.clients} -q ${ctx.settings.shape.outstanding}\`, ` +
      `median of ${ctx.settings.rounds} run(s) of ${ctx.settings.scaleSeconds} s) over ${
        int(SAMPLE)
      } random names of the set, the two nodes alternating. Then every key is deleted (one ` +
      `range delete) and, once the last record answers NXDOMAIN on both, RSS is read again ` +
      `after ${ctx.settings.scaleSettleSeconds} s, and "at rest" once it has fallen by less ` +
      `than 1 MB over 12 s (at most ${ctx.settings.scaleSettleSeconds * 9} s later; V8 ` +
      `collects the heap some 8-10 s after a burst). Sizes in MB (10^6 bytes). Target: back ` +
      `under 80 MB after deleting 100,000 keys.`,
    ],
  }];
}
