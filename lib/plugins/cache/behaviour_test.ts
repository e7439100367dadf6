import assert from "node:assert/strict";
import { waitFor } from "../../../tests/helpers/wait.ts";
import { Rcode, Type } from "../../dns/types.ts";
import { cachePlugin } from "./mod.ts";
import { forwardPlugin } from "../forward/mod.ts";
import {
  a,
  answering,
  ask,
  directivesOf,
  replyTo,
  serveChain,
  setupContext,
  soa as soaRecord,
  startFakeServer,
} from "../forward/testkit.ts";

const soa = soaRecord();

async function cacheChain(body: string, backend: Parameters<typeof serveChain>[0][number]) {
  const ctx = setupContext(directivesOf("cache", body));
  const cache = (await cachePlugin.setup(ctx))!;
  const server = serveChain([cache, backend]);
  return {
    port: server.port,
    async close() {
      await server.close();
      await ctx.shutdown();
    },
  };
}

Deno.test("cache over sockets: TTL counts down across queries; the backend is asked once", async () => {
  const backend = answering("etcd", (req) => [a(req.question.name, "10.0.0.1", 300)], {
    authoritative: true,
  });
  const server = await cacheChain("cache", backend);
  try {
    const first = await ask(server.port, "www.example.org.", Type.A);
    assert.equal(first.answer[0].ttl, 300);
    const later = await waitFor(async () => {
      const m = await ask(server.port, "www.example.org.", Type.A);
      return m.answer[0].ttl < 300 ? m : null;
    }, { timeoutMs: 3_000, intervalMs: 100, what: "TTL to drop below 300" });
    assert.ok(later.answer[0].ttl >= 298, `TTL ${later.answer[0].ttl} dropped by one second`);
    assert.equal(later.authoritative, true);
    assert.equal(backend.calls, 1);
  } finally {
    await server.close();
  }
});

Deno.test("cache over sockets: NXDOMAIN with SOA is cached with the SOA's TTL", async () => {
  const backend = answering("etcd", () => [], { rcode: Rcode.NameError, authority: [soa] });
  const server = await cacheChain("cache", backend);
  try {
    const first = await ask(server.port, "missing.example.org.", Type.A);
    assert.equal(first.rcode, Rcode.NameError);
    assert.equal(first.authority[0].ttl, 30);
    const second = await ask(server.port, "missing.example.org.", Type.A);
    assert.equal(second.rcode, Rcode.NameError);
    assert.equal(second.authority[0].type, Type.SOA);
    assert.ok(second.authority[0].ttl <= 30);
    assert.equal(backend.calls, 1);
  } finally {
    await server.close();
  }
});

Deno.test("cache over sockets: DO and CD queries are cached separately", async () => {
  const backend = answering("etcd", (req) => [a(req.question.name, "10.0.0.1", 300)]);
  const server = await cacheChain("cache", backend);
  try {
    const variants = [{}, { dnssecOk: true }, { checkingDisabled: true }];
    for (const v of variants) await ask(server.port, "k.example.org.", Type.A, v);
    assert.equal(backend.calls, 3);
    for (const v of variants) await ask(server.port, "k.example.org.", Type.A, v);
    await ask(server.port, "K.EXAMPLE.org.", Type.A);
    assert.equal(backend.calls, 3);
  } finally {
    await server.close();
  }
});

Deno.test("cache over sockets: in front of forward, the upstream's TTL comes back and counts down", async () => {
  const upstream = startFakeServer((q) =>
    replyTo(q, { answer: [a(q.question[0].name, "192.0.2.44", 120)] })
  );
  const fctx = setupContext(directivesOf("forward", `forward . 127.0.0.1:${upstream.port}`));
  const forward = (await forwardPlugin.setup(fctx))!;
  const server = await cacheChain("cache", forward);
  try {
    assert.equal((await ask(server.port, "up.example.", Type.A)).answer[0].ttl, 120);
    const hit = await waitFor(async () => {
      const m = await ask(server.port, "up.example.", Type.A);
      return m.answer[0].ttl < 120 ? m : null;
    }, { timeoutMs: 3_000, intervalMs: 100, what: "TTL to drop" });
    assert.equal(hit.authoritative, true, "cached replies have AA");
    assert.equal(upstream.received.length, 1);
  } finally {
    await server.close();
    await fctx.shutdown();
    await upstream.close();
  }
});
