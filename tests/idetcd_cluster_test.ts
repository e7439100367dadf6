/**
 * A whole idetcd cluster on one machine: real etcd, real `deno run main.ts`
 * processes, each node on its own loopback address (127.0.0.N) with the same
 * Corefile shape, as the seed describes (every node runs the same binary and
 * Corefile and resolves every other node).
 *
 * Nothing sleeps and hopes: every wait is a condition with a deadline.
 */

import assert from "node:assert/strict";
import { type EtcdAccess, type EtcdScope, sharedEtcd, startEtcd } from "./helpers/etcd.ts";
import {
  dig,
  queryTcp,
  queryUdp,
  type ServerProcess,
  startServer,
  writeCorefile,
} from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";
import { IN_PRIVATE_NETNS, privateNetns, rerunInPrivateNetns } from "./helpers/private_netns.ts";
import { Rcode, type SRVData, Type } from "../lib/dns/types.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const PATTERN = "worker{{.ID}}.tf.local.";
const CLAIMED = /^\[INFO\] plugin\/idetcd: claimed (worker(\d+)\.tf\.local\.) \(ID (\d+)\)$/gm;
const FULL_LINE =
  "idetcd: all 10 names of worker{{.ID}}.tf.local. are taken (limit 10); raise limit or free a node";

/**
 * The etcd of the tests that do not stop it, each under its own key prefix; the
 * outage test and the seed walk-through (verbatim, so the default prefix)
 * take their own.
 */
const shared = sharedEtcd();

/** An etcd the nodes use: a shared one's scope (its prefix), or one of the test's own (/skydns). */
type ClusterEtcd = EtcdAccess & Partial<Pick<EtcdScope, "prefix">>;

/** Options of one node's Corefile. */
interface NodeOptions {
  /** `lease` (default 2s). */
  lease?: string;
  /** `identity` (default node-N); null leaves it out. */
  identity?: string | null;
  /** `address` arguments (default 127.0.0.N). */
  address?: string;
  limit?: number;
}

/** One running node. */
interface Node {
  /** The node's loopback address is 127.0.0.n. */
  n: number;
  /** The address it binds and advertises. */
  host: string;
  conf: string;
  proc: ServerProcess;
  /** The claimed ID, from its log line. */
  id: number;
  /** The claimed name ("worker4.tf.local."). */
  name: string;
}

/** Every `claimed ...` line in a node's output: [name, id]. */
function claimedLines(text: string): { name: string; id: number }[] {
  return [...text.matchAll(CLAIMED)].map((m) => {
    assert.equal(m[2], m[3], `name and ID agree in ${m[0]}`);
    return { name: m[1], id: Number(m[3]) };
  });
}

/** The nodes of one test; disposing stops them all (before etcd, declared earlier, stops). */
class Cluster implements AsyncDisposable {
  readonly #procs: ServerProcess[] = [];
  readonly etcd: ClusterEtcd;
  /** The DNS port every node listens on (each on its own address). */
  readonly port: number;

  constructor(etcd: ClusterEtcd, port: number) {
    this.etcd = etcd;
    this.port = port;
  }

  static async create(etcd: ClusterEtcd): Promise<Cluster> {
    return new Cluster(etcd, await freePort());
  }

  /** Writes node N's Corefile. */
  corefile(n: number, options: NodeOptions = {}): Promise<string> {
    const host = `127.0.0.${n}`;
    const identity = options.identity === undefined ? `node-${n}` : options.identity;
    return writeCorefile(
      [
        `.:${this.port} {`,
        `    bind ${host}`,
        `    idetcd {`,
        `        endpoint ${this.etcd.endpoint}`,
        ...(this.etcd.prefix === undefined ? [] : [`        prefix ${this.etcd.prefix}`]),
        `        limit ${options.limit ?? 10}`,
        `        pattern ${PATTERN}`,
        `        address ${options.address ?? host}`,
        `        lease ${options.lease ?? "2s"}`,
        ...(identity === null ? [] : [`        identity ${identity}`]),
        `    }`,
        `    whoami`,
        `}`,
        ``,
      ].join("\n"),
    );
  }

  /** Starts a process on `conf` without waiting for anything; it is stopped on dispose. */
  async spawn(conf: string): Promise<ServerProcess> {
    const proc = await startServer(conf, { readyText: null });
    this.#procs.push(proc);
    return proc;
  }

  /** Starts node N (or restarts it on an existing Corefile) and waits for its claim. */
  async start(n: number, options: NodeOptions & { conf?: string } = {}): Promise<Node> {
    const conf = options.conf ?? await this.corefile(n, options);
    const proc = await this.spawn(conf);
    await proc.waitForOutput(/^idetcd-\d/m, 60_000);
    // Listeners open at once; under load the claim may land just after them.
    await proc.waitForOutput(/plugin\/idetcd: claimed worker/, 30_000);
    const claims = claimedLines(proc.output());
    assert.equal(claims.length, 1, `one claim line in:\n${proc.output()}`);
    return { n, host: `127.0.0.${n}`, conf, proc, ...claims[0] };
  }

  /** Starts several nodes at once. */
  startAll(ns: number[], options: NodeOptions = {}): Promise<Node[]> {
    return Promise.all(ns.map((n) => this.start(n, options)));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.#procs.map((p) => p[Symbol.asyncDispose]()));
  }
}

/**
 * What each thread of a process is doing, from /proc: "name state wchan"
 * per thread, so that a node that went silent shows where it is stuck.
 */
function threadStates(pid: number): string {
  try {
    return [...Deno.readDirSync(`/proc/${pid}/task`)].map(({ name: tid }) => {
      const read = (f: string) => {
        try {
          return Deno.readTextFileSync(`/proc/${pid}/task/${tid}/${f}`).trim();
        } catch {
          return "?";
        }
      };
      const state = read("stat").split(") ")[1]?.split(" ")[0] ?? "?";
      return `${read("comm")} ${state} ${read("wchan")} [${read("syscall").split(" ")[0]}]`;
    }).join("; ");
  } catch (err) {
    return `no /proc/${pid}: ${(err as Error).message}`;
  }
}

/** One query to a node: the rcode and the answer's data of `type`. */
async function ask(
  host: string,
  port: number,
  name: string,
  type: number = Type.A,
): Promise<{ rcode: number; data: unknown[] }> {
  const m = await queryUdp(host, port, name, type);
  return { rcode: m.rcode, data: m.answer.filter((r) => r.type === type).map((r) => r.data) };
}

/**
 * Every node answers every member's name with exactly its address, and
 * `_nodes` SRV lists every member in ID order. Returns a description of the
 * first mismatch, or "" when all agree.
 */
async function mismatch(
  cluster: Cluster,
  servers: Node[],
  members: Node[],
  options: { ownMayBeFenced?: boolean } = {},
): Promise<string> {
  const sorted = [...members].sort((a, b) => a.id - b.id);
  for (const server of servers) {
    const answers = await Promise.all(
      sorted.map((m) => ask(server.host, cluster.port, m.name, Type.A)),
    );
    // A node that stopped vouching for its own name answers it SERVFAIL and leaves it out of _nodes.
    const fenced = options.ownMayBeFenced &&
      answers[sorted.indexOf(server)]?.rcode === Rcode.ServerFailure;
    for (const [i, m] of sorted.entries()) {
      const got = answers[i];
      if (fenced && m === server) continue;
      if (got.rcode !== Rcode.Success || got.data.join() !== m.host) {
        return `${server.host} answers ${m.name} A with rcode ${got.rcode} [${got.data}], want ${m.host}`;
      }
    }
    // EDNS0: 10 SRV records and their glue do not fit the 512 bytes of plain DNS.
    const srv = await queryUdp(server.host, cluster.port, "_nodes.tf.local.", Type.SRV, {
      udpSize: 4096,
    });
    const targets = srv.answer.filter((r) => r.type === Type.SRV).map((r) =>
      (r.data as SRVData).target
    );
    const want = sorted.filter((m) => !(fenced && m === server)).map((m) => m.name);
    // The fence may fall between the two queries: then the list already leaves this node out.
    const fencedSince = options.ownMayBeFenced && !fenced &&
      targets.join() === sorted.filter((m) => m !== server).map((m) => m.name).join();
    if (targets.join() !== want.join() && !fencedSince) {
      return `${server.host} answers _nodes.tf.local. SRV with [${targets}], want [${want}]`;
    }
    const glue = new Map(
      srv.additional.filter((r) => r.type === Type.A).map((r) => [r.name, r.data]),
    );
    for (const m of sorted) {
      if ((fenced || fencedSince) && m === server) continue;
      if (glue.get(m.name) !== m.host) {
        return `${server.host}: _nodes SRV glue for ${m.name} is ${
          glue.get(m.name)
        }, want ${m.host}`;
      }
    }
  }
  return "";
}

/** Waits until every node agrees on `members` (watches deliver within milliseconds). */
async function waitForAgreement(
  cluster: Cluster,
  servers: Node[],
  members: Node[],
  timeoutMs = 15_000,
): Promise<void> {
  let last = "";
  try {
    await waitFor(async () => (last = await mismatch(cluster, servers, members)) === "", {
      timeoutMs,
      intervalMs: 50,
      what: "every node to resolve every member",
    });
  } catch (err) {
    throw new Error(`${(err as Error).message}; last mismatch: ${last}`);
  }
}

/** Waits until `name` is NXDOMAIN on every server; resolves with the time it was first seen so on all. */
async function waitForNxdomain(
  cluster: Cluster,
  servers: Node[],
  name: string,
  timeoutMs: number,
): Promise<number> {
  const gone = new Map<string, number>();
  await waitFor(async () => {
    await Promise.all(
      servers.filter((s) => !gone.has(s.host)).map(async (s) => {
        const got = await ask(s.host, cluster.port, name);
        if (got.rcode === Rcode.NameError) gone.set(s.host, performance.now());
      }),
    );
    return gone.size === servers.length;
  }, { timeoutMs, intervalMs: 5, what: `${name} to be NXDOMAIN on every other node` });
  return Math.max(...gone.values());
}

/** Runs `deno run -A main.ts -conf CONF SUBCOMMAND`. */
async function cli(conf: string, subcommand: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "-conf", conf, subcommand],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** `whoami` of a node: "ID NAME". */
async function whoami(node: Node): Promise<string> {
  const out = await cli(node.conf, "whoami");
  assert.equal(out.code, 0, `whoami of ${node.host} failed: ${out.stderr}`);
  return out.stdout.trim();
}

/** ID -> identity of every lock in etcd (read with etcdctl, independently of the product). */
async function holders(etcd: ClusterEtcd): Promise<Map<number, string>> {
  const prefix = etcd.prefix ?? "/skydns";
  const out = await etcd.ctl("get", `${prefix}/local/tf/`, "--prefix");
  const lines = out.split("\n");
  const result = new Map<number, string>();
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const m = lines[i].startsWith(`${prefix}/`)
      ? /^\/local\/tf\/worker(\d+)$/.exec(lines[i].slice(prefix.length))
      : null;
    if (!m) continue;
    const id = Number(m[1]);
    assert.ok(!result.has(id), `one lock for ID ${id}`);
    result.set(id, JSON.parse(lines[i + 1]).idetcd.identity);
  }
  return result;
}

const range = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

// ---------------------------------------------------------------------------

Deno.test("idetcd cluster: 10 nodes at once get IDs 1..10 once each, resolve each other; an 11th fails", async (t) => {
  const etcd = await shared.scope();
  await using cluster = await Cluster.create(etcd);
  const nodes = await cluster.startAll(range(11, 20));

  await t.step("IDs 1..10, each exactly once, as the log and etcd say", async () => {
    assert.deepEqual(nodes.map((n) => n.id).sort((a, b) => a - b), range(1, 10));
    for (const n of nodes) assert.equal(n.name, `worker${n.id}.tf.local.`);
    const stored = await holders(etcd);
    assert.deepEqual(
      new Map([...stored].sort(([a], [b]) => a - b)),
      new Map(nodes.map((n) => [n.id, `node-${n.n}`] as const).sort(([a], [b]) => a - b)),
    );
  });

  await t.step("every node resolves every node (A) and lists all 10 in _nodes SRV", async () => {
    await waitForAgreement(cluster, nodes, nodes);
    // Spot-check with dig, as a user would.
    const first = nodes.find((n) => n.id === 1)!;
    const last = nodes.find((n) => n.id === 10)!;
    assert.equal(
      await dig("+short", "@" + first.host, "-p", String(cluster.port), "worker10.tf.local", "A"),
      `${last.host}\n`,
    );
    const srv = await dig(
      "+short",
      "@" + last.host,
      "-p",
      String(cluster.port),
      "_nodes.tf.local",
      "SRV",
    );
    assert.equal(srv, range(1, 10).map((id) => `0 100 0 worker${id}.tf.local.\n`).join(""));
    // Without EDNS0 (512 bytes) the 10 SRV records still fit; the glue does not (TC is set,
    // as miekg/dns's Truncate does when any record is left out); TCP has it all.
    const targets = range(1, 10).map((id) => `worker${id}.tf.local.`);
    const plain = await queryUdp(first.host, cluster.port, "_nodes.tf.local.", Type.SRV);
    assert.deepEqual(plain.answer.map((r) => (r.data as SRVData).target), targets);
    const tcp = await queryTcp(first.host, cluster.port, "_nodes.tf.local.", Type.SRV);
    assert.equal(tcp.truncated, false);
    assert.deepEqual(tcp.answer.map((r) => (r.data as SRVData).target), targets);
    assert.deepEqual(
      tcp.additional.filter((r) => r.type === Type.A).map((r) => [r.name, r.data]),
      [...nodes].sort((a, b) => a.id - b.id).map((n) => [n.name, n.host]),
    );
    // _nodes A: every member's address.
    const all = await ask(last.host, cluster.port, "_nodes.tf.local.", Type.A);
    assert.deepEqual(
      [...all.data].sort(),
      nodes.map((n) => n.host).sort(),
    );
  });

  await t.step(
    "an 11th node over the limit fails with the clear error and exit code 1",
    async () => {
      const extra = await cluster.spawn(await cluster.corefile(21));
      const code = await extra.exited;
      assert.equal(code, 1, extra.output());
      // That one line and nothing else: no banner, no stack trace (the copy of etcd
      // loads in the background meanwhile and may log that it did).
      const lines = extra.output().split("\n").filter((l) => l && !l.startsWith("[INFO] "));
      assert.deepEqual(lines, [FULL_LINE]);
      assert.doesNotMatch(extra.output(), /^idetcd-\d/m, "no banner");
      assert.equal((await holders(etcd)).size, 10, "the 10 names are untouched");
      assert.equal((await ask(nodes[0].host, cluster.port, "worker11.tf.local.")).rcode, 3);
    },
  );
});

Deno.test("idetcd cluster: a SIGKILLed node loses its name when its lease ends; a new node takes the slot", async () => {
  const etcd = await shared.scope();
  await using cluster = await Cluster.create(etcd);
  const nodes = await cluster.startAll([31, 32, 33]);
  await waitForAgreement(cluster, nodes, nodes);
  const victim = nodes.find((n) => n.id === 2)!;
  const others = nodes.filter((n) => n !== victim);

  const killedAt = performance.now();
  victim.proc.kill("SIGKILL");
  assert.equal(await victim.proc.exited, 137);
  assert.doesNotMatch(victim.proc.output(), /released worker/, "no clean release on SIGKILL");
  // The 2 s lease ends at most 2 s after the last keepalive; etcd expires leases every 500 ms.
  const goneAt = await waitForNxdomain(cluster, others, victim.name, 10_000);
  console.log(`SIGKILL: ${victim.name} NXDOMAIN on the others after ${(goneAt - killedAt) | 0} ms`);
  assert.ok(!(await holders(etcd)).has(2));

  const newcomer = await cluster.start(34);
  assert.equal(newcomer.id, 2, "the freed slot is the lowest free one");
  await waitForAgreement(cluster, [...others, newcomer], [...others, newcomer]);
  assert.equal((await holders(etcd)).get(2), "node-34");
});

Deno.test("idetcd cluster: a SIGTERMed node frees its name at once, long before its lease could end", async () => {
  const etcd = await shared.scope();
  await using cluster = await Cluster.create(etcd);
  // A long lease: only the revoke at shutdown can free the name this fast.
  const nodes = await cluster.startAll([41, 42, 43], { lease: "60s" });
  await waitForAgreement(cluster, nodes, nodes);
  const leaving = nodes.find((n) => n.id === 2)!;
  const others = nodes.filter((n) => n !== leaving);

  const signalledAt = performance.now();
  leaving.proc.kill("SIGTERM");
  const goneAt = await waitForNxdomain(cluster, others, leaving.name, 30_000);
  const elapsed = goneAt - signalledAt;
  console.log(`SIGTERM: ${leaving.name} NXDOMAIN on the others after ${elapsed | 0} ms`);
  // Not a timing assertion: the 60 s lease cannot have ended yet, so only the release freed it.
  assert.ok(elapsed < 30_000, `freed after ${elapsed | 0} ms, before the 60 s lease could end`);
  assert.equal(await leaving.proc.exited, 0);
  assert.match(
    leaving.proc.output(),
    /\[INFO\] plugin\/idetcd: released worker2\.tf\.local\. \(ID 2\)/,
  );
  assert.ok(!(await holders(etcd)).has(2));
  await waitForAgreement(cluster, others, others);
});

Deno.test("idetcd cluster: a restarted node (same identity) gets its old ID back, after SIGTERM and after SIGKILL", async (t) => {
  const etcd = await shared.scope();
  await using cluster = await Cluster.create(etcd);
  // A lease long enough that the SIGKILLed node's lease is surely alive when it comes back.
  const nodes = await cluster.startAll([51, 52, 53], { lease: "30s" });
  await waitForAgreement(cluster, nodes, nodes);
  const byId = (id: number) => nodes.find((n) => n.id === id)!;

  await t.step("after SIGTERM, even when a lower ID is free", async () => {
    const three = byId(3);
    const one = byId(1);
    three.proc.kill("SIGTERM");
    assert.equal(await three.proc.exited, 0);
    one.proc.kill("SIGTERM");
    assert.equal(await one.proc.exited, 0);
    assert.deepEqual([...(await holders(etcd)).keys()], [2], "IDs 1 and 3 are free");

    const again = await cluster.start(three.n, { conf: three.conf });
    assert.equal(again.id, 3, `got ${again.name}:\n${again.proc.output()}`);
    assert.match(
      again.proc.output(),
      /worker3\.tf\.local\. \(ID 3\): the ID this node held before/,
    );
    nodes.splice(nodes.indexOf(three), 1, again);
    nodes.splice(nodes.indexOf(one), 1);
    await waitForAgreement(cluster, nodes, nodes);
  });

  await t.step("after SIGKILL, before its lease expired (the name never disappears)", async () => {
    const two = byId(2);
    const watcher = byId(3);
    // Watch worker2 on another node for the whole kill/restart.
    let watching = true;
    const seen: number[] = [];
    const poll = (async () => {
      while (watching) {
        seen.push((await ask(watcher.host, cluster.port, two.name)).rcode);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    try {
      two.proc.kill("SIGKILL");
      assert.equal(await two.proc.exited, 137);
      const again = await cluster.start(two.n, { conf: two.conf });
      assert.equal(again.id, 2, `got ${again.name}:\n${again.proc.output()}`);
      assert.match(
        again.proc.output(),
        /worker2\.tf\.local\. \(ID 2\): took it back from an earlier instance with the same identity/,
      );
      nodes.splice(nodes.indexOf(two), 1, again);
      await waitForAgreement(cluster, nodes, nodes);
    } finally {
      watching = false;
      await poll;
    }
    assert.ok(seen.length > 5, `polled ${seen.length} times`);
    assert.deepEqual(
      seen.filter((rcode) => rcode !== Rcode.Success),
      [],
      "worker2 kept resolving",
    );
    assert.deepEqual(
      new Map([...(await holders(etcd))].sort(([a], [b]) => a - b)),
      new Map([[2, `node-${two.n}`], [3, `node-${watcher.n}`]]),
    );
  });
});

Deno.test("idetcd cluster: a whole cluster restarted at once gets the same IDs; a SIGKILLed node back after expiry too", async () => {
  const etcd = await shared.scope();
  await using cluster = await Cluster.create(etcd);
  const first = await cluster.startAll(range(101, 106));
  await waitForAgreement(cluster, first, first);
  for (const node of first) node.proc.kill("SIGTERM");
  assert.deepEqual(await Promise.all(first.map((node) => node.proc.exited)), first.map(() => 0));
  assert.equal((await holders(etcd)).size, 0, "every name was released");

  // All at once, in the reverse order: each node asks for its own ID, so none is reshuffled.
  const second = await Promise.all(
    [...first].reverse().map((node) => cluster.start(node.n, { conf: node.conf })),
  );
  for (const node of second) {
    const before = first.find((f) => f.n === node.n)!;
    assert.equal(node.id, before.id, `${node.host} was ID ${before.id}, got ${node.id}`);
  }
  await waitForAgreement(cluster, second, second);

  // SIGKILL IDs 1 and 3 and let both leases expire; node 3 comes back after ID 1 is free: the
  // "last holder" record gives it ID 3 again, not the lowest free ID.
  const one = second.find((node) => node.id === 1)!;
  const three = second.find((node) => node.id === 3)!;
  one.proc.kill("SIGKILL");
  three.proc.kill("SIGKILL");
  await Promise.all([one.proc.exited, three.proc.exited]);
  const rest = second.filter((node) => node !== one && node !== three);
  await waitForNxdomain(cluster, rest, one.name, 10_000);
  await waitForNxdomain(cluster, rest, three.name, 10_000);
  const again = await cluster.start(three.n, { conf: three.conf });
  assert.equal(again.id, 3, `got ${again.name}:\n${again.proc.output()}`);
  assert.match(again.proc.output(), /worker3\.tf\.local\. \(ID 3\): the ID this node held before/);
  await waitForAgreement(cluster, [...rest, again], [...rest, again]);
});

Deno.test("idetcd cluster: etcd stopped under running nodes; names resolve from memory, IDs survive the restart", async () => {
  await using etcd = await startEtcd();
  await using cluster = await Cluster.create(etcd);
  const nodes = await cluster.startAll([61, 62, 63, 64]);
  await waitForAgreement(cluster, nodes, nodes);
  const marks = nodes.map((n) => n.proc.output().length);

  await etcd.stop();
  const stoppedAt = performance.now();
  // Longer than the 2 s lease: nodes stop vouching for their own names (SERVFAIL for
  // it on their own DNS) but keep answering the others from memory.
  let rounds = 0;
  while (performance.now() - stoppedAt < 3_500) {
    let found: string;
    const silentAt = performance.now();
    try {
      found = await mismatch(cluster, nodes, nodes, { ownMayBeFenced: true });
    } catch (err) {
      // A node gave no answer to three tries in 6 s. Once, on a loaded CI
      // machine, one did; it could not be reproduced. Ask the round once more
      // (a node that stays silent fails the test) and say how long it was.
      const at = (silentAt - stoppedAt).toFixed(0);
      const logs = nodes.map((n, i) =>
        `--- ${n.host} (${threadStates(n.proc.pid)}):\n${n.proc.output().slice(marks[i])}`
      );
      const detail = `${(err as Error).message} (${at} ms into the outage)\n${logs.join("\n")}`;
      try {
        found = await mismatch(cluster, nodes, nodes, { ownMayBeFenced: true });
      } catch (again) {
        throw new Error(`${detail}\nand again: ${(again as Error).message}`);
      }
      console.warn(
        `silent for ${(performance.now() - silentAt).toFixed(0)} ms, then answered: ${detail}`,
      );
    }
    assert.equal(found, "", "answers during the outage");
    rounds++;
  }
  for (const node of nodes) {
    assert.equal(
      (await ask(node.host, cluster.port, node.name)).rcode,
      Rcode.ServerFailure,
      `${node.host} does not vouch for its own name after the fence`,
    );
    assert.match(node.proc.output(), /stopped vouching for worker\d+\.tf\.local\./);
  }
  assert.ok(rounds >= 3, `checked ${rounds} times during the outage`);
  await etcd.start();

  // Each node confirms its own name again (or claims it again).
  for (const [i, node] of nodes.entries()) {
    await waitFor(
      () =>
        /is still held by this node|plugin\/idetcd: claimed worker/.test(
          node.proc.output().slice(marks[i]),
        ),
      {
        timeoutMs: 20_000,
        what: `${node.host} to confirm its name; got:\n${node.proc.output().slice(marks[i])}`,
      },
    );
  }
  for (const [i, node] of nodes.entries()) {
    const after = claimedLines(node.proc.output().slice(marks[i]));
    assert.ok(after.every((c) => c.id === node.id), `${node.host} re-claimed another ID`);
    assert.equal(await whoami(node), `${node.id} ${node.name}`);
  }
  const stored = await holders(etcd);
  assert.deepEqual(
    new Map([...stored].sort(([a], [b]) => a - b)),
    new Map(nodes.map((n) => [n.id, `node-${n.n}`] as const).sort(([a], [b]) => a - b)),
  );
  await waitForAgreement(cluster, nodes, nodes);

  // The nodes' copies of etcd follow changes again: a newcomer is seen by all.
  const newcomer = await cluster.start(65);
  assert.equal(newcomer.id, 5);
  await waitForAgreement(cluster, [...nodes, newcomer], [...nodes, newcomer], 30_000);
});

Deno.test("idetcd cluster: `whoami` and `tf-config` print this node's ID, name and TF_CONFIG", async () => {
  const etcd = await shared.scope();
  await using cluster = await Cluster.create(etcd);
  const nodes = await cluster.startAll([71, 72, 73], { lease: "60s" });
  await waitForAgreement(cluster, nodes, nodes);
  const workers = (ids: number[]) => ids.map((id) => `worker${id}.tf.local:2222`);

  for (const node of nodes) {
    assert.equal(await whoami(node), `${node.id} worker${node.id}.tf.local.`);
    const tf = await cli(node.conf, "tf-config");
    assert.equal(tf.code, 0, tf.stderr);
    assert.deepEqual(JSON.parse(tf.stdout), {
      cluster: { worker: workers([1, 2, 3]) },
      task: { type: "worker", index: node.id - 1 },
    });
  }

  // With a gap, the index is the position in the list, not ID - 1.
  const two = nodes.find((n) => n.id === 2)!;
  const three = nodes.find((n) => n.id === 3)!;
  two.proc.kill("SIGTERM");
  assert.equal(await two.proc.exited, 0);
  const tf = await cli(three.conf, "tf-config");
  assert.equal(tf.code, 0, tf.stderr);
  assert.deepEqual(JSON.parse(tf.stdout), {
    cluster: { worker: workers([1, 3]) },
    task: { type: "worker", index: 1 },
  });
  // The stopped node holds no name: one clear line, exit 1.
  const gone = await cli(two.conf, "whoami");
  assert.equal(gone.code, 1);
  assert.equal(
    gone.stderr.trim(),
    `idetcd: this node (identity node-${two.n}) holds no name of ${PATTERN} in etcd at ${etcd.endpoint}`,
  );
});

/** The walk-through's test name; the copy re-run inside a network namespace is picked by it. */
const SEED_TEST =
  "idetcd cluster: the seed walk-through verbatim: `dig +short worker4.tf.local @localhost` on port 53";

/** Whether this process can bind UDP and TCP port 53 on every address; the error when not. */
function port53Problem(): string | undefined {
  try {
    Deno.listenDatagram({ transport: "udp", hostname: "0.0.0.0", port: 53 }).close();
    Deno.listen({ hostname: "0.0.0.0", port: 53 }).close();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * Where the port-53 walk-through runs. The seed's `dig @localhost` names no
 * port, so a node must own port 53, which a normal user may not bind and
 * systemd-resolved often holds. A private network namespace has its own, free
 * port 53 (tests/helpers/private_netns.ts; etcd, the nodes and dig all run in
 * it), so that is the first choice; then this machine's port 53; where
 * neither can be had the test is ignored, with the reason printed.
 */
function seedPlace(): "here" | "netns" | { ignore: string } {
  if (IN_PRIVATE_NETNS) return "here";
  const netns = privateNetns();
  if ("unshare" in netns) return "netns";
  const bindProblem = port53Problem();
  if (bindProblem === undefined) return "here";
  return {
    ignore:
      `no private network namespace (${netns.reason}) and port 53 here cannot be bound (${bindProblem})`,
  };
}

const SEED_PLACE = seedPlace();
if (typeof SEED_PLACE === "object") {
  console.error(`seed walk-through on port 53 ignored: ${SEED_PLACE.ignore}`);
}

Deno.test({
  name: SEED_TEST,
  ignore: typeof SEED_PLACE === "object",
  async fn() {
    if (SEED_PLACE === "netns") await rerunInPrivateNetns(new URL(import.meta.url), SEED_TEST);
    else await seedWalkthrough();
  },
});

/** The seed's walk-through, on port 53 of whatever network this process is in. */
async function seedWalkthrough(): Promise<void> {
  const bindProblem = port53Problem();
  if (bindProblem !== undefined) {
    assert.fail(
      `port 53 is needed for the seed walk-through (dig @localhost without -p), and binding it failed: ${bindProblem}`,
    );
  }
  await using etcd = await startEtcd();
  await using cluster = await Cluster.create(etcd);

  // The seed's Corefile, word for word but for the etcd port.
  const seedConf = await writeCorefile(
    [
      ". {",
      "    idetcd {",
      `        endpoint http://localhost:${etcd.clientPort}`,
      "        limit 10",
      "        pattern worker{{.ID}}.tf.local.",
      "    }",
      "    whoami",
      "}",
      "",
    ].join("\n"),
  );
  const seed = await cluster.spawn(seedConf);
  try {
    await seed.waitForOutput(/^idetcd-\d/m, 60_000);
  } catch (err) {
    assert.fail(
      `the seed's Corefile must start on port 53 (port 53 is needed): ${(err as Error).message}`,
    );
  }
  assert.match(seed.output(), /^\.:53$/m);
  assert.deepEqual(claimedLines(seed.output()), [{ name: "worker1.tf.local.", id: 1 }]);

  // Three more nodes (on their own addresses and a spare port), each with an IPv6 address too.
  const extras = await Promise.all(
    [81, 82, 83].map((n) =>
      cluster.start(n, { identity: null, address: `127.0.0.${n} 2001:db8::${n}` })
    ),
  );
  assert.deepEqual(extras.map((n) => n.id).sort(), [2, 3, 4]);
  const four = extras.find((n) => n.id === 4)!;

  // As the seed says, on the node (port 53 at localhost):
  const digLocal = (...args: string[]) =>
    waitFor(async () => {
      const out = await dig("+short", ...args, "@localhost");
      return out === "" ? undefined : out;
    }, { timeoutMs: 10_000, what: `dig +short ${args.join(" ")} @localhost` });
  assert.equal(await digLocal("worker4.tf.local"), `127.0.0.${four.n}\n`);
  assert.equal(await digLocal("worker4.tf.local", "AAAA"), `2001:db8::${four.n}\n`);
  for (const e of extras) {
    assert.equal(await digLocal(`worker${e.id}.tf.local`), `${e.host}\n`);
  }

  // The seed node advertises its own interface address (no `address` given): one of this
  // machine's non-loopback, non-link-local addresses; every other node resolves it too.
  const own = new Set(
    Deno.networkInterfaces()
      .filter((i) => !/^(127\.|169\.254\.|::1$|fe80:)/i.test(i.address))
      .map((i) => i.address),
  );
  const seedA = (await digLocal("worker1.tf.local")).trim().split("\n");
  assert.equal(seedA.length, 1);
  assert.ok(own.has(seedA[0]), `worker1 is ${seedA[0]}, one of ${[...own]}`);
  // AAAA: that interface's global IPv6 address, else its unique-local one, else none.
  const iface = Deno.networkInterfaces().find((i) => i.address === seedA[0])!.name;
  const v6 = Deno.networkInterfaces()
    .filter((i) => i.name === iface && i.family === "IPv6" && !/^fe[89ab]/i.test(i.address))
    .map((i) => i.address);
  const wantV6 = v6.find((a) => !/^f[cd]/i.test(a)) ?? v6[0];
  assert.equal(
    await dig("+short", "worker1.tf.local", "AAAA", "@localhost"),
    wantV6 ? `${wantV6}\n` : "",
    `the IPv6 address of ${iface}`,
  );
  for (const e of extras) {
    assert.deepEqual(
      (await ask(e.host, cluster.port, "worker1.tf.local.")).data,
      seedA,
      `${e.host} resolves the seed node`,
    );
    assert.deepEqual(
      (await ask(e.host, cluster.port, "worker4.tf.local.", Type.AAAA)).data,
      [`2001:db8::${four.n}`],
    );
  }
}

Deno.test("idetcd cluster: from its first answer on, a node resolves its own name", async () => {
  const etcd = await shared.scope();
  await using cluster = await Cluster.create(etcd);
  // Started together, each node is asked for its own name the moment it prints its banner.
  const nodes = await cluster.startAll([51, 52, 53, 54, 55, 56]);
  const own = await Promise.all(nodes.map((n) => ask(n.host, cluster.port, n.name)));
  for (const [i, answer] of own.entries()) {
    assert.equal(answer.rcode, Rcode.Success, `${nodes[i].name} on its own node`);
    assert.deepEqual(answer.data, [nodes[i].host]);
  }
});
