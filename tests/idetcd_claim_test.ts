/**
 * The idetcd claim against a real etcd: races, limits, expiry, release,
 * sticky identity, etcd restarts, and interference with the lock key.
 */

import assert from "node:assert/strict";
import type { Etcd3 } from "etcd3";
import { createClient } from "../lib/etcd/client.ts";
import { createLogger, type Level, type Logger } from "../lib/log.ts";
import { Claimer, ClaimError, type ClaimOptions } from "../lib/plugins/idetcd/claim.ts";
import { parsePattern } from "../lib/plugins/idetcd/pattern.ts";
import { ClusterView, namePath } from "../lib/plugins/idetcd/records.ts";
import type { KeyValue } from "../lib/etcd/types.ts";
import {
  Etcd3Kv,
  type EtcdKv,
  type GrantedLease,
  type TxnRequest,
  type TxnResult,
} from "../lib/etcd/kv.ts";
import { type EtcdAccess, type EtcdScope, sharedEtcd, startEtcd } from "./helpers/etcd.ts";
import { Mirror, type ZoneCopy } from "../lib/etcd/mirror.ts";
import { ZoneView } from "../lib/plugins/idetcd/zone_view.ts";
import { lookupSync } from "../lib/plugins/etcd/lookup.ts";
import { Class, Rcode, Type } from "../lib/dns/types.ts";
import { parseCorefile } from "../lib/corefile/parser.ts";
import { Resources } from "../lib/server/resources.ts";
import type { Reply, Request, StartupHook } from "../lib/server/plugin.ts";
import { configView, NO_SERVER } from "../lib/plugins/health/testing.ts";
import { idetcdPlugin, parseIdetcd, tfConfig, whoami } from "../lib/plugins/idetcd/mod.ts";
import { waitFor } from "./helpers/wait.ts";
import { runStorm } from "../bench/lib/claimers.ts";

const PATTERN = "worker{{.ID}}.tf.local.";

/**
 * The etcd of the tests that neither stop it nor count its leases, each under
 * its own key prefix; the others take an etcd of their own (prefix /skydns).
 */
const shared = sharedEtcd();

/** A shared etcd's scope, or an etcd of the test's own (keys under /skydns). */
type ClaimEtcd = EtcdAccess & Partial<Pick<EtcdScope, "prefix">>;

/** The key prefix a test's claims use. */
function prefixOf(etcd: ClaimEtcd): string {
  return etcd.prefix ?? "/skydns";
}

/** Log lines of one test, for assertions and for the failure message. */
class Lines {
  readonly lines: string[] = [];
  readonly log: Logger = createLogger(
    "plugin/idetcd",
    (_level: Level, line: string) => this.lines.push(line),
  );
  has(fragment: string): boolean {
    return this.lines.some((l) => l.includes(fragment));
  }
}

/** A claimer with its own client, closed together. */
interface Node {
  claimer: Claimer;
  client: Etcd3;
  /** Releases (revoking unless told otherwise) and closes the client. */
  stop(options?: { revoke?: boolean }): Promise<void>;
}

function node(
  etcd: ClaimEtcd,
  identity: string,
  overrides: Partial<ClaimOptions> = {},
  log: Logger = new Lines().log,
): Node {
  const client = createClient({ endpoints: [etcd.endpoint] }, ".");
  const n = Number(/\d+$/.exec(identity)?.[0] ?? 1);
  const claimer = new Claimer(client, {
    pattern: parsePattern(PATTERN),
    limit: 10,
    prefix: prefixOf(etcd),
    addresses: [`10.0.${Math.floor(n / 250)}.${(n % 250) + 1}`],
    identity,
    leaseSeconds: 2,
    connectTimeoutSeconds: 5,
    endpoints: etcd.endpoint,
    ...overrides,
  }, log);
  let stopped = false;
  return {
    claimer,
    client,
    async stop(options) {
      if (stopped) return;
      stopped = true;
      await claimer.release(options);
      client.close();
    },
  };
}

/** The zone's keys as etcdctl sees them (without the lease-less "last holder" records). */
async function zoneKeys(etcd: ClaimEtcd): Promise<KeyValue[]> {
  const out = await etcd.ctl("get", `${prefixOf(etcd)}/local/tf/`, "--prefix", "-w", "json");
  // Lease IDs are 64-bit: keep them as strings.
  const parsed = JSON.parse(out.replace(/"lease":(\d+)/g, '"lease":"$1"')) as {
    kvs?: {
      key: string;
      value: string;
      lease?: number | string;
      create_revision: number;
      mod_revision: number;
    }[];
  };
  const b64 = (s: string) =>
    new TextDecoder().decode(Uint8Array.from(atob(s), (c) => c.charCodeAt(0)));
  return (parsed.kvs ?? []).filter((kv) => !b64(kv.key).includes("/_idetcd/")).map((kv) => ({
    key: b64(kv.key),
    value: b64(kv.value),
    lease: String(kv.lease ?? 0),
    createRevision: kv.create_revision,
    modRevision: kv.mod_revision,
  }));
}

/** ID -> identity of every idetcd lock in etcd. */
async function holders(etcd: ClaimEtcd): Promise<Map<number, string>> {
  const view = ClusterView.fromKeys(
    await zoneKeys(etcd),
    namePath(prefixOf(etcd), "tf.local."),
    parsePattern(PATTERN),
  );
  return new Map(view.members.map((m) => [m.id, m.identity]));
}

Deno.test("idetcd claim: 100 claimers at once get IDs 1..100, no duplicates", async () => {
  const etcd = await shared.scope();
  const nodes = Array.from(
    { length: 100 },
    (_, i) => node(etcd, `storm-${i + 1}`, { limit: 100, leaseSeconds: 10 }),
  );
  try {
    const started = performance.now();
    const claims = await Promise.all(nodes.map((n) => n.claimer.claim()));
    const elapsed = performance.now() - started;
    const ids = claims.map((c) => c.id).sort((a, b) => a - b);
    assert.deepEqual(ids, Array.from({ length: 100 }, (_, i) => i + 1));
    const stored = await holders(etcd);
    assert.equal(stored.size, 100);
    for (const [i, c] of claims.entries()) assert.equal(stored.get(c.id), `storm-${i + 1}`);
    const requests = nodes.map((n) => n.claimer.stats.requests);
    const total = requests.reduce((a, b) => a + b, 0);
    console.log(
      `storm: 100 claims in ${elapsed.toFixed(0)} ms; etcd requests per claim: mean ${
        (total / 100).toFixed(1)
      }, max ${Math.max(...requests)}; lost races ${
        nodes.reduce((a, n) => a + n.claimer.stats.lostRaces, 0)
      }`,
    );
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});

Deno.test("idetcd claim: over the limit fails with a clear error", async () => {
  const etcd = await shared.scope();
  const nodes = Array.from({ length: 3 }, (_, i) => node(etcd, `full-${i + 1}`, { limit: 3 }));
  const extra = node(etcd, "full-4", { limit: 3 });
  try {
    await Promise.all(nodes.map((n) => n.claimer.claim()));
    await assert.rejects(
      extra.claimer.claim(),
      (err: Error) => {
        assert.ok(err instanceof ClaimError);
        assert.equal(
          err.message,
          "idetcd: all 3 names of worker{{.ID}}.tf.local. are taken (limit 3); raise limit or free a node",
        );
        return true;
      },
    );
    assert.equal((await holders(etcd)).size, 3);
  } finally {
    await extra.stop();
    await Promise.all(nodes.map((n) => n.stop()));
  }
});

Deno.test("idetcd claim: a killed claimer's name expires with its lease, then is claimed again", async () => {
  const etcd = await shared.scope();
  const a = node(etcd, "kill-a");
  const b = node(etcd, "kill-b");
  const c = node(etcd, "kill-c");
  try {
    assert.equal((await a.claimer.claim()).id, 1);
    assert.equal((await b.claimer.claim()).id, 2);
    // SIGKILL: no revoke, no more keepalives.
    await a.stop({ revoke: false });
    assert.equal((await holders(etcd)).get(1), "kill-a", "the name outlives the process");
    const expiredAt = await waitFor(
      async () => !(await holders(etcd)).has(1) && performance.now(),
      {
        timeoutMs: 8_000,
        what: "ID 1 to expire with its 2 s lease",
      },
    );
    assert.ok(expiredAt);
    assert.equal((await c.claimer.claim()).id, 1, "the freed slot is the lowest free one");
    assert.equal((await holders(etcd)).get(1), "kill-c");
  } finally {
    await Promise.all([a.stop(), b.stop(), c.stop()]);
  }
});

Deno.test("idetcd claim: release frees the name at once", async () => {
  const etcd = await shared.scope();
  const a = node(etcd, "rel-a", { leaseSeconds: 60 });
  const b = node(etcd, "rel-b", { leaseSeconds: 60 });
  try {
    const claimed = await a.claimer.claim();
    assert.equal(claimed.id, 1);
    assert.equal((await zoneKeys(etcd)).length, 2, "lock + one address record");
    await a.stop();
    assert.equal(a.claimer.current(), undefined);
    // No waiting: the 60 s lease was revoked, so the keys are gone now.
    assert.deepEqual(await zoneKeys(etcd), []);
    assert.equal((await b.claimer.claim()).id, 1);
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

Deno.test("idetcd claim: a restarted node gets its old ID back (after release and after a kill)", async () => {
  await using etcd = await startEtcd();
  const others = [node(etcd, "other-1"), node(etcd, "other-2")];
  const first = node(etcd, "sticky", { leaseSeconds: 30 });
  const lines = new Lines();
  try {
    await others[0].claimer.claim();
    assert.equal((await first.claimer.claim()).id, 2);
    await others[1].claimer.claim(); // ID 3
    // Kill: the old lock (30 s lease) is still there when the node comes back.
    await first.stop({ revoke: false });
    const second = node(etcd, "sticky", { leaseSeconds: 30 }, lines.log);
    try {
      const again = await second.claimer.claim();
      assert.equal(again.id, 2);
      assert.ok(lines.has("took it back from an earlier instance with the same identity"));
      assert.ok(lines.has("claimed worker2.tf.local. (ID 2)"));
      const keys = await zoneKeys(etcd);
      const lock = keys.find((k) => k.key === "/skydns/local/tf/worker2")!;
      assert.equal(lock.lease, again.leaseId, "the lock is held by the new lease");
      for (const k of keys.filter((k) => k.key.startsWith("/skydns/local/tf/worker2/"))) {
        assert.equal(k.lease, again.leaseId, `${k.key} moved to the new lease`);
      }
      // The old lease was revoked by the takeover: only the live instances' leases remain.
      const leases = (await etcd.ctl("lease", "list")).trim().split("\n").slice(1);
      assert.equal(leases.length, 3, leases.join(","));
    } finally {
      await second.stop();
    }
    // After a clean release the slot is free, and ID 1 (lower) is free too: the node still
    // comes back as ID 2, remembered by etcd's lease-less "last holder" record.
    await others[0].stop(); // frees ID 1
    const third = node(etcd, "sticky");
    const newcomer = node(etcd, "newcomer");
    try {
      assert.equal((await third.claimer.claim()).id, 2);
      assert.equal((await newcomer.claimer.claim()).id, 1);
    } finally {
      await Promise.all([third.stop(), newcomer.stop()]);
    }
    // A state file's ID (preferredId) wins over the remembered one.
    const fourth = node(etcd, "sticky", { preferredId: 5 });
    try {
      assert.equal((await fourth.claimer.claim()).id, 5);
    } finally {
      await fourth.stop();
    }
  } finally {
    await Promise.all([...others.map((o) => o.stop()), first.stop()]);
  }
});

Deno.test("idetcd claim: a storm below the limit fills the lowest IDs; over it, the extra ones fail", async () => {
  const etcd = await shared.scope();
  const nodes = Array.from({ length: 12 }, (_, i) => node(etcd, `herd-${i + 1}`, { limit: 10 }));
  try {
    const results = await Promise.allSettled(nodes.map((n) => n.claimer.claim()));
    const ids = results.flatMap((r) => r.status === "fulfilled" ? [r.value.id] : []);
    assert.deepEqual(ids.sort((a, b) => a - b), Array.from({ length: 10 }, (_, i) => i + 1));
    const failures = results.flatMap((r) => r.status === "rejected" ? [r.reason as Error] : []);
    assert.equal(failures.length, 2);
    for (const err of failures) assert.match(err.message, /all 10 names .* are taken/);
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
  const half = Array.from({ length: 20 }, (_, i) => node(etcd, `half-${i + 1}`, { limit: 40 }));
  try {
    const claims = await Promise.all(half.map((n) => n.claimer.claim()));
    assert.deepEqual(
      claims.map((c) => c.id).sort((a, b) => a - b),
      Array.from({ length: 20 }, (_, i) => i + 1),
      "no gaps",
    );
  } finally {
    await Promise.all(half.map((n) => n.stop()));
  }
});

Deno.test("idetcd claim: someone deleting our lock key makes us claim the same ID again", async () => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  const lines = new Lines();
  const a = node(etcd, "victim", { leaseSeconds: 30 }, lines.log);
  const b = node(etcd, "bystander", { leaseSeconds: 30 });
  try {
    const first = await a.claimer.claim();
    await b.claimer.claim();
    const changes: (number | undefined)[] = [];
    a.claimer.onChange((c) => changes.push(c?.id));
    await etcd.ctl("del", `${P}/local/tf/worker1`);
    const again = await waitFor(() => {
      const c = a.claimer.current();
      return c && c.createRevision !== first.createRevision ? c : undefined;
    }, { timeoutMs: 5_000, what: "the re-claim" });
    assert.equal(again.id, 1);
    assert.equal(again.leaseId, first.leaseId, "the same lease keeps working");
    assert.deepEqual(changes, [undefined, 1]);
    assert.ok(lines.has("lost worker1.tf.local. (ID 1): its lock was deleted"));
    const stored = await holders(etcd);
    assert.deepEqual([...stored.entries()].sort(), [[1, "victim"], [2, "bystander"]]);
    // Deleting an address record only is not a loss of the name: the record is rewritten.
    await etcd.ctl("del", `${P}/local/tf/worker1/ip1`);
    await waitFor(
      async () => (await zoneKeys(etcd)).some((k) => k.key === `${P}/local/tf/worker1/ip1`),
      {
        timeoutMs: 5_000,
        what: "the address record to be rewritten",
      },
    );
    assert.equal(a.claimer.current()?.createRevision, again.createRevision);
    assert.ok(lines.has("the address records of worker1.tf.local. were changed; rewrote them"));
    // Overwriting the lock (another lease) is a loss: the node moves to a free ID.
    await etcd.ctl("put", `${P}/local/tf/worker1`, '{"idetcd":{"id":1,"identity":"intruder"}}');
    const moved = await waitFor(() => {
      const c = a.claimer.current();
      return c && c.id !== 1 ? c : undefined;
    }, { timeoutMs: 5_000, what: "a move to another ID" });
    assert.equal(moved.id, 3);
    assert.ok(lines.has("lost worker1.tf.local. (ID 1): its lock now belongs to another lease"));
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});

Deno.test("idetcd claim: etcd stopped and started under held claims; IDs survive, never doubled", async () => {
  await using etcd = await startEtcd();
  const nodes = Array.from(
    { length: 5 },
    (_, i) => node(etcd, `outage-${i + 1}`, { leaseSeconds: 2 }),
  );
  try {
    const before = await Promise.all(nodes.map((n) => n.claimer.claim()));
    await etcd.stop();
    // Longer than the lease: every claimer must stop vouching for its name.
    await waitFor(() => nodes.every((n) => n.claimer.current() === undefined), {
      timeoutMs: 10_000,
      what: "claims to turn unconfirmed while etcd is down",
    });
    await etcd.start();
    await waitFor(() => nodes.every((n) => n.claimer.current() !== undefined), {
      timeoutMs: 20_000,
      what: "every claimer to hold a name again",
    });
    const after = nodes.map((n) => n.claimer.current()!);
    assert.deepEqual(after.map((c) => c.id), before.map((c) => c.id), "same IDs after the outage");
    const stored = await holders(etcd);
    assert.equal(stored.size, 5);
    for (const [i, c] of after.entries()) assert.equal(stored.get(c.id), `outage-${i + 1}`);
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
  }
});

Deno.test("idetcd claim: a revoked lease is replaced and the same ID claimed again", async () => {
  const etcd = await shared.scope();
  const lines = new Lines();
  const a = node(etcd, "revoked", { leaseSeconds: 30 }, lines.log);
  try {
    const first = await a.claimer.claim();
    await etcd.ctl("lease", "revoke", BigInt(first.leaseId).toString(16));
    const again = await waitFor(() => {
      const c = a.claimer.current();
      return c && c.leaseId !== first.leaseId ? c : undefined;
    }, { timeoutMs: 15_000, what: "a claim under a new lease" });
    assert.equal(again.id, first.id);
    assert.equal((await holders(etcd)).get(first.id), "revoked");
  } finally {
    await a.stop();
  }
});

Deno.test("idetcd claim: the stored keys are answered by the CoreDNS etcd plugin's lookup", async () => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  const a = node(etcd, "stock-1", { addresses: ["10.0.0.1", "2001:db8::1"], port: 2222 });
  const b = node(etcd, "stock-2", { addresses: ["10.0.0.2"], port: 2222 });
  const client = createClient({ endpoints: [etcd.endpoint] }, ".");
  const mirror = new Mirror(client, `${P}/`, new Lines().log);
  try {
    await a.claimer.claim();
    await b.claimer.claim();
    await mirror.start();
    await waitFor(() => mirror.range(`${P}/local/tf/worker2/`).length > 0, {
      what: "the mirror to see worker2",
    });
    const env = {
      source: mirror,
      config: { pathPrefix: P.slice(1), minLeaseTTL: 0, maxLeaseTTL: 0 },
    };
    const ask = (name: string, type: number) => lookupSync(env, "tf.local.", name, name, type);

    let out = ask("worker1.tf.local.", Type.A);
    assert.equal(out.rcode, Rcode.Success);
    assert.deepEqual(out.answer.map((r) => r.data), ["10.0.0.1"]);
    out = ask("worker1.tf.local.", Type.AAAA);
    assert.deepEqual(out.answer.map((r) => r.data), ["2001:db8::1"]);
    out = ask("worker2.tf.local.", Type.AAAA);
    assert.equal(out.rcode, Rcode.Success, "NODATA");
    assert.deepEqual(out.answer, []);
    out = ask("worker2.tf.local.", Type.SRV);
    assert.deepEqual(out.answer.map((r) => r.data), [
      { priority: 10, weight: 100, port: 2222, target: "ip1.worker2.tf.local." },
    ]);
    assert.deepEqual(out.additional.map((r) => [r.name, r.data]), [[
      "ip1.worker2.tf.local.",
      "10.0.0.2",
    ]]);
    out = ask("worker3.tf.local.", Type.A);
    assert.equal(out.rcode, Rcode.NameError);
    out = ask("worker1.tf.local.", Type.TXT);
    assert.equal(out.rcode, Rcode.Success, "the lock (no host, no text) is ignored, not an error");
    assert.deepEqual(out.answer, []);
    // The zone-wide scan (apex fallback) reads every idetcd key, the lease-less
    // memory records included, without a decode error.
    out = ask("tf.local.", Type.A);
    assert.equal(out.rcode, Rcode.Success, out.error ?? "");
    assert.deepEqual(out.answer.map((r) => r.data).sort(), ["10.0.0.1", "10.0.0.2"]);
    // The TTL CoreDNS derives from the lease (clamped to min-lease-ttl 30).
    const ttl = ask("worker1.tf.local.", Type.A).answer[0].ttl;
    assert.ok(ttl === 30 || ttl === 300, `ttl ${ttl}`);
  } finally {
    await mirror.close();
    client.close();
    await Promise.all([a.stop(), b.stop()]);
  }
});

/** A parsed `idetcd` block. */
function idetcdDirectives(body: string) {
  return parseCorefile(`tf.local {\nidetcd {\n${body}\n}\n}\n`, "Corefile", {
    isDirective: (n) => n === "idetcd",
  })[0].directives;
}

/** A query as the chain sees it. */
function query(name: string, type: number): Request {
  return {
    question: { name, type, class: Class.INET },
    qname: name.toLowerCase(),
    observe: () => {},
  } as unknown as Request;
}

const refused = (): Promise<Reply> =>
  Promise.resolve({
    rcode: Rcode.Refused,
    authoritative: false,
    answer: [],
    authority: [],
    additional: [],
  });

Deno.test("idetcd plugin: claims at startup, answers, survives a reload, releases at shutdown", async () => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  const dir = await Deno.makeTempDir({ prefix: "idetcd-plugin-" });
  const resources = new Resources();
  const lines = new Lines();
  const body = `endpoint ${etcd.endpoint}
    prefix ${P}
    pattern worker{{.ID}}.tf.local.
    limit 4
    address 127.0.0.1 ::1
    identity plugin-node
    lease 2
    port 2222
    ttl 7
    file state/id.json`;
  const setup = async () => {
    const startup: StartupHook[] = [];
    const plugin = await idetcdPlugin.setup({
      directives: idetcdDirectives(body),
      zones: ["tf.local."],
      port: 53,
      configDir: dir,
      serverOptions: { bind: [] },
      resources,
      log: lines.log,
      server: NO_SERVER,
      onStartup: (fn) => startup.push(fn),
      onShutdown: () => {},
      fatal: (err) => {
        throw err;
      },
    });
    return { plugin: plugin!, startup };
  };
  const other = node(etcd, "plugin-other", { limit: 4 });
  try {
    await other.claimer.claim(); // ID 1
    const first = resources.scope();
    const one = await setup();
    assert.equal(one.plugin.ready?.(), false);
    for (const fn of one.startup) await fn(configView({}));
    assert.ok(one.plugin.ready?.());
    assert.ok(
      lines.has("[INFO] plugin/idetcd: claimed worker2.tf.local. (ID 2)"),
      lines.lines.join("\n"),
    );
    const state = JSON.parse(await Deno.readTextFile(`${dir}/state/id.json`));
    assert.equal(state.id, 2);
    assert.equal(state.name, "worker2.tf.local.");

    let reply = await one.plugin.serve(query("worker2.tf.local.", Type.A), refused);
    assert.deepEqual(reply.answer.map((r) => [r.data, r.ttl]), [["127.0.0.1", 7]]);
    reply = await waitFor(async () => {
      const r = await one.plugin.serve(query("_nodes.tf.local.", Type.SRV), refused);
      return r.answer.length === 2 ? r : undefined;
    }, { what: "both members in _nodes" });
    assert.deepEqual(reply.answer.map((r) => (r.data as { target: string }).target), [
      "worker1.tf.local.",
      "worker2.tf.local.",
    ]);

    // Subcommands read etcd by identity.
    const config = parseIdetcd(idetcdDirectives(body), dir);
    assert.deepEqual(await whoami(config), {
      id: 2,
      name: "worker2.tf.local.",
      addresses: ["127.0.0.1", "::1"],
      port: 2222,
      identity: "plugin-node",
    });
    assert.deepEqual(await tfConfig(config), {
      cluster: { worker: ["worker1.tf.local:2222", "worker2.tf.local:2222"] },
      task: { type: "worker", index: 1 },
    });

    // Reload: a new configuration takes the same claim before the old one lets go.
    const second = resources.scope();
    const two = await setup();
    for (const fn of two.startup) await fn(configView({}));
    await first.release();
    assert.equal((await holders(etcd)).get(2), "plugin-node", "the reload kept ID 2");
    assert.ok(two.plugin.ready?.());
    assert.equal(lines.lines.filter((l) => l.includes("claimed worker")).length, 1, "claimed once");

    // Shutdown: the lease is revoked, the name is gone at once.
    await second.release();
    assert.deepEqual([...(await holders(etcd)).keys()], [1]);
  } finally {
    await resources.closeAll();
    await other.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("idetcd plugin: a failed claim is one clear line", async () => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  const resources = new Resources();
  const scope = resources.scope();
  const startup: StartupHook[] = [];
  const others = [node(etcd, "f-1", { limit: 1 })];
  try {
    await others[0].claimer.claim();
    await idetcdPlugin.setup({
      directives: idetcdDirectives(
        `endpoint ${etcd.endpoint}\nprefix ${P}\npattern worker{{.ID}}.tf.local.\nlimit 1\naddress 10.0.0.9`,
      ),
      zones: ["tf.local."],
      port: 53,
      configDir: ".",
      serverOptions: { bind: [] },
      resources,
      log: new Lines().log,
      server: NO_SERVER,
      onStartup: (fn) => startup.push(fn),
      onShutdown: () => {},
      fatal: (err) => {
        throw err;
      },
    });
    await assert.rejects(
      async () => {
        for (const fn of startup) await fn(configView({}));
      },
      {
        message:
          "idetcd: all 1 names of worker{{.ID}}.tf.local. are taken (limit 1); raise limit or free a node",
      },
    );
  } finally {
    await scope.release();
    await others[0].stop();
  }
});

Deno.test("idetcd claim: wait gets the first slot that frees up, or times out", async () => {
  const etcd = await shared.scope();
  const holder = node(etcd, "wait-holder", { limit: 1, leaseSeconds: 30 });
  const waiter = node(etcd, "wait-waiter", { limit: 1, wait: {} });
  const impatient = node(etcd, "wait-impatient", { limit: 1, wait: { timeoutSeconds: 1 } });
  try {
    await holder.claimer.claim();
    await assert.rejects(impatient.claimer.claim(), {
      message:
        "idetcd: no name of worker{{.ID}}.tf.local. became free within 1s (all 1 taken); raise limit or free a node",
    });
    let got: number | undefined;
    const pending = waiter.claimer.claim().then((c) => (got = c.id));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(got, undefined, "still waiting while the slot is held");
    const releasedAt = performance.now();
    await holder.stop();
    await pending;
    assert.equal(got, 1);
    const waited = performance.now() - releasedAt;
    assert.ok(waited < 2_000, `woken by the delete, not by polling (${waited.toFixed(0)} ms)`);
  } finally {
    await Promise.all([holder.stop(), waiter.stop(), impatient.stop()]);
  }
});

/**
 * An {@link EtcdKv} whose first `failures` claim writes (the
 * `create_revision == 0` transaction) time out, as an overloaded etcd's do,
 * while every other call is answered.
 */
class BusyKv implements EtcdKv {
  readonly #kv: Etcd3Kv;
  #left: number;
  /** Claim writes failed so far. */
  failed = 0;

  constructor(kv: Etcd3Kv, failures: number) {
    this.#kv = kv;
    this.#left = failures;
  }

  get requests(): number {
    return this.#kv.requests;
  }

  txn(request: TxnRequest, timeoutMs?: number): Promise<TxnResult> {
    const claimWrite = request.compare.some((c) => "createRevision" in c && c.createRevision === 0);
    if (claimWrite && this.#left > 0) {
      this.#left--;
      this.failed++;
      this.#kv.requests++;
      return Promise.reject(new Error("4 DEADLINE_EXCEEDED: Deadline exceeded after 5.001s"));
    }
    return this.#kv.txn(request, timeoutMs);
  }

  range(key: string, options?: { prefix?: boolean; timeoutMs?: number }): Promise<KeyValue[]> {
    return this.#kv.range(key, options);
  }

  grant(ttlSeconds: number, timeoutMs?: number): Promise<GrantedLease> {
    return this.#kv.grant(ttlSeconds, timeoutMs);
  }

  keepAlive(id: string, timeoutMs: number): Promise<number> {
    return this.#kv.keepAlive(id, timeoutMs);
  }

  revoke(id: string, timeoutMs?: number): Promise<void> {
    return this.#kv.revoke(id, timeoutMs);
  }
}

Deno.test("idetcd claim: a busy etcd that answers some calls and times out others is retried past the connect timeout", async () => {
  const etcd = await shared.scope();
  const prefix = prefixOf(etcd);
  const client = createClient({ endpoints: [etcd.endpoint] }, ".");
  const copy = new Mirror(client, `${prefix}/local/tf/`, new Lines().log, { trackLeases: false });
  // Five timed-out writes: the claimer's pauses between them (100, 200, 400, 800, 1,000 ms)
  // add up to 2.5 s, past the 1 s allowance, while etcd answers each attempt's queue entry.
  const kv = new BusyKv(new Etcd3Kv(client), 5);
  const claimer = new Claimer(
    kv,
    {
      pattern: parsePattern(PATTERN),
      limit: 10,
      prefix,
      addresses: ["10.0.0.1"],
      identity: "busy-1",
      leaseSeconds: 10,
      connectTimeoutSeconds: 1,
      endpoints: etcd.endpoint,
    },
    new Lines().log,
    { zone: copy },
  );
  try {
    await copy.start();
    const claimed = await claimer.claim();
    assert.equal(claimed.id, 1);
    assert.equal(kv.failed, 5, "every injected time-out was hit");
    assert.equal(claimer.stats.retries, 5);
    assert.equal((await holders(etcd)).get(1), "busy-1");
  } finally {
    await claimer.release();
    await copy.close();
    client.close();
  }
});

/** A zone copy whose watch is stuck: loaded once, empty, never advancing. */
class StuckCopy implements ZoneCopy {
  readonly revision = 1;
  readonly generation = 0;
  start(): Promise<void> {
    return Promise.resolve();
  }
  isReady(): boolean {
    return true;
  }
  onChange(): () => void {
    return () => {};
  }
  range(): readonly KeyValue[] {
    return [];
  }
  get(): KeyValue | undefined {
    return undefined;
  }
  leaseRemaining(): number | undefined {
    return undefined;
  }
}

Deno.test("idetcd claim: claimers whose shared copy is stuck list the zone from etcd once between them", async () => {
  const etcd = await shared.scope();
  const prefix = prefixOf(etcd);
  const client = createClient({ endpoints: [etcd.endpoint] }, ".");
  const copy = new StuckCopy();
  const view = new ZoneView(copy, `${prefix}/local/tf`, parsePattern(PATTERN), 10);
  const claimers = [1, 2, 3].map((i) =>
    new Claimer(
      client,
      {
        pattern: parsePattern(PATTERN),
        limit: 10,
        prefix,
        addresses: [`10.0.0.${i}`],
        identity: `stuck-${i}`,
        leaseSeconds: 10,
        endpoints: etcd.endpoint,
      },
      new Lines().log,
      { zone: copy, view },
    )
  );
  try {
    const claims = await Promise.all(claimers.map((c) => c.claim()));
    assert.deepEqual(claims.map((c) => c.id).sort(), [1, 2, 3]);
    const listings = claimers.reduce((sum, c) => sum + c.stats.directReads, 0);
    assert.equal(listings, 1, "one listing served every claimer waiting on the stuck copy");
    assert.equal(view.listings, 1);
  } finally {
    await Promise.all(claimers.map((c) => c.release()));
    client.close();
  }
});

Deno.test("idetcd claim: etcd unreachable at start is one clear line", async () => {
  const client = createClient({ endpoints: ["http://127.0.0.1:9"] }, ".");
  const claimer = new Claimer(client, {
    pattern: parsePattern(PATTERN),
    limit: 10,
    prefix: "/skydns",
    addresses: ["10.0.0.1"],
    identity: "lonely",
    leaseSeconds: 2,
    connectTimeoutSeconds: 1,
    endpoints: "http://127.0.0.1:9",
  }, new Lines().log);
  try {
    await assert.rejects(claimer.claim(), (err: Error) => {
      assert.ok(err instanceof ClaimError);
      assert.match(
        err.message,
        /^idetcd: cannot claim a name of worker\{\{\.ID\}\}\.tf\.local\. in etcd at http:\/\/127\.0\.0\.1:9: [^\n]+$/,
      );
      return true;
    });
  } finally {
    await claimer.release();
    client.close();
  }
});

Deno.test("idetcd claim: a second live instance with the same identity takes over; the first steps back", async () => {
  const etcd = await shared.scope();
  const firstLines = new Lines();
  const first = node(etcd, "twin", { leaseSeconds: 30 }, firstLines.log);
  const second = node(etcd, "twin", { leaseSeconds: 30 });
  try {
    assert.equal((await first.claimer.claim()).id, 1);
    assert.equal((await second.claimer.claim()).id, 1);
    await waitFor(() => firstLines.has("was taken over by another instance with identity twin"), {
      what: "the first instance to step back",
    });
    assert.equal(first.claimer.current(), undefined);
    assert.equal(second.claimer.current()?.id, 1);
    const stored = await holders(etcd);
    assert.deepEqual([...stored.entries()], [[1, "twin"]], "no second name for the twin");
  } finally {
    await Promise.all([first.stop(), second.stop()]);
  }
});

Deno.test("idetcd claim: a dead claimer stuck in the queue does not block the others for long", async () => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  // A claimer that joined the queue and died: its entry lives until its 60 s lease ends.
  const grant = await etcd.ctl("lease", "grant", "60");
  const ghostLease = /lease ([0-9a-f]+) granted/.exec(grant)![1];
  await etcd.ctl(
    "put",
    `--lease=${ghostLease}`,
    `${P}/local/tf/_idetcd/queue/1`,
    '{"idetcdQueue":{"identity":"ghost","prefers":[]}}',
  );
  const lines = new Lines();
  const a = node(etcd, "behind-ghost", { limit: 1, leaseSeconds: 2 }, lines.log);
  try {
    const started = performance.now();
    const claimed = await a.claimer.claim();
    const took = performance.now() - started;
    assert.equal(claimed.id, 1);
    // The queue promised ID 1 to the ghost; after twice the lease the claimer takes it anyway.
    assert.ok(took >= 3_500 && took < 10_000, `took ${took.toFixed(0)} ms`);
  } finally {
    await a.stop();
  }
});

/**
 * `n` claimers on 10 shared clients and one shared copy (as a node's claim
 * reads its DNS copy), in a fresh etcd, by the benchmark's storm driver: the
 * IDs they got, requests each, and the bytes etcd sent per claim.
 */
async function sharedStorm(n: number) {
  await using etcd = await startEtcd();
  const run = await runStorm({
    endpoint: etcd.endpoint,
    claimers: n,
    clients: 10,
    leaseSeconds: 30,
  });
  assert.deepEqual(run.failures, [], `${n}: no claim failed`);
  return {
    ids: run.claims.map((c) => c!.id).sort((a, b) => a - b),
    requests: run.requests,
    directReads: run.directReads,
    bytesPerClaim: run.bytesSent / n,
  };
}

Deno.test("idetcd claim: 300 claimers on shared clients all unique in 3 requests each; bytes per claim do not grow with N", async () => {
  const small = await sharedStorm(30);
  const large = await sharedStorm(300);
  for (const [n, run] of [[30, small], [300, large]] as const) {
    assert.deepEqual(
      run.ids,
      Array.from({ length: n }, (_, i) => i + 1),
      `${n}: IDs 1..${n} once each`,
    );
    assert.equal(run.directReads, 0, `${n}: every claim read the zone from the copy`);
    // grant, join the queue, claim; a lost race or a keep-alive would add one.
    assert.ok(
      Math.max(...run.requests) <= 4,
      `${n}: at most 4 requests, got ${Math.max(...run.requests)}`,
    );
  }
  const mean = large.requests.reduce((a, b) => a + b, 0) / large.requests.length;
  assert.ok(mean <= 3.2, `mean requests per claim ${mean}`);
  // Ten times the claimers: listing the queue would make each claim's bytes ten times larger.
  const ratio = large.bytesPerClaim / small.bytesPerClaim;
  console.log(
    `bytes per claim: ${small.bytesPerClaim.toFixed(0)} at 30, ${
      large.bytesPerClaim.toFixed(0)
    } at 300 (x${ratio.toFixed(2)})`,
  );
  assert.ok(ratio < 2, `bytes per claim grew ${ratio.toFixed(2)}x from 30 to 300 claimers`);
});
