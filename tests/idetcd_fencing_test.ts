/**
 * One holder per name in the world: fencing by the local clock, loss seen
 * everywhere at once, and answers that survive etcd pausing. Real etcd, real
 * `main.ts` processes; the partition puts nodes in network namespaces and
 * cuts only their etcd traffic with iptables.
 */

import assert from "node:assert/strict";
import { AlarmAction, AlarmType, Etcd3 } from "etcd3";
import { Rcode, Type } from "../lib/dns/types.ts";
import { createClient } from "../lib/etcd/client.ts";
import { startEtcd } from "./helpers/etcd.ts";
import { createTestNetwork, needsNetns, startEtcdOn, type TestHost } from "./helpers/netns.ts";
import { queryUdp, type ServerProcess, startServer, writeCorefile } from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const ZONE = "tf.local.";

/** What one sample saw a node present itself as, or undefined. */
type Presented = string | undefined;

/** One observation: when it was taken (ms, performance.now()) and what it showed. */
interface Sample {
  node: string;
  via: "dns" | "file" | "ready" | "whoami";
  start: number;
  end: number;
  name: Presented;
}

/** Asks `host`'s own DNS for `name`: presenting when it answers with `host`'s own address. */
async function dnsPresents(host: string, port: number, name: string): Promise<Presented> {
  try {
    // One try: a sample's interval must be that of the query its answer
    // answers (a retry's answer, on a node stalled by a loaded machine,
    // would stretch the interval back to the first try and fake an overlap).
    const reply = await queryUdp(host, port, name, Type.A, { tries: 1, timeoutMs: 1_000 });
    return reply.answer.some((rr) => rr.type === Type.A && rr.data === host) ? name : undefined;
  } catch {
    return undefined;
  }
}

/** The name a state file says is held, if any. */
async function filePresents(path: string): Promise<Presented> {
  try {
    const data = JSON.parse(await Deno.readTextFile(path));
    return data.held === true ? data.name : undefined;
  } catch {
    return undefined;
  }
}

/** 200 from /ready means the node vouches for its name. */
async function readyPresents(url: string, name: string): Promise<Presented> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
    await res.body?.cancel();
    return res.status === 200 ? name : undefined;
  } catch {
    return undefined;
  }
}

/** Samples every 100 ms until stopped; whoami runs back to back (it is a process start). */
class Checker {
  readonly samples: Sample[] = [];
  #running = true;
  #loops: Promise<void>[] = [];

  sample(node: string, via: Sample["via"], probe: () => Promise<Presented>, everyMs = 100): void {
    this.#loops.push((async () => {
      while (this.#running) {
        const start = performance.now();
        const name = await probe();
        const end = performance.now();
        this.samples.push({ node, via, start, end, name });
        const wait = everyMs - (end - start);
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      }
    })());
  }

  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }

  /** Pairs of samples of different nodes that present the same name at overlapping times. */
  overlaps(): [Sample, Sample][] {
    const present = this.samples.filter((s) => s.name !== undefined);
    const found: [Sample, Sample][] = [];
    for (const a of present) {
      for (const b of present) {
        if (a.node >= b.node || a.name !== b.name) continue;
        if (a.start <= b.end && b.start <= a.end) found.push([a, b]);
      }
    }
    return found;
  }

  /** The last time `node` was seen presenting `name` before `before`, by any probe. */
  lastPresent(node: string, name: string, before = Infinity): number | undefined {
    const times = this.samples.filter((s) => s.node === node && s.name === name && s.end < before)
      .map((s) => s.end);
    return times.length ? Math.max(...times) : undefined;
  }

  /** The first time `node` was seen presenting `name` by any probe. */
  firstPresent(node: string, name: string): number | undefined {
    const times = this.samples.filter((s) => s.node === node && s.name === name).map((s) =>
      s.start
    );
    return times.length ? Math.min(...times) : undefined;
  }
}

/** A node of the partition test, running inside its namespace. */
interface NsNode {
  label: string;
  host: TestHost;
  conf: string;
  file: string;
  proc: Deno.ChildProcess;
  output: () => string;
}

async function startNsNode(
  host: TestHost,
  label: string,
  etcdEndpoint: string,
  port: number,
): Promise<NsNode> {
  const dir = await Deno.makeTempDir({ prefix: "idetcd-fence-" });
  const file = `${dir}/claim.json`;
  const conf = `${dir}/Corefile`;
  await Deno.writeTextFile(
    conf,
    [
      `.:${port} {`,
      `    bind ${host.address}`,
      `    idetcd {`,
      `        endpoint ${etcdEndpoint}`,
      `        limit 1`,
      `        pattern worker{{.ID}}.${ZONE}`,
      `        address ${host.address}`,
      `        lease 4s`,
      `        identity ${label}`,
      `        file ${file}`,
      `        wait`,
      `    }`,
      `    ready ${host.address}:8181 {`,
      `        monitor continuously`,
      `    }`,
      `    whoami`,
      `}`,
      ``,
    ].join("\n"),
  );
  const proc = host.deno(["run", "-A", MAIN, "-conf", conf], {
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
  let text = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  pump(proc.stdout);
  pump(proc.stderr);
  return { label, host, conf, file, proc, output: () => text };
}

/** `idetcd whoami` run inside the node's namespace: presenting when it prints the name. */
async function whoamiPresents(node: NsNode): Promise<Presented> {
  const out = await node.host.output(Deno.execPath(), [
    "run",
    "-A",
    MAIN,
    "-conf",
    node.conf,
    "whoami",
  ], {
    env: { NO_COLOR: "1" },
  });
  const line = new TextDecoder().decode(out.stdout).trim();
  return out.success ? line.split(" ")[1] : undefined;
}

Deno.test(needsNetns({
  name:
    "fencing: a node cut off from etcd stops presenting its name before etcd ends its lease; no instant with two holders",
  async fn() {
    await using net = await createTestNetwork({ hosts: 2 });
    await using etcd = await startEtcdOn(net.etcdAddress);
    const port = await freePort();
    const [hostA, hostB] = net.hosts;
    const name = `worker1.${ZONE}`;
    const a = await startNsNode(hostA, "node-a", etcd.endpoint, port);
    const nodes = [a];
    const checker = new Checker();
    const client = new Etcd3({ hosts: etcd.endpoint.replace("http://", "") });
    try {
      await waitFor(async () => (await filePresents(a.file)) === name, {
        timeoutMs: 30_000,
        what: "node A's claim",
      });
      const b = await startNsNode(hostB, "node-b", etcd.endpoint, port);
      nodes.push(b);
      await waitFor(() => /all 1 names .* are taken; waiting/.test(b.output()), {
        timeoutMs: 30_000,
        what: `node B waiting:\n${b.output()}`,
      });
      for (const n of nodes) {
        checker.sample(n.label, "dns", () => dnsPresents(n.host.address, port, name));
        checker.sample(n.label, "file", () => filePresents(n.file));
        checker.sample(
          n.label,
          "ready",
          () => readyPresents(`http://${n.host.address}:8181/ready`, name),
        );
        checker.sample(n.label, "whoami", () => whoamiPresents(n), 0);
      }
      // Every probe of A presents the name before the cut.
      await waitFor(
        () =>
          ["dns", "file", "ready", "whoami"].every((via) =>
            checker.samples.some((s) => s.node === "node-a" && s.via === via && s.name === name)
          ),
        { timeoutMs: 20_000, what: "A presenting through every probe" },
      );

      // etcd ends A's lease: the test sees the lock's deletion through its own watch.
      let expiredAt: number | undefined;
      const watcher = await client.watch().key(`/skydns/local/tf/worker1`).create();
      watcher.on("delete", () => (expiredAt ??= performance.now()));

      const cutAt = performance.now();
      await hostA.cutFrom(net.etcdAddress);
      await waitFor(() => checker.firstPresent("node-b", name) !== undefined, {
        timeoutMs: 30_000,
        what: `B's claim after the cut:\n${b.output()}`,
      });
      await waitFor(() => expiredAt !== undefined, { timeoutMs: 5_000, what: "the lease's end" });
      const aOff = checker.lastPresent("node-a", name, Infinity)!;
      for (const via of ["dns", "file", "ready", "whoami"] as const) {
        const last = checker.samples.filter((s) =>
          s.node === "node-a" && s.via === via && s.name === name
        ).map((s) => s.end);
        console.log(
          `partition: A's ${via} last presented ${
            (Math.max(...last) - cutAt) | 0
          } ms after the cut`,
        );
      }
      const bOn = checker.firstPresent("node-b", name)!;
      console.log(
        `partition: A last presented ${
          (aOff - cutAt) | 0
        } ms after the cut, etcd ended its lease ` +
          `after ${(expiredAt! - cutAt) | 0} ms, B first presented after ${(bOn - cutAt) | 0} ms`,
      );
      assert.ok(aOff < expiredAt!, "A's loss is visible before etcd's lease end");
      assert.ok(aOff < bOn, "A stops before B starts");
      assert.deepEqual(checker.overlaps(), [], "no instant where both present the name");

      // A keeps not presenting for as long as the partition lasts.
      const partitionSampled = checker.samples.length;
      await waitFor(() => checker.samples.length > partitionSampled + 40, { what: "more samples" });
      assert.equal(
        checker.lastPresent("node-a", name),
        aOff,
        "A never presents again while cut off",
      );
      assert.match(a.output(), /stopped vouching for worker1\.tf\.local\. \(ID 1\)/);

      // After the heal A finds the name taken and says so within about 2 s.
      const healedAt = performance.now();
      await hostA.heal();
      await waitFor(() => /all 1 names of .* are taken; this node has no name/.test(a.output()), {
        timeoutMs: 5_000,
        what: `A reporting "full" after the heal:\n${a.output()}`,
      });
      console.log(`heal: A reported the name taken after ${(performance.now() - healedAt) | 0} ms`);
      const file = JSON.parse(await Deno.readTextFile(a.file));
      assert.equal(file.held, false);
      assert.equal(file.lastId, 1);
      assert.equal(file.name, undefined, "the file names no held name");
      await checker.stop();
      assert.deepEqual(checker.overlaps(), [], "no overlap after the heal either");
      assert.equal(checker.lastPresent("node-a", name), aOff);
      await watcher.cancel();
    } finally {
      await checker.stop();
      client.close();
      for (const n of nodes) {
        try {
          n.proc.kill("SIGTERM");
        } catch {
          // gone
        }
        await n.proc.status;
      }
    }
  },
}));

/** SkyDNS-style cluster of `count` nodes on 127.0.0.N sharing one port. */
async function startLoopbackNodes(
  endpoint: string,
  port: number,
  count: number,
  first: number,
): Promise<{ host: string; proc: ServerProcess }[]> {
  return await Promise.all(Array.from({ length: count }, async (_, i) => {
    const host = `127.0.0.${first + i}`;
    const conf = await writeCorefile(
      [
        `.:${port} {`,
        `    bind ${host}`,
        `    idetcd {`,
        `        endpoint ${endpoint}`,
        `        limit 10`,
        `        pattern worker{{.ID}}.${ZONE}`,
        `        address ${host}`,
        `        lease 2s`,
        `        identity node-${first + i}`,
        `    }`,
        `}`,
        ``,
      ].join("\n"),
    );
    const proc = await startServer(conf, { timeoutMs: 60_000 });
    await proc.waitForOutput(/claimed worker\d+\.tf\.local\./, 30_000);
    return { host, proc };
  }));
}

function claimedName(output: string): string {
  return /claimed (worker\d+\.tf\.local\.)/.exec(output)![1];
}

Deno.test("fencing: etcd paused longer than the leases; live names never answer NXDOMAIN, same IDs after", async () => {
  await using etcd = await startEtcd();
  const port = await freePort();
  const nodes = await startLoopbackNodes(etcd.endpoint, port, 3, 81);
  try {
    const names = nodes.map((n) => claimedName(n.proc.output()));
    // Every node answers every name before the pause.
    await waitFor(async () => {
      for (const n of nodes) {
        for (const name of names) {
          if ((await queryUdp(n.host, port, name, Type.A)).rcode !== Rcode.Success) return false;
        }
      }
      return true;
    }, { timeoutMs: 10_000, what: "every node answering every name" });

    const nxdomain: string[] = [];
    let polls = 0;
    let running = true;
    const poller = (async () => {
      while (running) {
        for (const n of nodes) {
          for (const name of names) {
            const reply = await queryUdp(n.host, port, name, Type.A).catch(() => undefined);
            polls++;
            if (reply?.rcode === Rcode.NameError) nxdomain.push(`${name} at ${n.host}`);
          }
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    const stop = new Deno.Command("pkill", { args: ["-STOP", "-f", `data-dir=${etcd.dataDir}`] });
    assert.ok((await stop.output()).success, "etcd paused");
    // Longer than the 2 s leases: etcd ends them all when it resumes.
    await waitFor(() => nodes.every((n) => /stopped vouching/.test(n.proc.output())), {
      timeoutMs: 10_000,
      what: "every node fencing itself",
    });
    const pausedUntil = performance.now() + 3_000;
    await waitFor(() => performance.now() > pausedUntil, { timeoutMs: 5_000, intervalMs: 100 });
    const cont = new Deno.Command("pkill", { args: ["-CONT", "-f", `data-dir=${etcd.dataDir}`] });
    assert.ok((await cont.output()).success, "etcd resumed");

    // Every node holds its name again (the same one) and answers every name.
    await waitFor(
      () =>
        nodes.every((n) =>
          (n.proc.output().match(/claimed worker|is still held/g) ?? []).length >= 2
        ),
      { timeoutMs: 15_000, what: `re-claims:\n${nodes.map((n) => n.proc.output()).join("\n")}` },
    );
    const settled = polls + 30;
    await waitFor(() => polls > settled, { timeoutMs: 10_000, what: "polls after the re-claims" });
    running = false;
    await poller;
    for (const [i, n] of nodes.entries()) {
      const claims = [...n.proc.output().matchAll(/claimed (worker\d+\.tf\.local\.)/g)].map((m) =>
        m[1]
      );
      assert.ok(claims.every((c) => c === names[i]), `node ${n.host} kept ${names[i]}: ${claims}`);
    }
    console.log(`pause: ${polls} polls, ${nxdomain.length} NXDOMAIN`);
    assert.deepEqual(nxdomain, [], "no live name answered NXDOMAIN");
  } finally {
    await Promise.all(nodes.map((n) => n.proc[Symbol.asyncDispose]()));
  }
});

Deno.test("fencing: a holder restarted while etcd is out of space (NOSPACE) keeps its name and keeps serving", async () => {
  await using etcd = await startEtcd();
  const port = await freePort();
  const host = "127.0.0.91";
  const conf = await writeCorefile(
    [
      `.:${port} {`,
      `    bind ${host}`,
      `    idetcd {`,
      `        endpoint ${etcd.endpoint}`,
      `        pattern worker{{.ID}}.${ZONE}`,
      `        address ${host}`,
      `        lease 20s`,
      `        identity node-91`,
      `    }`,
      `}`,
      ``,
    ].join("\n"),
  );
  const client = createClient({ endpoints: [etcd.endpoint] }, ".");
  try {
    const first = await startServer(conf);
    await first.waitForOutput("claimed worker1.tf.local. (ID 1)");
    const memberID = (await client.maintenance.status()).header.member_id;
    await client.maintenance.alarm({
      action: AlarmAction.Activate,
      memberID,
      alarm: AlarmType.Nospace,
    });
    await assert.rejects(client.put("/probe").value("x").exec(), /space exceeded/);

    await first[Symbol.asyncDispose]();
    assert.match(first.output(), /etcd refuses writes .*leaving lease \d+ to expire/);
    const second = await startServer(conf);
    try {
      await second.waitForOutput("claimed worker1.tf.local. (ID 1)");
      assert.match(second.output(), /kept from an earlier instance with the same identity/);
      const reply = await queryUdp(host, port, `worker1.${ZONE}`, Type.A);
      assert.equal(reply.rcode, Rcode.Success);
      assert.deepEqual(reply.answer.map((rr) => rr.data), [host]);
      // The adopted lease is kept alive: the name is still there after more than its TTL's third.
      const kv = await client.get("/skydns/local/tf/worker1").exec();
      assert.equal(kv.kvs.length, 1);
    } finally {
      await client.maintenance.alarm({
        action: AlarmAction.Deactivate,
        memberID,
        alarm: AlarmType.Nospace,
      });
      await second[Symbol.asyncDispose]();
    }
  } finally {
    client.close();
  }
});

Deno.test("fencing: with etcd down at boot DNS is served at once; the zone answers SERVFAIL, then real answers", async () => {
  const etcdPort = await freePort();
  const port = await freePort();
  const host = "127.0.0.92";
  const conf = await writeCorefile(
    [
      `tf.local.:${port} {`,
      `    bind ${host}`,
      `    idetcd {`,
      `        endpoint http://127.0.0.1:${etcdPort}`,
      `        pattern worker{{.ID}}.${ZONE}`,
      `        address ${host}`,
      `        lease 4s`,
      `        wait`,
      `    }`,
      `}`,
      `.:${port} {`,
      `    bind ${host}`,
      `    whoami`,
      `}`,
      ``,
    ].join("\n"),
  );
  const spawnedAt = performance.now();
  await using proc = await startServer(conf, { readyText: null });
  // The other zone answers as soon as the process runs, although etcd is not there.
  const whoami = await waitFor(
    () => queryUdp(host, port, "example.org.", Type.A).catch(() => undefined),
    { timeoutMs: 15_000, what: "the whoami zone" },
  );
  const answeredAfter = performance.now() - spawnedAt;
  assert.equal(whoami.rcode, Rcode.Success);
  await proc.waitForOutput(/^idetcd-\d/m, 1_000);
  const banner = proc.output();
  console.log(`etcd down at boot: the whoami zone answered ${answeredAfter | 0} ms after spawn`);
  assert.doesNotMatch(banner, /claimed worker/);
  assert.equal((await queryUdp(host, port, `worker1.${ZONE}`, Type.A)).rcode, Rcode.ServerFailure);

  await using etcd = await startEtcd({ clientPort: etcdPort });
  await proc.waitForOutput("claimed worker1.tf.local. (ID 1)", 20_000);
  const reply = await waitFor(async () => {
    const r = await queryUdp(host, port, `worker1.${ZONE}`, Type.A);
    return r.rcode === Rcode.Success ? r : undefined;
  }, { timeoutMs: 10_000, what: "the claimed name answered" });
  assert.deepEqual(reply.answer.map((rr) => rr.data), [host]);
  assert.ok(etcd.endpoint.endsWith(`:${etcdPort}`));
});
