/**
 * The mirror against a real etcd: initial list, watch, ordering, leases,
 * outages, compaction, 100k keys, invalid UTF-8.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { Etcd3 } from "etcd3";
import { createClient } from "../lib/etcd/client.ts";
import { Mirror, type MirrorOptions } from "../lib/etcd/mirror.ts";
import { acquireMirror } from "../lib/etcd/pool.ts";
import { createLogger, type Logger } from "../lib/log.ts";
import { Resources } from "../lib/server/resources.ts";
import { type EtcdAccess, sharedEtcd, startEtcd } from "./helpers/etcd.ts";
import { freePort, waitFor } from "./helpers/wait.ts";

/**
 * The etcd of the tests that neither stop it, compact it, replace it nor turn
 * on its authentication; each puts its keys below its own prefix (`${P}/skydns/...`).
 */
const shared = sharedEtcd();

/** A logger that keeps its lines for assertions. */
function captureLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  return { log: createLogger("plugin/etcd", (_level, line) => lines.push(line)), lines };
}

/** Runs `body` with a started mirror of `prefix` and a client, closing both afterwards. */
async function withMirror(
  etcd: EtcdAccess,
  prefix: string,
  body: (mirror: Mirror, client: Etcd3, lines: string[]) => Promise<void> | void,
  options: MirrorOptions = {},
): Promise<void> {
  const client = createClient({ endpoints: [etcd.endpoint] }, ".");
  const { log, lines } = captureLog();
  const mirror = new Mirror(client, prefix, log, options);
  try {
    await ready(mirror);
    await body(mirror, client, lines);
  } finally {
    await mirror.close();
    client.close();
  }
}

/** Starts `mirror` and waits (with a deadline: start() itself retries forever) for its first list. */
async function ready(mirror: Mirror, timeoutMs = 20_000): Promise<void> {
  void mirror.start();
  await waitFor(() => mirror.isReady(), { what: `first list of ${mirror.prefix}`, timeoutMs });
}

/** The revision etcd reports after a write made with etcdctl `-w json`. */
function revisionOf(json: string): number {
  return Number(JSON.parse(json).header.revision);
}

/** Decimal lease ID from etcdctl's "lease 694d... granted with TTL(30s)". */
function grantedLease(output: string): string {
  const hex = /lease ([0-9a-f]+) granted/.exec(output)?.[1];
  assert.ok(hex, `unexpected etcdctl output: ${output}`);
  return BigInt(`0x${hex}`).toString();
}

const keysOf = (mirror: Mirror, prefix: string) => mirror.range(prefix).map((kv) => kv.key);

Deno.test("mirror: initial list (paged) matches etcd", async () => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  for (let i = 0; i < 25; i++) {
    await etcd.ctl(
      "put",
      `${P}/skydns/test/n${String(i).padStart(2, "0")}`,
      `{"host":"10.0.0.${i}"}`,
    );
  }
  await etcd.ctl("put", `${P}/other/key`, "x");
  await withMirror(etcd, `${P}/skydns/`, (mirror) => {
    assert.equal(mirror.isReady(), true);
    const status = mirror.status();
    assert.equal(status.keys, 25);
    assert.equal(status.connected, true);
    assert.ok(status.revision >= 26);
    const all = mirror.range(`${P}/skydns/`);
    assert.equal(all.length, 25);
    assert.deepEqual(all.map((kv) => kv.key), [...all.map((kv) => kv.key)].sort());
    const n07 = mirror.get(`${P}/skydns/test/n07`);
    assert.equal(n07?.value, '{"host":"10.0.0.7"}');
    assert.equal(n07?.lease, "0");
    assert.ok(n07!.createRevision > 0 && n07!.modRevision === n07!.createRevision);
    assert.equal(mirror.get(`${P}/other/key`), undefined);
  }, { pageSize: 7 });
});

Deno.test("mirror: puts and deletes show up within milliseconds", async () => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  await withMirror(etcd, `${P}/skydns/`, async (mirror, client) => {
    const changes: number[] = [];
    const unsubscribe = mirror.onChange(() => changes.push(mirror.generation));
    const generation = mirror.generation;

    let t0 = performance.now();
    await client.put(`${P}/skydns/test/a`).value("1");
    await waitFor(() => mirror.get(`${P}/skydns/test/a`)?.value === "1", {
      what: "put visible",
      intervalMs: 1,
    });
    const putMs = performance.now() - t0;
    assert.deepEqual(keysOf(mirror, `${P}/skydns/test/`), [`${P}/skydns/test/a`]);

    await client.put(`${P}/skydns/test/a`).value("2");
    await waitFor(() => mirror.get(`${P}/skydns/test/a`)?.value === "2", {
      what: "update visible",
    });
    assert.equal(mirror.range(`${P}/skydns/test/a`)[0].value, "2");

    t0 = performance.now();
    await client.delete().key(`${P}/skydns/test/a`);
    await waitFor(() => mirror.get(`${P}/skydns/test/a`) === undefined, {
      what: "delete visible",
      intervalMs: 1,
    });
    const deleteMs = performance.now() - t0;
    assert.deepEqual(mirror.range(`${P}/skydns/`), []);
    assert.ok(mirror.generation >= generation + 3);
    assert.ok(changes.length >= 3);
    assert.ok(mirror.status().lastEventAt! > 0);
    unsubscribe();
    console.log(`put visible after ${putMs.toFixed(1)} ms, delete after ${deleteMs.toFixed(1)} ms`);
    // Generous: the figures are printed; only a lost event (seen after the next write, or never) fails.
    assert.ok(putMs < 10_000 && deleteMs < 10_000);
  });
});

Deno.test("mirror: a txn is applied as one batch", async () => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  await withMirror(etcd, `${P}/skydns/`, async (mirror, client) => {
    const seen: number[] = [];
    mirror.onChange(() => seen.push(mirror.range(`${P}/skydns/`).length));
    await client.kv.txn({
      success: Array.from({ length: 100 }, (_, i) => ({
        request_put: { key: Buffer.from(`${P}/skydns/batch/${i}`), value: Buffer.from("v") },
      })),
    });
    await waitFor(() => mirror.status().keys === 100, { what: "txn applied" });
    // Listeners never see half a transaction.
    assert.deepEqual(seen, [100]);
    assert.equal(keysOf(mirror, `${P}/skydns/batch/`).length, 100);
  });
});

Deno.test("mirror: range order is etcd's byte order; prefixes are isolated", async () => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  const keys = [
    `${P}/skydns/order/z`,
    `${P}/skydns/order/\u00e9`, // C3 A9
    `${P}/skydns/order/\ufffd`, // EF BF BD: above an astral character in UTF-16, below it in UTF-8
    `${P}/skydns/order/\u{1F600}`, // F0 9F 98 80
    `${P}/skydns/order/a/b`,
    `${P}/skydns/order/a`,
    `${P}/skydns/order/A`,
    `${P}/skydns/order-x`,
  ];
  for (const key of keys.slice(0, 4)) await etcd.ctl("put", key, "listed");
  await etcd.ctl("put", `${P}/skydns2/x`, "other prefix");
  await etcd.ctl("put", `${P}/skydns`, "the bare prefix without slash");
  await withMirror(etcd, `${P}/skydns/`, async (mirror) => {
    for (const key of keys.slice(4)) await etcd.ctl("put", key, "watched");
    await etcd.ctl("put", `${P}/skydns2/y`, "other prefix");
    await waitFor(() => mirror.status().keys === 8, { what: "all keys" });
    const etcdOrder = (await etcd.ctl("get", "--prefix", "--keys-only", `${P}/skydns/`))
      .split("\n")
      .filter((line) => line !== "");
    assert.deepEqual(keysOf(mirror, `${P}/skydns/`), etcdOrder);
    assert.deepEqual(keysOf(mirror, `${P}/skydns/order/`).slice(-2), [
      `${P}/skydns/order/\ufffd`,
      `${P}/skydns/order/\u{1F600}`,
    ]);
    assert.deepEqual(keysOf(mirror, `${P}/skydns/order/a`), [
      `${P}/skydns/order/a`,
      `${P}/skydns/order/a/b`,
    ]);
    assert.deepEqual(keysOf(mirror, `${P}/skydns/order/a/`), [`${P}/skydns/order/a/b`]);
    assert.deepEqual(keysOf(mirror, `${P}/skydns/nothing`), []);
    assert.equal(mirror.get(`${P}/skydns2/x`), undefined);
    assert.equal(mirror.get(`${P}/skydns2/y`), undefined);
    assert.equal(mirror.get(`${P}/skydns`), undefined);
    assert.equal(keysOf(mirror, "").includes(`${P}/skydns2/x`), false);
  });
});

Deno.test("mirror: lease TTL is known locally and roughly right", async () => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  const lease = grantedLease(await etcd.ctl("lease", "grant", "30"));
  const hex = BigInt(lease).toString(16);
  await etcd.ctl("put", `${P}/skydns/lease/listed`, "1", `--lease=${hex}`);
  await withMirror(etcd, `${P}/skydns/`, async (mirror) => {
    assert.equal(mirror.get(`${P}/skydns/lease/listed`)?.lease, lease);
    assert.equal(mirror.get(`${P}/skydns/lease/listed`) && mirror.status().leases, 1);
    const ttl = await waitFor(() => mirror.leaseRemaining(lease), { what: "lease TTL" });
    assert.ok(ttl >= 25 && ttl <= 30, `remaining ${ttl}`);
    // A second key on the same lease arriving by watch shares the entry.
    await etcd.ctl("put", `${P}/skydns/lease/watched`, "2", `--lease=${hex}`);
    await waitFor(() => mirror.get(`${P}/skydns/lease/watched`), { what: "watched lease key" });
    assert.equal(mirror.status().leases, 1);
    assert.equal(mirror.leaseRemaining("12345"), undefined);
    // Keys gone: the lease is forgotten.
    await etcd.ctl("del", "--prefix", `${P}/skydns/lease/`);
    await waitFor(() => mirror.status().keys === 0, { what: "keys deleted" });
    assert.equal(mirror.status().leases, 0);
    assert.equal(mirror.leaseRemaining(lease), undefined);
  });
});

Deno.test("mirror: lease refreshes follow keep-alives; expiry and revoke remove keys", async () => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  await withMirror(etcd, `${P}/skydns/`, async (mirror, client) => {
    // Kept alive by this client (as another writer would): the mirror must
    // refresh its belief instead of counting down to zero.
    const kept = client.lease(3, { autoKeepAlive: true });
    const keptId = await kept.grant();
    await kept.put(`${P}/skydns/lease/kept`).value("alive");
    await waitFor(() => mirror.leaseRemaining(keptId) !== undefined, { what: "kept lease TTL" });
    const short = grantedLease(await etcd.ctl("lease", "grant", "2"));
    await etcd.ctl(
      "put",
      `${P}/skydns/lease/short`,
      "dies",
      `--lease=${BigInt(short).toString(16)}`,
    );
    await waitFor(() => mirror.get(`${P}/skydns/lease/short`), { what: "short-lived key" });
    const started = performance.now();
    await waitFor(() => mirror.get(`${P}/skydns/lease/short`) === undefined, {
      what: "key removed by lease expiry",
      timeoutMs: 10_000,
    });
    const expiredAfter = performance.now() - started;
    assert.ok(expiredAfter < 5_000, `expired after ${expiredAfter} ms`);
    // Wait past the kept lease's original TTL: it is still believed alive.
    await waitFor(() => performance.now() - started > 4_000, { what: "4 s", timeoutMs: 6_000 });
    assert.ok(mirror.get(`${P}/skydns/lease/kept`));
    const remaining = mirror.leaseRemaining(keptId);
    assert.ok(remaining !== undefined && remaining >= 1 && remaining <= 3, `kept ${remaining}`);
    await kept.revoke();
    await waitFor(() => mirror.get(`${P}/skydns/lease/kept`) === undefined, {
      what: "revoked key",
    });
    assert.equal(mirror.status().leases, 0);
  }, { leaseMinRefreshMs: 500 });
});

Deno.test("mirror: serves the last copy while etcd is down, catches up after", async () => {
  await using etcd = await startEtcd();
  await etcd.ctl("put", "/skydns/outage/before", "1");
  await withMirror(etcd, "/skydns/", async (mirror, client, lines) => {
    await etcd.stop();
    await waitFor(() => !mirror.status().connected, { what: "disconnect noticed" });
    // Give it a few retries to prove the outage is logged once.
    await waitFor(() => mirror.status().errors >= 3, { what: "retries", timeoutMs: 10_000 });
    assert.equal(mirror.isReady(), true);
    assert.equal(mirror.get("/skydns/outage/before")?.value, "1");
    assert.deepEqual(keysOf(mirror, "/skydns/outage/"), ["/skydns/outage/before"]);
    const status = mirror.status();
    assert.ok(status.lastError && status.disconnectedSince);
    const errorLines = lines.filter((l) => l.startsWith("[ERROR]"));
    assert.equal(errorLines.length, 1, errorLines.join("\n"));
    assert.match(
      errorLines[0],
      new RegExp(
        `^\\[ERROR\\] plugin/etcd: cannot reach etcd at .*127\\.0\\.0\\.1:${etcd.clientPort}: .*; retrying`,
      ),
    );

    await etcd.start();
    await client.put("/skydns/outage/after").value("2");
    await client.delete().key("/skydns/outage/before");
    await waitFor(() => mirror.get("/skydns/outage/after")?.value === "2", {
      what: "write after restart",
      timeoutMs: 15_000,
    });
    await waitFor(() => mirror.get("/skydns/outage/before") === undefined, { what: "delete" });
    const after = mirror.status();
    assert.equal(after.connected, true);
    assert.equal(after.reconnects, 1);
    assert.equal(after.relists, 0); // resumed, not re-listed
    assert.equal(after.disconnectedSince, undefined);
    assert.ok(lines.some((l) => l.startsWith("[INFO] plugin/etcd: reconnected to etcd")));
  });
});

Deno.test("mirror: start() waits for etcd and retries in the background", async () => {
  await using etcd = await startEtcd();
  await etcd.ctl("put", "/skydns/late", "1");
  await etcd.stop();
  const client = createClient({ endpoints: [etcd.endpoint] }, ".");
  const { log, lines } = captureLog();
  const mirror = new Mirror(client, "/skydns/", log);
  try {
    const started = mirror.start();
    assert.equal(mirror.start(), started); // idempotent
    await waitFor(() => mirror.status().errors >= 2, { what: "failed attempts" });
    assert.equal(mirror.isReady(), false);
    assert.equal(lines.filter((l) => l.includes("cannot reach etcd")).length, 1);
    await etcd.start();
    await waitFor(() => mirror.isReady(), {
      what: "first list after etcd came up",
      timeoutMs: 15_000,
    });
    await started;
    assert.equal(mirror.isReady(), true);
    assert.equal(mirror.get("/skydns/late")?.value, "1");
  } finally {
    await mirror.close();
    client.close();
  }
});

Deno.test("mirror: a compacted watch revision triggers a re-list", async () => {
  await using etcd = await startEtcd();
  for (const key of ["a", "b", "c"]) await etcd.ctl("put", `/skydns/compact/${key}`, "1");
  await withMirror(etcd, "/skydns/", async (mirror, _client, lines) => {
    const generation = mirror.generation;
    await mirror.pauseWatch();
    await etcd.ctl("put", "/skydns/compact/b", "2");
    await etcd.ctl("del", "/skydns/compact/c");
    const revision = revisionOf(await etcd.ctl("put", "/skydns/compact/d", "1", "-w", "json"));
    assert.ok(revision > mirror.status().revision + 1);
    await etcd.ctl("compact", String(revision));
    // The paused copy is still the old one.
    assert.deepEqual(keysOf(mirror, "/skydns/compact/"), [
      "/skydns/compact/a",
      "/skydns/compact/b",
      "/skydns/compact/c",
    ]);
    mirror.resumeWatch();
    await waitFor(() => mirror.status().relists === 1, { what: "re-list" });
    assert.deepEqual(
      mirror.range("/skydns/compact/").map((kv) => [kv.key, kv.value]),
      [["/skydns/compact/a", "1"], ["/skydns/compact/b", "2"], ["/skydns/compact/d", "1"]],
    );
    assert.equal(mirror.status().revision, revision);
    assert.equal(mirror.generation, generation + 1); // replaced in one step
    assert.ok(lines.some((l) => /\[WARNING\].*compacted/.test(l)), lines.join("\n"));
    // And the watch continues after the re-list.
    await etcd.ctl("put", "/skydns/compact/e", "1");
    await waitFor(() => mirror.get("/skydns/compact/e"), { what: "watch after re-list" });
  });
});

Deno.test("mirror: a replaced cluster (revision went back) triggers a re-list", async () => {
  await using etcd = await startEtcd();
  for (let i = 0; i < 5; i++) await etcd.ctl("put", `/skydns/old/${i}`, "1");
  await withMirror(etcd, "/skydns/", async (mirror) => {
    const before = mirror.status().revision;
    await etcd.stop();
    // Same address, empty data: a new cluster starting again at revision 1.
    for (const entry of Deno.readDirSync(etcd.dataDir)) {
      await Deno.remove(`${etcd.dataDir}/${entry.name}`, { recursive: true });
    }
    await etcd.start();
    await etcd.ctl("put", "/skydns/new", "1");
    await waitFor(() => mirror.get("/skydns/new"), {
      what: "new cluster's key",
      timeoutMs: 15_000,
    });
    assert.deepEqual(keysOf(mirror, "/skydns/"), ["/skydns/new"]);
    assert.ok(mirror.status().revision < before);
    assert.equal(mirror.status().relists, 1);
  });
});

Deno.test("mirror: invalid UTF-8 does not crash", async () => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  const client = createClient({ endpoints: [etcd.endpoint] }, ".");
  try {
    await client.put(`${P}/skydns/bin/listed`).value(Buffer.from([0xff, 0x41, 0xc3]));
    await client.put(Buffer.from([...Buffer.from(`${P}/skydns/bin/bad-`), 0xff])).value("k1");
  } finally {
    client.close();
  }
  await withMirror(etcd, `${P}/skydns/`, async (mirror, client, lines) => {
    assert.equal(mirror.get(`${P}/skydns/bin/listed`)?.value, "\ufffdA\ufffd");
    assert.equal(mirror.status().skippedKeys, 1);
    assert.ok(lines.some((l) => l.includes("not valid UTF-8")));
    await client.put(`${P}/skydns/bin/watched`).value(Buffer.from([0xef, 0xbb, 0xbf, 0x80]));
    await client.put(Buffer.from([...Buffer.from(`${P}/skydns/bin/bad2-`), 0xc0, 0x80])).value(
      "k2",
    );
    await client.put(`${P}/skydns/bin/ok`).value("fine");
    await waitFor(() => mirror.get(`${P}/skydns/bin/ok`), { what: "key after invalid ones" });
    // A leading BOM is kept, not swallowed.
    assert.equal(mirror.get(`${P}/skydns/bin/watched`)?.value, "\ufeff\ufffd");
    assert.deepEqual(keysOf(mirror, `${P}/skydns/bin/`), [
      `${P}/skydns/bin/listed`,
      `${P}/skydns/bin/ok`,
      `${P}/skydns/bin/watched`,
    ]);
    assert.equal(mirror.status().connected, true);
  });
});

Deno.test("pool: blocks on the same etcd and prefix share one mirror across a reload", async () => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  await etcd.ctl("put", `${P}/skydns/shared`, "1");
  const { log } = captureLog();
  const resources = new Resources();
  const first = resources.scope();
  try {
    await sharedMirrorScenario(resources, first, etcd, P, log);
  } finally {
    await resources.closeAll();
  }
});

/** The body of the pool test (split out so the pool is closed on failure). */
async function sharedMirrorScenario(
  resources: Resources,
  first: { release(): Promise<void> },
  etcd: EtcdAccess,
  P: string,
  log: Logger,
): Promise<void> {
  const options = { endpoints: [etcd.endpoint] };
  const a = acquireMirror(resources, options, `${P}/skydns/`, "/etc", log);
  const b = acquireMirror(resources, { endpoints: [etcd.endpoint] }, `${P}/skydns/`, "/etc", log);
  const other = acquireMirror(resources, options, `${P}/other/`, "/etc", log);
  assert.equal(a, b);
  assert.notEqual(a, other);
  assert.equal(resources.size, 3); // one client, two mirrors
  await ready(a);
  await ready(other);
  // Reload: the new configuration takes its references before the old one releases.
  const second = resources.scope();
  const c = acquireMirror(resources, options, `${P}/skydns/`, "/etc", log);
  assert.equal(c, a);
  await first.release();
  assert.equal(resources.size, 2); // the other prefix's mirror was closed; the client and this one live on
  await etcd.ctl("put", `${P}/skydns/after-reload`, "2");
  await waitFor(() => c.get(`${P}/skydns/after-reload`), { what: "shared mirror still watching" });
  await second.release();
  assert.equal(resources.size, 0);
}

/** Runs openssl in `dir`; throws on failure. */
async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`. */
async function makeCertificates(dir: string): Promise<void> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(
    dir,
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=idetcd-test-ca",
  );
  for (const [name, usage] of [["server", "serverAuth"], ["client", "clientAuth"]]) {
    Deno.writeTextFileSync(
      `${dir}/${name}.ext`,
      `subjectAltName=IP:127.0.0.1\nextendedKeyUsage=${usage}\n`,
    );
    await openssl(
      dir,
      "req",
      ...ec,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
      "-subj",
      `/CN=${name}`,
    );
    await openssl(
      dir,
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "1",
      "-extfile",
      `${name}.ext`,
    );
  }
}

Deno.test("client: mutual TLS with files relative to the Corefile folder", async () => {
  const dir = await Deno.makeTempDir({ prefix: "idetcd-test-tls-" });
  let etcdProcess: Deno.ChildProcess | undefined;
  try {
    await makeCertificates(dir);
    const port = await freePort();
    const peerPort = await freePort();
    const endpoint = `https://127.0.0.1:${port}`;
    etcdProcess = new Deno.Command("etcd", {
      args: [
        "--name=tls",
        `--data-dir=${dir}/data`,
        `--listen-client-urls=${endpoint}`,
        `--advertise-client-urls=${endpoint}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=tls=http://127.0.0.1:${peerPort}`,
        `--cert-file=${dir}/server.pem`,
        `--key-file=${dir}/server.key`,
        `--trusted-ca-file=${dir}/ca.pem`,
        "--client-cert-auth",
        "--log-level=error",
        "--logger=zap",
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const options = {
      endpoints: [endpoint],
      tls: { cert: "client.pem", key: "client.key", ca: "ca.pem" },
    };
    const client = createClient(options, dir);
    const { log } = captureLog();
    const mirror = new Mirror(client, "/skydns/", log);
    try {
      // The mirror retries until etcd is up.
      await ready(mirror);
      await client.put("/skydns/tls").value("secure");
      await waitFor(() => mirror.get("/skydns/tls")?.value === "secure", { what: "TLS watch" });
    } finally {
      await mirror.close();
      client.close();
    }
    // Without the CA the server certificate is not trusted.
    const untrusting = createClient({
      endpoints: [endpoint],
      tls: { cert: "client.pem", key: "client.key" },
    }, dir);
    try {
      await assert.rejects(() => untrusting.get("/skydns/tls").string());
    } finally {
      untrusting.close();
    }
  } finally {
    if (etcdProcess) {
      etcdProcess.kill("SIGTERM");
      await etcdProcess.status;
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client: username and password; a wrong password is logged once and retried", async () => {
  await using etcd = await startEtcd();
  await etcd.ctl("put", "/skydns/auth", "1");
  await etcd.ctl("user", "add", "root:rootpw");
  await etcd.ctl("auth", "enable");
  const endpoints = [etcd.endpoint];
  const good = createClient({ endpoints, username: "root", password: "rootpw" }, ".");
  const bad = createClient({ endpoints, username: "root", password: "wrong" }, ".");
  const goodLog = captureLog();
  const badLog = captureLog();
  const goodMirror = new Mirror(good, "/skydns/", goodLog.log);
  const badMirror = new Mirror(bad, "/skydns/", badLog.log, { maxBackoffMs: 200 });
  try {
    await ready(goodMirror);
    assert.equal(goodMirror.get("/skydns/auth")?.value, "1");
    await good.put("/skydns/auth2").value("2");
    await waitFor(() => goodMirror.get("/skydns/auth2"), { what: "authenticated watch" });
    void badMirror.start();
    await waitFor(() => badMirror.status().errors >= 3, { what: "failed attempts" });
    assert.equal(badMirror.isReady(), false);
    const errors = badLog.lines.filter((l) => l.startsWith("[ERROR]"));
    assert.equal(errors.length, 1, errors.join("\n"));
    assert.match(errors[0], /cannot read \/skydns\/ from etcd at .*authentication failed/);
  } finally {
    await goodMirror.close();
    await badMirror.close();
    good.close();
    bad.close();
  }
});

Deno.test({
  name: "mirror: loads 100,000 keys",
  // A few hundred MB of writes; set IDETCD_SKIP_BIG=1 to skip on slow machines.
  ignore: Deno.env.get("IDETCD_SKIP_BIG") === "1",
  async fn() {
    const etcd = await shared.scope();
    const P = etcd.prefix;
    const total = 100_000;
    const client = createClient({ endpoints: [etcd.endpoint] }, ".");
    try {
      const writeStart = performance.now();
      const perTxn = 128; // etcd's default --max-txn-ops
      let next = 0;
      const writer = async () => {
        while (next < total) {
          const from = next;
          next = Math.min(total, next + perTxn);
          await client.kv.txn({
            success: Array.from({ length: next - from }, (_, i) => {
              const n = from + i;
              return {
                request_put: {
                  key: Buffer.from(
                    `${P}/skydns/load/${n % 100}/node-${String(n).padStart(6, "0")}`,
                  ),
                  value: Buffer.from(`{"host":"10.${n >> 16}.${(n >> 8) & 255}.${n & 255}"}`),
                },
              };
            }),
          });
        }
      };
      await Promise.all(Array.from({ length: 16 }, writer));
      const writeMs = performance.now() - writeStart;

      const { log } = captureLog();
      // Run with --v8-flags=--expose-gc for retained (not transient) heap figures.
      const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
      gc();
      const rssBefore = Deno.memoryUsage().rss;
      const heapBefore = Deno.memoryUsage().heapUsed;
      const mirror = new Mirror(client, `${P}/skydns/`, log);
      try {
        const loadStart = performance.now();
        void mirror.start();
        await waitFor(() => mirror.isReady(), {
          what: "100k list",
          timeoutMs: 60_000,
          intervalMs: 1,
        });
        const loadMs = performance.now() - loadStart;
        gc();
        const memory = Deno.memoryUsage();
        assert.equal(mirror.status().keys, total);

        let t0 = performance.now();
        const all = mirror.range(`${P}/skydns/`);
        const rangeAllMs = performance.now() - t0;
        assert.equal(all.length, total);
        t0 = performance.now();
        const rounds = 10_000;
        let found = 0;
        for (let i = 0; i < rounds; i++) {
          found +=
            mirror.range(`${P}/skydns/load/${i % 100}/node-${String(i).padStart(6, "0")}`).length;
        }
        const rangeOneUs = ((performance.now() - t0) * 1000) / rounds;
        assert.equal(found, rounds);
        t0 = performance.now();
        const bucket = mirror.range(`${P}/skydns/load/42/`);
        const rangeBucketMs = performance.now() - t0;
        assert.equal(bucket.length, 1000);

        // A large batch merges into the sorted index.
        t0 = performance.now();
        await client.kv.txn({
          success: Array.from({ length: 128 }, (_, i) => ({
            request_put: { key: Buffer.from(`${P}/skydns/load/new/${i}`), value: Buffer.from("v") },
          })),
        });
        await waitFor(() => mirror.status().keys === total + 128, { intervalMs: 1 });
        const batchMs = performance.now() - t0;
        assert.equal(mirror.range(`${P}/skydns/load/new/`).length, 128);

        console.log(
          [
            `100k keys: written in ${(writeMs / 1000).toFixed(1)} s`,
            `loaded in ${loadMs.toFixed(0)} ms (list ${mirror.status().lastListMs?.toFixed(0)} ms)`,
            `RSS ${(memory.rss / 2 ** 20).toFixed(0)} MiB (+${
              ((memory.rss - rssBefore) / 2 ** 20).toFixed(0)
            } MiB)`,
            `heap +${((memory.heapUsed - heapBefore) / 2 ** 20).toFixed(0)} MiB`,
            `range(all) ${rangeAllMs.toFixed(1)} ms`,
            `range(one key) ${rangeOneUs.toFixed(2)} µs`,
            `range(1000-key bucket) ${rangeBucketMs.toFixed(2)} ms`,
            `128-key txn visible after ${batchMs.toFixed(1)} ms`,
          ].join("; "),
        );
        assert.ok(loadMs < 30_000, `load took ${loadMs} ms`);
      } finally {
        await mirror.close();
      }
    } finally {
      client.close();
    }
  },
});

Deno.test("Mirror: keys deleted in etcd leave nothing in the copy (entries, sorted keys, leases)", async () => {
  const etcd = await shared.scope();
  const prefix = `${etcd.prefix}/skydns/`;
  await withMirror(etcd, prefix, async (mirror, client) => {
    const lease = client.lease(60, { autoKeepAlive: false });
    const count = 2_000;
    for (let i = 0; i < count; i += 200) {
      await Promise.all(
        Array.from({ length: 200 }, (_, j) => lease.put(`${prefix}h${i + j}`).value("{}").exec()),
      );
    }
    await waitFor(() => mirror.status().keys === count, { what: `${count} keys in the copy` });
    await waitFor(() => mirror.footprint().leases === 1, { what: "the lease tracked" });
    assert.deepEqual(mirror.footprint(), { entries: count, sorted: count, pending: 0, leases: 1 });
    await client.delete().prefix(prefix).exec();
    await waitFor(() => mirror.status().keys === 0, { what: "the deletions in the copy" });
    assert.deepEqual(mirror.footprint(), { entries: 0, sorted: 0, pending: 0, leases: 0 });
    await lease.revoke();
  });
});

Deno.test("Mirror: a deletion bigger than etcd's message limit arrives in parts and empties the copy", async () => {
  const etcd = await shared.scope();
  const prefix = `${etcd.prefix}/skydns/`;
  await withMirror(etcd, prefix, async (mirror, client) => {
    // 20,000 deletions of 140-byte keys: about 3 MB of events in one
    // revision, above the 2 MiB etcd allows a message (its 1.5 MiB request
    // limit plus gRPC overhead), so the watch sends it in fragments.
    const count = 20_000;
    const pad = "x".repeat(120);
    for (let i = 0; i < count; i += 1_000) {
      await Promise.all(
        Array.from({ length: 1_000 }, (_, j) => client.put(`${prefix}${pad}${i + j}`).value("{}")),
      );
    }
    await waitFor(() => mirror.status().keys === count, {
      what: `${count} keys in the copy`,
      timeoutMs: 30_000,
    });
    const deleted = await client.delete().prefix(prefix).exec();
    const revision = Number(deleted.header.revision);
    await waitFor(() => mirror.revision >= revision, {
      what: `revision ${revision} in the copy`,
      timeoutMs: 20_000,
    });
    assert.deepEqual(mirror.footprint(), { entries: 0, sorted: 0, pending: 0, leases: 0 });
    // The watch goes on after the parts: a later write shows.
    await client.put(`${prefix}after`).value("{}");
    await waitFor(() => mirror.get(`${prefix}after`), { what: "a write after the deletion" });
  });
});
