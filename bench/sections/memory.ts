/**
 * 4. Memory footprint: idetcd's resident size on both UDP paths, idle with a
 * `whoami` Corefile (CoreDNS beside it when COREDNS_BIN is set) and with
 * idetcd + etcd, then after a flood of junk datagrams and after a run of
 * queries for random names (every one a new name: what an unbounded cache
 * would keep). The 100,000-key deletion is in the scale section.
 *
 * @module
 */

import type { Message } from "../../lib/dns/wire.ts";
import { freePort } from "../../tests/helpers/wait.ts";
import { PATTERN } from "../lib/claimers.ts";
import { Scope } from "../lib/cleanup.ts";
import type { Context } from "../lib/context.ts";
import { hasAddress, Probe } from "../lib/dns.ts";
import { dnsperf, type PerfResult, shuffle, writeQueryFile } from "../lib/dnsperf.ts";
import { clientIn, etcdIn, putMany } from "../lib/etcd.ts";
import { startCoreDNS, startNode, type UdpPath } from "../lib/node.ts";
import { memoryOf, type Proc, spawn } from "../lib/proc.ts";
import type { Table } from "../lib/report.ts";
import { int, mb } from "../lib/stats.ts";

const MB = 1e6;
const ZONE = "mem.local";
/** SkyDNS records the idetcd + etcd node mirrors (the throughput section's 100). */
const RECORDS = 100;

const block = (...lines: string[]) => [". {", "    bind 127.0.0.1", ...lines, "}", ""].join("\n");

/** A started server and where it listens. */
interface Started {
  port: number;
  proc: Proc;
}

/** Junk datagram `i`: random bytes, some with a DNS header of absurd counts, some compression loops. */
function junk(i: number, random: () => number): Uint8Array {
  const length = 1 + Math.floor(random() * 600);
  const bytes = new Uint8Array(length);
  for (let j = 0; j < length; j++) bytes[j] = Math.floor(random() * 256);
  if (i % 4 === 1 && length >= 12) {
    // A query header with every count at 65535 and the question a pointer to itself.
    bytes.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 4);
    bytes[2] &= 0x7f;
    if (length >= 14) bytes.set([0xc0, 12], 12);
  }
  return bytes;
}

/** A seeded generator (mulberry32), so every run floods with the same bytes. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Sends `count` junk datagrams to 127.0.0.1:`port` (replies, if any, are left unread). */
async function flood(port: number, count: number): Promise<void> {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const random = seeded(port);
  const to: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
  try {
    for (let i = 0; i < count; i++) {
      try {
        await sock.send(junk(i, random), to);
      } catch {
        // ICMP refusals of a momentarily full socket: the flood goes on
      }
    }
  } finally {
    sock.close();
  }
}

/** RSS after a pause of `settleMs` (so a collection that is due can run). */
async function settledRss(proc: Proc, settleMs: number): Promise<number> {
  await new Promise((r) => setTimeout(r, settleMs));
  return (await memoryOf(proc.pid))?.rss ?? NaN;
}

/**
 * RSS once it has stopped falling: read every second until it has fallen by
 * less than 1 MB over the last `quietMs`, or until `maxMs` have passed. What
 * a node holds for good after a burst, rather than the garbage of the burst:
 * V8's memory reducer collects the heap only some 8-10 s after a burst ends
 * (and again some seconds later), and the allocator's free memory is trimmed
 * after that (lib/etcd/malloc_trim.ts).
 */
export async function restingRss(pid: number, maxMs: number, quietMs = 12_000): Promise<number> {
  const started = performance.now();
  const readings: { at: number; rss: number }[] = [];
  while (true) {
    const rss = (await memoryOf(pid))?.rss ?? NaN;
    const at = performance.now();
    if (!Number.isFinite(rss)) return NaN;
    readings.push({ at, rss });
    const before = readings.find((r) => r.at >= at - quietMs - 500);
    if (at - started >= maxMs) return rss;
    if (at - started >= quietMs && before && before.rss - rss < MB) return rss;
    await new Promise((r) => setTimeout(r, 1_000));
  }
}

/** Runs the memory measurements. */
export async function memory(ctx: Context): Promise<Table[]> {
  const { settings, tools } = ctx;
  await using scope = new Scope();
  const dir = `${ctx.tmp}/memory`;
  await Deno.mkdir(dir, { recursive: true });
  const paths: UdpPath[] = ["batched", "portable"];
  const settle = settings.memorySettleSeconds * 1_000;

  ctx.log("memory: whoami Corefile, idle");
  const whoami = block("    whoami");
  const start = async (name: string, text: string, path?: UdpPath): Promise<Started> => {
    const port = await freePort();
    const file = `${dir}/Corefile.${name}`;
    const proc = path
      ? await startNode(scope, file, text, port, path)
      : await startCoreDNS(scope, tools.coredns!, file, text, port);
    return { port, proc };
  };
  const answers = async (s: Started, name: string, accept: (m: Message) => boolean) => {
    const probe = new Probe("127.0.0.1", s.port);
    try {
      await probe.pollUntil(name, 1, accept, 60_000);
    } finally {
      await probe.close();
    }
  };
  const whoamiServers = await Promise.all([
    ...paths.map((p) => start(`whoami.${p}`, whoami, p)),
    ...(tools.coredns ? [start("whoami.coredns", whoami)] : []),
  ]);
  // The floor: a Deno process that loads nothing and waits (what any Deno program starts from).
  // (`deno run` of a file: `deno eval` loads more.)
  const bareScript = `${dir}/bare.js`;
  await Deno.writeTextFile(
    bareScript,
    "console.log('bare ready'); setInterval(() => {}, 60_000);\n",
  );
  const bare = spawn(scope, Deno.execPath(), ["run", bareScript]);
  await bare.waitForLine(/bare ready/, 30_000);
  await Promise.all(whoamiServers.map((s) => answers(s, "whoami.", () => true)));
  const [bareIdle, ...whoamiIdle] = await Promise.all(
    [bare, ...whoamiServers.map((s) => s.proc)].map((p) => settledRss(p, settle)),
  );
  await Promise.all([bare.stop(), ...whoamiServers.map((s) => s.proc.stop())]);

  ctx.log("memory: idetcd + etcd Corefile, idle");
  const etcd = await etcdIn(scope);
  const client = clientIn(scope, etcd.endpoint);
  const records = Array.from({ length: RECORDS }, (_, i) => ({
    key: `/skydns/local/mem/h${i}`,
    name: `h${i}.${ZONE}.`,
    host: `10.2.${i >> 8}.${i & 255}`,
  }));
  await putMany(client, records.map((r) => [r.key, JSON.stringify({ host: r.host })]));
  const nodes = await Promise.all(paths.map((p) =>
    start(
      `idetcd.${p}`,
      block(
        "    idetcd {",
        `        endpoint ${etcd.endpoint}`,
        "        limit 10",
        `        pattern ${PATTERN}`,
        "        address 127.0.0.1",
        `        identity bench-memory-${p}`,
        "    }",
        `    etcd ${ZONE} {`,
        `        endpoint ${etcd.endpoint}`,
        "    }",
      ),
      p,
    )
  ));
  const last = records[records.length - 1];
  await Promise.all(
    nodes.map((n) => answers(n, last.name, (m) => hasAddress(m, last.host))),
  );
  // Beside them, the etcd3 client alone (one client, one request) in a bare Deno process.
  const etcd3Floor = spawn(scope, Deno.execPath(), [
    "run",
    "-A",
    new URL("../floor_etcd3.ts", import.meta.url).pathname,
    etcd.endpoint,
  ]);
  await etcd3Floor.waitForLine(/floor ready/, 30_000);
  const [etcd3Idle, ...idle] = await Promise.all(
    [etcd3Floor, ...nodes.map((n) => n.proc)].map((p) => settledRss(p, settle)),
  );
  await etcd3Floor.stop();

  ctx.log(`memory: flood of ${int(settings.floodPackets)} junk datagrams`);
  await Promise.all(nodes.map((n) => flood(n.port, settings.floodPackets)));
  const flooded = await Promise.all(nodes.map((n) => settledRss(n.proc, settle)));
  const rest = settings.memorySettleSeconds * 20_000;
  const floodedRest = await Promise.all(nodes.map((n) => restingRss(n.proc.pid, rest)));

  ctx.log(`memory: ${int(settings.randomQueries)} queries for random names`);
  const random = seeded(12);
  const file = `${dir}/random.txt`;
  await writeQueryFile(
    file,
    shuffle(
      Array.from({ length: settings.randomQueries }, (_, i) => ({
        // Half in the etcd zone, half in the pattern zone: NXDOMAIN answers, all different names.
        name: `r${i.toString(36)}x${Math.floor(random() * 2 ** 32).toString(36)}.${
          i % 2 ? ZONE : "tf.local"
        }.`,
        type: "A",
      })),
      7,
    ),
  );
  const perf: PerfResult[] = await Promise.all(
    nodes.map((n) => dnsperf(scope, tools.dnsperf, n.port, file, 600, settings.shape, 1)),
  );
  const queried = await Promise.all(nodes.map((n) => settledRss(n.proc, settle)));
  const peaks = await Promise.all(nodes.map(async (n) => (await memoryOf(n.proc.pid))?.peak));
  const queriedRest = await Promise.all(nodes.map((n) => restingRss(n.proc.pid, rest)));

  const rows: string[][] = paths.map((p, i) => [
    `idetcd (-udp ${p})`,
    mb(whoamiIdle[i]),
    mb(idle[i]),
    `${mb(flooded[i])} / ${mb(floodedRest[i])}`,
    `${mb(queried[i])} / ${mb(queriedRest[i])} (${int(perf[i].completed)} answered, ${
      int(perf[i].lost)
    } lost)`,
    mb(peaks[i] ?? NaN),
  ]);
  rows.push(
    [
      "bare Deno process (`deno run` of an empty loop, the floor)",
      mb(bareIdle),
      "–",
      "–",
      "–",
      "–",
    ],
    ["bare Deno + one etcd3 client (bench/floor_etcd3.ts)", "–", mb(etcd3Idle), "–", "–", "–"],
  );
  rows.push(
    tools.coredns
      ? ["CoreDNS", mb(whoamiIdle[2]), "– (no idetcd plugin)", "–", "–", "–"]
      : ["CoreDNS", "skipped (COREDNS_BIN unset)", "–", "–", "–", "–"],
  );
  for (const [i, p] of paths.entries()) {
    const who = `RSS, idetcd (-udp ${p})`;
    ctx.targets.atMostBytes(`${who}, \`whoami\` Corefile, idle`, whoamiIdle[i], 50 * MB);
    ctx.targets.atMostBytes(`${who}, idetcd + etcd, idle`, idle[i], 60 * MB);
    ctx.targets.atMostBytes(
      `${who}, after ${int(settings.floodPackets)} junk datagrams`,
      flooded[i],
      120 * MB,
    );
    ctx.targets.atMostBytes(
      `${who}, after ${int(settings.randomQueries)} random-name queries`,
      queried[i],
      120 * MB,
    );
    // The same two once the RSS has stopped falling (what the node keeps).
    ctx.targets.atMostBytes(
      `${who}, after ${int(settings.floodPackets)} junk datagrams, at rest`,
      floodedRest[i],
      120 * MB,
    );
    ctx.targets.atMostBytes(
      `${who}, after ${int(settings.randomQueries)} random-name queries, at rest`,
      queriedRest[i],
      120 * MB,
    );
  }

  return [{
    title: "4. Memory (VmRSS of the server process)",
    header: [
      "server",
      "`whoami`, idle",
      "idetcd + etcd, idle",
      `after ${int(settings.floodPackets)} junk datagrams / at rest`,
      `after ${int(settings.randomQueries)} random-name queries / at rest`,
      "peak (VmHWM)",
    ],
    rows,
    notes: [
      `Each reading ${settings.memorySettleSeconds} s after the step. \`whoami\`: \`. { bind 127.0.0.1; ` +
      `whoami }\`, once it has answered. idetcd + etcd: an \`idetcd\` block (\`${PATTERN}\`) ` +
      `and \`etcd ${ZONE}\` over ${RECORDS} SkyDNS records, once the copy answers. The flood: ` +
      `datagrams of 1-600 random bytes, every fourth one a header with all counts 65535 and a ` +
      `self-pointing name, sent from one socket as fast as it can. Random names: dnsperf ` +
      `(\`-c ${settings.shape.clients} -q ${settings.shape.outstanding} -n 1\`) through a file ` +
      `of ${int(settings.randomQueries)} distinct names that do not exist, half in each zone. ` +
      `Both paths' nodes run side by side through each step. "At rest": the RSS once it has ` +
      `fallen by less than 1 MB over 12 s (read every second, at most ${
        settings.memorySettleSeconds * 20
      } s after the first reading): V8's memory reducer collects the heap only some 8-10 s ` +
      `after a burst, and the allocator is trimmed after it.`,
    ],
  }];
}
