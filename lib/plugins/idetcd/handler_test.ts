import assert from "node:assert/strict";
import { Class, Rcode, type RR, Type } from "../../dns/types.ts";
import type { KeyValue, KeyValueSource } from "../../etcd/types.ts";
import type { Reply, Request } from "../../server/plugin.ts";
import { addressFromReverseName, createIdetcdHandler } from "./handler.ts";
import { parsePattern } from "./pattern.ts";
import { encodeAddress, encodeLock } from "./records.ts";

const pattern = parsePattern("worker{{.ID}}.tf.local.");

function source(kvs: KeyValue[]): KeyValueSource {
  const sorted = [...kvs].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return {
    range: (prefix) => sorted.filter((kv) => kv.key.startsWith(prefix)),
    get: (key) => sorted.find((kv) => kv.key === key),
    leaseRemaining: () => undefined,
    generation: 1,
  };
}

function member(id: number, addresses: string[], port?: number): KeyValue[] {
  const key = `/skydns/local/tf/worker${id}`;
  const lease = String(100 + id);
  const kv = (k: string, value: string) => ({
    key: k,
    value,
    lease,
    createRevision: id,
    modRevision: id,
  });
  return [
    kv(
      key,
      encodeLock({
        id,
        name: pattern.render(id),
        identity: `n${id}`,
        addresses,
        port,
        claimedAt: "",
      }),
    ),
    ...addresses.map((a, i) => kv(`${key}/ip${i + 1}`, encodeAddress(a, port))),
  ];
}

const NEXT: Reply = {
  rcode: Rcode.Refused,
  authoritative: false,
  answer: [],
  authority: [],
  additional: [],
  plugin: "next",
};

function handler(options: { port?: number; fallthrough?: string[]; ttl?: number } = {}) {
  return createIdetcdHandler({
    pattern,
    prefix: "/skydns",
    ttl: options.ttl ?? 30,
    port: options.port,
    fallthrough: options.fallthrough ?? [],
    source: source([
      ...member(1, ["10.0.0.1", "2001:db8::1"]),
      ...member(2, ["10.0.0.2"], 2222),
      ...member(10, ["2001:db8::a"]),
    ]),
    selfAddresses: () => ["10.0.0.1", "2001:db8::1"],
    now: () => 1_700_000_000,
  });
}

function ask(
  name: string,
  type: number,
  options: Parameters<typeof handler>[0] = {},
  cls: number = Class.INET,
) {
  const req = {
    question: { name, type, class: cls },
    qname: name.toLowerCase(),
  } as unknown as Request;
  return handler(options).serve(req, () => Promise.resolve(NEXT));
}

const data = (rrs: RR[]) =>
  rrs.map((r) => `${r.name} ${r.ttl} ${r.type} ${JSON.stringify(r.data)}`);

Deno.test("idetcd handler: A, AAAA, owner case, NODATA, NXDOMAIN", async () => {
  let r = await ask("Worker1.TF.local.", Type.A);
  assert.equal(r.rcode, Rcode.Success);
  assert.ok(r.authoritative);
  assert.deepEqual(data(r.answer), ['Worker1.TF.local. 30 1 "10.0.0.1"']);
  r = await ask("worker1.tf.local.", Type.AAAA);
  assert.deepEqual(data(r.answer), ['worker1.tf.local. 30 28 "2001:db8::1"']);
  r = await ask("worker2.tf.local.", Type.AAAA);
  assert.equal(r.rcode, Rcode.Success, "NODATA: the name exists without AAAA");
  assert.deepEqual(r.answer, []);
  assert.equal(r.authority[0].type, Type.SOA);
  assert.deepEqual(r.authority[0].data, {
    mname: "ns.dns.tf.local.",
    rname: "hostmaster.tf.local.",
    serial: 1_700_000_000,
    refresh: 7200,
    retry: 1800,
    expire: 86400,
    minimum: 5,
  });
  assert.equal(r.authority[0].name, "tf.local.");
  assert.equal(r.authority[0].ttl, 5, "negative answers are cached for at most 5 s by default");
  r = await ask("worker1.tf.local.", Type.TXT);
  assert.equal(r.rcode, Rcode.Success);
  assert.equal(r.authority.length, 1);
  r = await ask("worker3.tf.local.", Type.A);
  assert.equal(r.rcode, Rcode.NameError, "an unclaimed pattern name");
  assert.equal(r.authority[0].type, Type.SOA);
  for (const name of ["other.tf.local.", "ip1.worker1.tf.local.", "worker01.tf.local."]) {
    assert.equal((await ask(name, Type.A)).rcode, Rcode.NameError, name);
  }
  r = await ask("worker1.tf.local.", Type.ANY);
  assert.equal(r.answer.length, 2);
  assert.equal((await ask("worker3.tf.local.", Type.A, { ttl: 5 })).authority[0].ttl, 5);
});

Deno.test("idetcd handler: SRV per node and the _nodes members list", async () => {
  let r = await ask("worker2.tf.local.", Type.SRV);
  assert.deepEqual(data(r.answer), [
    'worker2.tf.local. 30 33 {"priority":0,"weight":100,"port":2222,"target":"worker2.tf.local."}',
  ]);
  assert.deepEqual(data(r.additional), ['worker2.tf.local. 30 1 "10.0.0.2"']);
  r = await ask("worker1.tf.local.", Type.SRV);
  assert.equal(r.answer.length, 0, "no port known: NODATA");
  r = await ask("worker1.tf.local.", Type.SRV, { port: 8470 });
  assert.equal((r.answer[0].data as { port: number }).port, 8470);
  r = await ask("_nodes.tf.local.", Type.SRV, { port: 8470 });
  assert.deepEqual(r.answer.map((a) => (a.data as { target: string; port: number })), [
    { priority: 0, weight: 100, port: 8470, target: "worker1.tf.local." },
    { priority: 0, weight: 100, port: 2222, target: "worker2.tf.local." },
    { priority: 0, weight: 100, port: 8470, target: "worker10.tf.local." },
  ], "ordered by ID, not by key");
  assert.equal(r.additional.length, 4);
  r = await ask("_nodes.tf.local.", Type.A);
  assert.deepEqual(r.answer.map((a) => a.data), ["10.0.0.1", "10.0.0.2"]);
  r = await ask("_nodes.tf.local.", Type.AAAA);
  assert.deepEqual(r.answer.map((a) => a.data), ["2001:db8::1", "2001:db8::a"]);
});

Deno.test("idetcd handler: apex, ns.dns, PTR, fallthrough and other zones", async () => {
  let r = await ask("tf.local.", Type.SOA);
  assert.equal(r.answer[0].type, Type.SOA);
  r = await ask("tf.local.", Type.NS);
  assert.deepEqual(data(r.answer), ['tf.local. 30 2 "ns.dns.tf.local."']);
  assert.deepEqual(data(r.additional), [
    'ns.dns.tf.local. 30 1 "10.0.0.1"',
    'ns.dns.tf.local. 30 28 "2001:db8::1"',
  ]);
  assert.equal((await ask("tf.local.", Type.A)).rcode, Rcode.Success);
  assert.equal((await ask("ns.dns.tf.local.", Type.A)).answer.length, 1);
  assert.equal((await ask("dns.tf.local.", Type.A)).rcode, Rcode.Success);
  r = await ask("2.0.0.10.in-addr.arpa.", Type.PTR);
  assert.deepEqual(data(r.answer), ['2.0.0.10.in-addr.arpa. 30 12 "worker2.tf.local."']);
  r = await ask(
    "a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
    Type.PTR,
  );
  assert.deepEqual(r.answer.map((a) => a.data), ["worker10.tf.local."]);
  assert.equal((await ask("9.0.0.10.in-addr.arpa.", Type.PTR)).plugin, "next");
  assert.equal((await ask("2.0.0.10.in-addr.arpa.", Type.A)).plugin, "next");
  assert.equal((await ask("example.org.", Type.A)).plugin, "next");
  assert.equal((await ask("worker1.tf.local.", Type.A, {}, Class.CHAOS)).plugin, "next");
  assert.equal((await ask("other.tf.local.", Type.A, { fallthrough: ["."] })).plugin, "next");
  assert.equal(
    (await ask("worker3.tf.local.", Type.A, { fallthrough: ["tf.local."] })).plugin,
    "next",
  );
  assert.equal(
    (await ask("other.tf.local.", Type.A, { fallthrough: ["x.org."] })).rcode,
    Rcode.NameError,
  );
  assert.equal(addressFromReverseName("1.0.0.010.in-addr.arpa."), undefined);
  assert.equal(addressFromReverseName("4.3.2.1.in-addr.arpa."), "1.2.3.4");
});

Deno.test("idetcd handler: this node's own unvouched name is SERVFAIL, never its address or NXDOMAIN", async () => {
  const kvs = [...member(1, ["10.0.0.1"]), ...member(2, ["10.0.0.2"])];
  let unvouched: { id: number; lease: string } | undefined = { id: 1, lease: "101" };
  const h = createIdetcdHandler({
    pattern,
    prefix: "/skydns",
    ttl: 30,
    fallthrough: [],
    source: source(kvs),
    selfAddresses: () => ["10.0.0.1"],
    unvouched: () => unvouched,
  });
  const q = (name: string, type: number = Type.A) =>
    h.serve(
      { question: { name, type, class: Class.INET }, qname: name } as unknown as Request,
      () => Promise.resolve(NEXT),
    );
  let r = await q("worker1.tf.local.");
  assert.equal(r.rcode, Rcode.ServerFailure);
  assert.deepEqual(r.answer, []);
  assert.equal(r.cacheGeneration, undefined, "not kept by the answer cache");
  r = await q("_nodes.tf.local.", Type.SRV);
  assert.deepEqual(r.answer.map((rr) => (rr.data as { target: string }).target), [
    "worker2.tf.local.",
  ]);
  assert.equal((await q("worker2.tf.local.")).rcode, Rcode.Success, "others still answered");
  // Once the copy shows the ID under another holder's lease, that holder is answered.
  unvouched = { id: 2, lease: "999" };
  r = await q("worker2.tf.local.");
  assert.equal(r.rcode, Rcode.Success);
  assert.deepEqual(data(r.answer), ['worker2.tf.local. 30 1 "10.0.0.2"']);
  unvouched = undefined;
  assert.deepEqual(data((await q("worker1.tf.local.")).answer), [
    'worker1.tf.local. 30 1 "10.0.0.1"',
  ]);
});
