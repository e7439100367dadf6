/**
 * The etcd handler while its copy has not loaded: the startup hook does not
 * hold the server back, and a failed load attempt turns queries into an
 * immediate SERVFAIL until the copy arrives. The mirror here is a stand-in
 * whose loading the test drives; tests/etcd_boot_test.ts does the same with
 * the real program and a real etcd.
 */

import assert from "node:assert/strict";
import { lowerName } from "../../dns/name.ts";
import { Rcode, Type } from "../../dns/types.ts";
import { createLogger } from "../../log.ts";
import type { Reply, Request } from "../../server/plugin.ts";
import { createEtcdHandler, type EtcdMirror } from "./handler.ts";
import { MemorySource } from "./testing.ts";

/** A mirror whose first load ends (or fails) when the test says so. */
function controlledMirror(source: MemorySource) {
  let loaded = false;
  let settle: () => void = () => {};
  const started = new Promise<void>((resolve) => (settle = resolve));
  const state = { errors: 0, lastError: undefined as string | undefined, starts: 0 };
  const mirror: EtcdMirror = {
    range: (p) => source.range(p),
    get: (k) => source.get(k),
    leaseRemaining: (l) => source.leaseRemaining(l),
    get generation() {
      return source.generation;
    },
    start: () => {
      state.starts++;
      return started;
    },
    isReady: () => loaded,
    status: () => ({ errors: state.errors, lastError: state.lastError }),
  };
  return {
    mirror,
    state,
    fail(error: string) {
      state.errors++;
      state.lastError = error;
    },
    load() {
      loaded = true;
      settle();
    },
    /** As Mirror.close: start() resolves without a copy. */
    close() {
      settle();
    },
  };
}

function request(name: string): Request {
  return {
    id: 1,
    opcode: 0,
    rd: true,
    cd: false,
    ad: false,
    question: { name, type: Type.A, class: 1 },
    qname: lowerName(name),
    edns: null,
    transport: "udp",
    remoteAddress: "127.0.0.1",
    remotePort: 40000,
    localAddress: "127.0.0.1",
    localPort: 53,
    size: 40,
    zone: ".",
    depth: 0,
    lookup: () => Promise.reject(new Error("no upstream")),

    observe: () => {},
  };
}

const NEXT: Reply = {
  rcode: Rcode.Refused,
  authoritative: false,
  answer: [],
  authority: [],
  additional: [],
  plugin: "next",
};

function handlerOver(mirror: EtcdMirror) {
  return createEtcdHandler(
    {
      zones: ["skydns.local."],
      fallthrough: [],
      lookup: { pathPrefix: "skydns", minLeaseTTL: 0, maxLeaseTTL: 0 },
    },
    mirror,
    createLogger("plugin/etcd", () => {}),
  );
}

/** The reply if `serve` settles before any timer runs, else "waited" (it awaited a timer). */
function withoutWaiting(reply: Promise<Reply>): Promise<Reply | "waited"> {
  return Promise.race([
    reply,
    new Promise<"waited">((resolve) => setTimeout(() => resolve("waited"), 0)),
  ]);
}

Deno.test("etcd handler: the startup hook returns though the first load neither ends nor fails", async () => {
  const source = new MemorySource();
  const fake = controlledMirror(source);
  const { plugin, start } = handlerOver(fake.mirror);
  await start(); // bounded by STARTUP_WAIT_MS; before, it waited for the load forever
  assert.equal(fake.state.starts, 1);
  assert.equal(plugin.ready?.(), false);
  // End the background wait for the first attempt (as a failure would), so
  // no timer outlives the test: a query waits for exactly that.
  fake.fail("14 UNAVAILABLE: No connection established");
  const reply = await plugin.serve(request("a.skydns.local."), () => Promise.resolve(NEXT));
  assert.equal(reply.rcode, Rcode.ServerFailure);
});

Deno.test("etcd handler: after a failed load attempt the zone SERVFAILs at once; the copy answers once loaded", async () => {
  const source = new MemorySource();
  source.set("a.skydns.local.", { host: "10.0.0.1" });
  const fake = controlledMirror(source);
  const { plugin, start } = handlerOver(fake.mirror);
  const starting = start();
  fake.fail("14 UNAVAILABLE: No connection established");
  await starting;

  for (let i = 0; i < 3; i++) {
    const reply = await withoutWaiting(
      plugin.serve(request("a.skydns.local."), () => Promise.resolve(NEXT)),
    );
    assert.notEqual(reply, "waited", "a query waited although etcd is known down");
    const r = reply as Reply;
    assert.equal(r.rcode, Rcode.ServerFailure);
    assert.equal(r.authoritative, true);
    assert.equal(r.authority[0]?.type, Type.SOA);
    assert.equal(r.authority[0]?.name, "skydns.local.");
    assert.equal(r.error, "etcd data not loaded yet: 14 UNAVAILABLE: No connection established");
    assert.equal(r.cacheGeneration, undefined, "a SERVFAIL for missing data is never kept");
  }
  // Other zones are not this plugin's: they go on down the chain.
  const other = await plugin.serve(request("example.org."), () => Promise.resolve(NEXT));
  assert.equal(other.plugin, "next");

  fake.load();
  const reply = await plugin.serve(request("a.skydns.local."), () => Promise.resolve(NEXT));
  assert.equal(reply.rcode, Rcode.Success);
  assert.equal(reply.answer[0]?.data, "10.0.0.1");
  assert.equal(plugin.ready?.(), true);
});

Deno.test("etcd handler: a query during the first attempt waits for it and answers from the copy", async () => {
  const source = new MemorySource();
  source.set("a.skydns.local.", { host: "10.0.0.1" });
  const fake = controlledMirror(source);
  const { plugin, start } = handlerOver(fake.mirror);
  const starting = start();
  const pending = plugin.serve(request("a.skydns.local."), () => Promise.resolve(NEXT));
  fake.load();
  await starting;
  const reply = await pending;
  assert.equal(reply.rcode, Rcode.Success);
  assert.equal(reply.answer[0]?.data, "10.0.0.1");
});

Deno.test("etcd handler: a mirror that closes before loading ends the wait; the zone SERVFAILs", async () => {
  const fake = controlledMirror(new MemorySource());
  const { plugin, start } = handlerOver(fake.mirror);
  const starting = start();
  fake.close();
  await starting;
  const reply = await plugin.serve(request("a.skydns.local."), () => Promise.resolve(NEXT));
  assert.equal(reply.rcode, Rcode.ServerFailure);
  assert.equal(reply.error, "etcd data not loaded yet (is etcd reachable?)");
});
