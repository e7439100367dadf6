/**
 * The fast path changes speed, never answers: for every combination of
 * cache (with its prefetch and serve_stale variants), prometheus, errors,
 * log and bufsize in front of an answering plugin (whoami, and etcd over a
 * real etcd), one configuration served with the fast path and one without
 * it get the same queries at the same (hand-moved) clock, and must send the
 * same bytes (IDs aside, which both copy from the query; etcd's SOA serial
 * aside, which is the unix time and which a reply kept up to a second
 * carries from when it was made), count the same metrics and log the same
 * lines. Each row also checks that the fast path answered what it should
 * (something whenever no plugin in front needs the full path) and nothing
 * else.
 */

import assert from "node:assert/strict";
import { decodeMessage, encodeQuery, type Message } from "../dns/wire.ts";
import { Rcode, type SOAData, Type } from "../dns/types.ts";
import { createLogger } from "../log.ts";
import { PLUGINS } from "../../plugins.ts";
import { cacheDefinition } from "../plugins/cache/mod.ts";
import { parseSnippet } from "../plugins/health/testing.ts";
import { serviceJSON } from "../plugins/etcd/testing.ts";
import { createClient } from "../etcd/client.ts";
import { sharedEtcd } from "../../tests/helpers/etcd.ts";
import { freePort, waitFor } from "../../tests/helpers/wait.ts";
import { buildConfig, type Config } from "./config.ts";
import { Dispatcher, type Endpoint } from "./dispatch.ts";
import { render } from "./metrics.ts";
import type { ServerControl } from "./plugin.ts";
import { Resources } from "./resources.ts";

const NO_SERVER: ServerControl = {
  readCorefile: () => Promise.reject(new Error("no Corefile reader in this test")),
  reload: () => Promise.resolve(false),
};

const etcd = sharedEtcd();

/** The plugins in front of the answerer that a row may hold (plugins.ts decides their order). */
const FRONT = ["bufsize", "prometheus", "errors", "log", "cache"] as const;
/** The cache lines a row with cache tries: defaults, prefetch, serve_stale. */
const CACHES = [
  "cache",
  "cache {\n prefetch 2 1m 10%\n }",
  "cache {\n serve_stale 1h\n }",
];

/** One question of a round. */
interface Ask {
  name: string;
  type: number;
  udpSize?: number;
  dnssecOk?: boolean;
  cd?: boolean;
  rd?: boolean;
  transport?: "udp" | "tcp";
  client?: Endpoint;
}

const V4: Endpoint = { address: "127.0.0.1", port: 40001 };
const V6: Endpoint = { address: "::1", port: 40002 };

/** Every shape of question the fast path keys on, over the given names. */
function asks(names: { hit: string; nodata: string; nx: string; txt: string; out: string }): Ask[] {
  return [
    { name: names.hit, type: Type.A },
    { name: names.hit, type: Type.A },
    { name: names.hit.toUpperCase(), type: Type.A },
    { name: names.hit, type: Type.A, rd: false, client: V6 },
    { name: names.hit, type: Type.A, udpSize: 4096 },
    { name: names.hit, type: Type.A, udpSize: 4096, dnssecOk: true },
    { name: names.hit, type: Type.A, cd: true },
    { name: names.hit, type: Type.A, transport: "tcp" },
    { name: names.nodata, type: Type.AAAA },
    { name: names.nx, type: Type.A },
    { name: names.nx, type: Type.A, udpSize: 1232 },
    { name: names.txt, type: Type.TXT },
    { name: names.out, type: Type.A },
  ];
}

/**
 * Clock steps between rounds (ms), for whoami's 5 s cache TTL and etcd's
 * 300 s: the same second, seconds later, whoami near expiry (prefetch),
 * whoami expired (stale), etcd near expiry (prefetch), etcd expired
 * (stale), past serve_stale's hour.
 */
const STEPS = [
  0,
  0,
  1_000,
  2_000,
  1_500,
  1_000,
  60_000,
  209_500,
  20_000,
  10_000,
  400_000,
  3_600_000,
];

/** One configuration of a row: its dispatcher, the lines it logged, its metrics port. */
interface Side {
  config: Config;
  dispatcher: Dispatcher;
  lines: string[];
  port: number;
}

/** Builds and starts one side of a row. */
async function side(
  body: string,
  zone: string,
  port: number,
  resources: Resources,
  now: () => number,
  fastPath: boolean,
): Promise<Side> {
  const lines: string[] = [];
  const log = createLogger("", (_level, line) => lines.push(line));
  const plugins = PLUGINS.map((p) => (p.name === "cache" ? cacheDefinition(now) : p));
  const config = await buildConfig(parseSnippet(`${zone}:${port} {\n${body}\n}`), {
    plugins,
    defaultPort: port,
    configDir: ".",
    resources,
    log,
    server: NO_SERVER,
  });
  for (const hook of config.startup) await hook(config);
  return {
    config,
    dispatcher: new Dispatcher(config.listeners[0], log, { fastPath }),
    lines,
    port,
  };
}

/** The metric samples of one side by series, its server label taken out, durations left out (timings). */
function metricsOf(port: number): Map<string, number> {
  const label = `server="dns://:${port}"`;
  const out = new Map<string, number>();
  for (const line of render().split("\n")) {
    if (!line.includes(label)) continue;
    if (/^coredns_dns_request_duration_seconds_(bucket|sum)/.test(line)) continue;
    const space = line.lastIndexOf(" ");
    out.set(line.slice(0, space).replace(label, 'server="S"'), Number(line.slice(space + 1)));
  }
  return out;
}

/** What the rounds added to each series (the readiness probes before them left out). */
function delta(after: Map<string, number>, before: Map<string, number>): string[] {
  const out: string[] = [];
  for (const [series, value] of after) {
    const added = value - (before.get(series) ?? 0);
    if (added !== 0) out.push(`${series} +${added}`);
  }
  return out.sort();
}

/** Log lines without the trailing duration (a timing). */
function logOf(lines: readonly string[]): string[] {
  return lines.map((l) => l.replace(/ [0-9.e-]+s$/, " D"));
}

/** The decoded reply with SOA serials masked. */
function masked(bytes: Uint8Array): Message {
  const m = decodeMessage(bytes);
  for (const r of [...m.answer, ...m.authority]) {
    if (r.type === Type.SOA) (r.data as SOAData).serial = 0;
  }
  return m;
}

/** Sends `ask` to `d`; the reply and whether the fast path sent it. */
async function send(d: Dispatcher, ask: Ask, id: number): Promise<[Uint8Array, boolean]> {
  const q = encodeQuery(id, ask.name, ask.type, {
    rd: ask.rd ?? true,
    udpSize: ask.udpSize ?? (ask.dnssecOk ? 1232 : undefined),
    dnssecOk: ask.dnssecOk,
  });
  if (ask.cd) q[3] |= 0x10;
  const local: Endpoint = { address: "::", port: 0 };
  const answer = d.answer(q, ask.transport ?? "udp", ask.client ?? V4, local);
  const fast = answer instanceof Uint8Array;
  const bytes = await answer;
  assert.ok(bytes, `${ask.name}: no reply`);
  return [bytes, fast];
}

/** Every subset of FRONT, each cache-holding one once per cache line. */
function rows(): string[][] {
  const out: string[][] = [];
  for (let mask = 0; mask < 1 << FRONT.length; mask++) {
    const front = FRONT.filter((_, i) => mask & (1 << i));
    if (!front.includes("cache")) {
      out.push([...front]);
      continue;
    }
    for (const line of CACHES) out.push(front.map((p) => (p === "cache" ? line : p)));
  }
  return out;
}

/** Runs every row in front of `answerer` and returns the problems found. */
async function compareAll(
  answerer: string,
  zone: string,
  names: Parameters<typeof asks>[0],
  ready: (d: Dispatcher) => Promise<boolean>,
): Promise<string[]> {
  const problems: string[] = [];
  const metricsPort = await freePort();
  let port = 30_000 + Math.floor(Math.random() * 1000) * 20;
  const resources = new Resources();
  let previous: { release(): Promise<void> } | undefined;
  for (const front of rows()) {
    const body = front.map((p) => p === "prometheus" ? `prometheus 127.0.0.1:${metricsPort}` : p)
      .concat(answerer).join("\n");
    const title = `[${front.map((p) => p.split(" ")[0] + (p.includes("{") ? "+" : "")).join(" ")}]`;
    const cached = front.some((p) => p.startsWith("cache"));
    let now = 1_800_000_000_000;
    const clock = () => now;
    // One pool for every row: the next row's configurations take the shared
    // objects (etcd client, mirror) before the last row's scope lets go, as
    // a reload does, so etcd is read once.
    const scope = resources.scope();
    const fast = await side(body, zone, port++, resources, clock, true);
    const full = await side(body, zone, port++, resources, clock, false);
    await previous?.release();
    previous = scope;
    try {
      await waitFor(() => ready(full.dispatcher), { what: `${title} loaded` });
      await waitFor(() => ready(fast.dispatcher), { what: `${title} loaded` });
      fast.lines.length = 0;
      full.lines.length = 0;
      const beforeFast = metricsOf(fast.port), beforeFull = metricsOf(full.port);
      let hits = 0;
      let id = 1;
      for (const step of STEPS) {
        now += step;
        for (const ask of asks(names)) {
          id++;
          const [a, wasFast] = await send(fast.dispatcher, ask, id);
          const [b] = await send(full.dispatcher, ask, id);
          if (wasFast) hits++;
          // Background refreshes (prefetch, stale) settle before the next question.
          if (cached) await new Promise((r) => setTimeout(r, 0));
          const same = a.length === b.length && a.every((x, i) => x === b[i]);
          if (!same) {
            try {
              assert.deepEqual(masked(a), masked(b));
            } catch {
              problems.push(
                `${title} ${ask.name} ${ask.type} at +${now - 1_800_000_000_000} ms: ` +
                  `fast ${JSON.stringify(decodeMessage(a))} full ${
                    JSON.stringify(decodeMessage(b))
                  }`,
              );
            }
          }
        }
      }
      const metricsFast = delta(metricsOf(fast.port), beforeFast);
      const metricsFull = delta(metricsOf(full.port), beforeFull);
      if (JSON.stringify(metricsFast) !== JSON.stringify(metricsFull)) {
        const onlyFast = metricsFast.filter((l) => !metricsFull.includes(l));
        const onlyFull = metricsFull.filter((l) => !metricsFast.includes(l));
        problems.push(
          `${title} metrics: fast ${onlyFast.join(" | ")} full ${onlyFull.join(" | ")}`,
        );
      }
      if (JSON.stringify(logOf(fast.lines)) !== JSON.stringify(logOf(full.lines))) {
        problems.push(`${title} logs: fast ${fast.lines.length} lines, full ${full.lines.length}`);
      }
      // log runs in front of everything here, so it keeps every query on the
      // full path; otherwise an answer the chain marks must come back fast.
      const marks = answerer !== "whoami" || front.some((p) => p.startsWith("cache"));
      const expectHits = marks && !front.includes("log");
      if (expectHits !== hits > 0) {
        problems.push(
          `${title}: ${hits} fast-path answers, expected ${expectHits ? "some" : "none"}`,
        );
      }
      if (front.includes("prometheus") && metricsFast.length === 0) {
        problems.push(`${title}: prometheus counted nothing`);
      }
    } finally {
      for (const s of [fast, full]) {
        for (const hook of s.config.shutdown) await hook({ final: false });
      }
    }
  }
  await previous?.release();
  return problems;
}

Deno.test("fast path: whoami behind every combination answers, counts and logs as the full path", async () => {
  const problems = await compareAll(
    "whoami",
    ".",
    {
      hit: "a.example.",
      nodata: "b.example.",
      nx: "c.example.",
      txt: "d.example.",
      out: "e.example.",
    },
    async (d) => (await send(d, { name: "x.example.", type: Type.A }, 1))[0].length > 0,
  );
  assert.deepEqual(problems, []);
});

Deno.test("fast path: etcd behind every combination answers, counts and logs as the full path", async () => {
  const scope = await etcd.scope();
  const client = createClient({ endpoints: [scope.endpoint] }, ".");
  try {
    const key = (label: string) => `${scope.prefix}/skydns/test/skydns/${label}`;
    await Promise.all([
      ...Array.from(
        { length: 20 },
        (_, i) => client.put(key(`a${i}`)).value(serviceJSON({ host: `10.0.0.${i}` })),
      ),
      client.put(key("txt")).value(serviceJSON({ text: "hello" })),
    ]);
    const answerer =
      `etcd skydns.test {\n endpoint ${scope.endpoint}\n path ${scope.prefix}/skydns\n }`;
    const problems = await compareAll(
      answerer,
      ".",
      {
        hit: "a1.skydns.test.",
        nodata: "a2.skydns.test.",
        nx: "nx.skydns.test.",
        txt: "txt.skydns.test.",
        out: "example.org.",
      },
      async (d) => {
        const [bytes] = await send(d, { name: "a19.skydns.test.", type: Type.A }, 1);
        return decodeMessage(bytes).rcode === Rcode.Success;
      },
    );
    assert.deepEqual(problems, []);
  } finally {
    client.close();
  }
});
