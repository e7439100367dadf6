import assert from "node:assert/strict";
import { freePort, waitFor } from "../../../tests/helpers/wait.ts";
import { message } from "../../../tests/helpers/dns.ts";
import type { Message } from "../../dns/wire.ts";
import { Class, Rcode, type RR, Type } from "../../dns/types.ts";
import { ERR_NO_HEALTHY, Forward, messageToReply, orderProxies, replyMatches } from "./forward.ts";
import { forwardPlugin } from "./mod.ts";
import { parseStanza } from "./setup.ts";
import {
  a,
  answering,
  ask,
  directivesOf,
  fakeRequest,
  type FakeServer,
  replyTo,
  serveChain,
  setupContext,
  soa as soaRecord,
  startFakeServer,
} from "./testkit.ts";

const soa = soaRecord();

/** A Forward built from Corefile text, with test-sized timeouts. */
function forwardFrom(body: string, timeouts = { readTimeoutMs: 300, totalTimeoutMs: 1_000 }) {
  return new Forward(parseStanza(directivesOf("forward", body)[0], Deno.cwd()), {
    ...timeouts,
    healthCheckTimeoutMs: 200,
  });
}

const silent = () => null;
const unreachable = () => Promise.reject(new Error("next must not be called"));

async function closeAll(...things: ({ close(): Promise<void> } | { stop(): Promise<void> })[]) {
  for (const t of things) await ("close" in t ? t.close() : t.stop());
}

Deno.test("forward: policies order upstreams as CoreDNS's", () => {
  const list = ["a", "b", "c"];
  assert.deepEqual(orderProxies("sequential", list, 5), ["a", "b", "c"]);
  assert.deepEqual(orderProxies("round_robin", list, 0), ["a", "b", "c"]);
  assert.deepEqual(orderProxies("round_robin", list, 1), ["b", "c", "a"]);
  assert.deepEqual(orderProxies("round_robin", list, 5), ["c", "a", "b"]);
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const order = orderProxies("random", list, i);
    assert.deepEqual([...order].sort(), list);
    seen.add(order.join(""));
  }
  assert.ok(seen.size > 1, "random policy never reordered");
  assert.deepEqual(list, ["a", "b", "c"], "input left alone");
});

Deno.test("forward: reply matching and conversion (request.Match, OPT dropped, flags kept)", () => {
  const req = fakeRequest("Www.Example.ORG.", Type.A);
  const query: Message = replyTo(message({
    id: 1,
    recursionDesired: true,
    question: [{ name: "WWW.example.org.", type: Type.A, class: 1 }],
  }));
  assert.equal(replyMatches(req, query), true, "qname compared case-insensitively");
  assert.equal(
    replyMatches(req, { ...query, question: [{ name: "other.org.", type: 1, class: 1 }] }),
    false,
  );
  assert.equal(
    replyMatches(req, { ...query, question: [{ name: "www.example.org.", type: 28, class: 1 }] }),
    false,
  );
  assert.equal(replyMatches(req, { ...query, question: [] }), false);
  assert.equal(replyMatches(req, { ...query, response: false }), false);

  const opt: RR = {
    name: ".",
    type: Type.OPT,
    class: 1232,
    ttl: 0,
    data: { udpSize: 1232, extendedRcode: 0, version: 0, dnssecOk: true, options: [] },
  };
  const reply = messageToReply({
    ...query,
    rcode: Rcode.NameError,
    authoritative: true,
    truncated: true,
    authenticData: true,
    authority: [soa],
    additional: [a("ns.example.org.", "192.0.2.1"), opt],
  });
  assert.equal(reply.rcode, Rcode.NameError);
  assert.equal(reply.authoritative, true);
  assert.equal(reply.truncated, true);
  assert.equal(reply.recursionAvailable, true);
  assert.equal(reply.authenticData, true);
  assert.equal(reply.plugin, "forward");
  assert.deepEqual(reply.additional.map((r) => r.type), [Type.A]);
});

Deno.test("forward: matches FROM minus except (FROM itself always matches)", () => {
  const f = forwardFrom("forward example.org 127.0.0.1 {\nexcept internal.example.org\n}");
  assert.equal(f.matches("www.example.org."), true);
  assert.equal(f.matches("example.org."), true);
  assert.equal(f.matches("a.internal.example.org."), false);
  assert.equal(f.matches("internal.example.org."), false);
  assert.equal(f.matches("example.com."), false);
  const g = forwardFrom("forward example.org 127.0.0.1 {\nexcept example.org\n}");
  assert.equal(g.matches("example.org."), true);
  assert.equal(g.matches("www.example.org."), false);
});

Deno.test("forward: relays answer, rcode, flags and raw records through real sockets", async () => {
  const upstream = startFakeServer((q) => {
    const name = q.question[0].name;
    if (name.startsWith("nx.")) return replyTo(q, { rcode: Rcode.NameError, authority: [soa] });
    return replyTo(q, {
      recursionAvailable: true,
      authenticData: true,
      answer: [
        a(name, "192.0.2.7", 123),
        { name, type: 65280, class: Class.INET, ttl: 60, data: new Uint8Array([1, 2, 3]) },
      ],
    });
  });
  const ctx = setupContext(directivesOf("forward", `forward . 127.0.0.1:${upstream.port}`));
  const plugin = await forwardPlugin.setup(ctx);
  const server = serveChain([plugin!]);
  try {
    const m = await ask(server.port, "WWW.Example.org.", Type.A, { dnssecOk: true });
    assert.equal(m.rcode, Rcode.Success);
    assert.equal(m.recursionAvailable, true);
    assert.equal(m.authenticData, true);
    assert.equal(m.authoritative, false);
    assert.equal(m.question[0].name, "WWW.Example.org.");
    assert.deepEqual(m.answer, [
      a("WWW.Example.org.", "192.0.2.7", 123),
      {
        name: "WWW.Example.org.",
        type: 65280,
        class: Class.INET,
        ttl: 60,
        data: new Uint8Array([1, 2, 3]),
      },
    ]);
    // The query went upstream as the client sent it: case, RD, EDNS0 with DO.
    const sent = upstream.received[0].query;
    assert.equal(sent.question[0].name, "WWW.Example.org.");
    assert.equal(sent.recursionDesired, true);
    const opt = sent.additional.find((r) => r.type === Type.OPT);
    assert.ok(opt);
    assert.equal((opt.data as { dnssecOk: boolean }).dnssecOk, true);

    const nx = await ask(server.port, "nx.example.org.", Type.A);
    assert.equal(nx.rcode, Rcode.NameError);
    assert.deepEqual(nx.authority, [soa]);
  } finally {
    await closeAll(server);
    await ctx.shutdown();
    await upstream.close();
  }
});

Deno.test("forward: upstream query IDs are random per query, not the client's", async () => {
  const upstream = startFakeServer((q) =>
    replyTo(q, { answer: [a(q.question[0].name, "192.0.2.1")] })
  );
  const f = forwardFrom(`forward . 127.0.0.1:${upstream.port}`);
  try {
    for (let i = 0; i < 4; i++) {
      const reply = await f.serve(fakeRequest("x.example.", Type.A), unreachable);
      assert.equal(reply.rcode, Rcode.Success);
    }
    const ids = upstream.received.map((r) => r.query.id);
    assert.ok(new Set(ids).size > 1, `ids not random: ${ids}`);
    assert.ok(ids.every((id) => id !== 4242), "client ID leaked upstream");
  } finally {
    await closeAll(f, upstream);
  }
});

function truncatingUpstream(): FakeServer {
  return startFakeServer((q, transport) => {
    const name = q.question[0].name;
    if (transport === "udp") return replyTo(q, { truncated: true });
    return replyTo(q, { answer: [1, 2, 3].map((i) => a(name, `192.0.2.${i}`)) });
  });
}

Deno.test("forward: TC over UDP is relayed and the client's TCP retry gets the full answer", async () => {
  const upstream = truncatingUpstream();
  const ctx = setupContext(directivesOf("forward", `forward . 127.0.0.1:${upstream.port}`));
  const server = serveChain([(await forwardPlugin.setup(ctx))!]);
  try {
    const udp = await ask(server.port, "big.example.", Type.A);
    assert.equal(udp.truncated, true);
    assert.equal(udp.answer.length, 0);
    const tcp = await ask(server.port, "big.example.", Type.A, { tcp: true });
    assert.equal(tcp.truncated, false);
    assert.equal(tcp.answer.length, 3);
    // As CoreDNS: the upstream transport follows the client's.
    assert.deepEqual(upstream.received.map((r) => r.transport), ["udp", "tcp"]);
  } finally {
    await closeAll(server);
    await ctx.shutdown();
    await upstream.close();
  }
});

Deno.test("forward: prefer_udp retries a truncated answer over TCP itself", async () => {
  const upstream = truncatingUpstream();
  const ctx = setupContext(
    directivesOf("forward", `forward . 127.0.0.1:${upstream.port} {\nprefer_udp\n}`),
  );
  const server = serveChain([(await forwardPlugin.setup(ctx))!]);
  try {
    const m = await ask(server.port, "big.example.", Type.A, { tcp: true });
    assert.equal(m.truncated, false);
    assert.equal(m.answer.length, 3);
    assert.deepEqual(upstream.received.map((r) => r.transport), ["udp", "tcp"]);
  } finally {
    await closeAll(server);
    await ctx.shutdown();
    await upstream.close();
  }
});

Deno.test("forward: force_tcp uses TCP even for UDP clients", async () => {
  const upstream = truncatingUpstream();
  const f = forwardFrom(`forward . 127.0.0.1:${upstream.port} {\nforce_tcp\n}`);
  try {
    const reply = await f.serve(fakeRequest("big.example.", Type.A), unreachable);
    assert.equal(reply.answer.length, 3);
    assert.deepEqual(upstream.received.map((r) => r.transport), ["tcp"]);
  } finally {
    await closeAll(f, upstream);
  }
});

Deno.test("forward: a dead upstream fails over to a live one, then is skipped once down", async () => {
  const dead = startFakeServer(silent);
  const live = startFakeServer((q) => replyTo(q, { answer: [a(q.question[0].name, "192.0.2.9")] }));
  const f = forwardFrom(
    `forward . 127.0.0.1:${dead.port} 127.0.0.1:${live.port} {\npolicy sequential\nhealth_check 50ms\n}`,
  );
  try {
    const first = await f.serve(fakeRequest("www.example.", Type.A), unreachable);
    assert.equal(first.rcode, Rcode.Success);
    assert.equal(first.answer[0].data, "192.0.2.9");
    assert.equal(dead.received.length >= 1, true);
    // The failed try started health checks; three failed probes (> max_fails 2) mark it down.
    await waitFor(() => f.proxies[0].down(2), { what: "dead upstream marked down" });
    const asked = dead.received.filter((r) => r.query.question[0].type === Type.A).length;
    const start = performance.now();
    const second = await f.serve(fakeRequest("www.example.", Type.A), unreachable);
    assert.equal(second.answer[0].data, "192.0.2.9");
    assert.ok(performance.now() - start < 250, "a down upstream must not be tried first");
    assert.equal(dead.received.filter((r) => r.query.question[0].type === Type.A).length, asked);
    assert.equal(f.proxies[1].down(2), false);
  } finally {
    await closeAll(f, dead, live);
  }
});

Deno.test("forward: probes are `<domain> NS` with RD per no_rec; a reply resets the count", async () => {
  const upstream = startFakeServer((q) => q.question[0].type === Type.NS ? replyTo(q) : null);
  const f = forwardFrom(
    `forward . 127.0.0.1:${upstream.port} {\nhealth_check 50ms no_rec domain Probe.Example\n}`,
  );
  try {
    const reply = await f.serve(fakeRequest("www.example.", Type.A), unreachable);
    assert.equal(reply.rcode, Rcode.ServerFailure);
    const probe = await waitFor(
      () => upstream.received.find((r) => r.query.question[0].type === Type.NS),
      { what: "health-check probe" },
    );
    assert.equal(probe.query.question[0].name, "probe.example.");
    assert.equal(probe.query.recursionDesired, false);
    assert.equal(probe.transport, "udp");
    await waitFor(() => f.proxies[0].fails === 0, { what: "healthy after probe" });
  } finally {
    await closeAll(f, upstream);
  }
});

Deno.test("forward: all upstreams dead -> SERVFAIL within the 5 s budget (real timeouts)", async () => {
  const dead1 = startFakeServer(silent);
  const dead2 = startFakeServer(silent);
  const ctx = setupContext(
    directivesOf("forward", `forward . 127.0.0.1:${dead1.port} 127.0.0.1:${dead2.port}`),
  );
  const server = serveChain([(await forwardPlugin.setup(ctx))!]);
  try {
    const start = performance.now();
    const m = await ask(server.port, "www.example.", Type.A, { timeoutMs: 9_000 });
    const elapsed = performance.now() - start;
    assert.equal(m.rcode, Rcode.ServerFailure);
    // At least the 5 s budget (no upper bound: the machine is shared; the ask's 9 s is the cap).
    assert.ok(elapsed >= 4_500, `took ${elapsed} ms`);
    // 2 s per try: both upstreams were tried before the budget ran out.
    assert.ok(dead1.received.length >= 1 && dead2.received.length >= 1);
  } finally {
    await closeAll(server);
    await ctx.shutdown();
    await closeAll(dead1, dead2);
  }
});

Deno.test("forward: SERVFAIL carries the upstream error; with all down a random one is still tried", async () => {
  const dead1 = startFakeServer(silent);
  const dead2 = startFakeServer(silent);
  const f = forwardFrom(
    `forward . 127.0.0.1:${dead1.port} 127.0.0.1:${dead2.port} {\nhealth_check 50ms\n}`,
  );
  const failfast = forwardFrom(
    `forward . 127.0.0.1:${dead1.port} 127.0.0.1:${dead2.port} {\nhealth_check 50ms\nfailfast_all_unhealthy_upstreams\n}`,
  );
  try {
    const reply = await f.serve(fakeRequest("www.example.", Type.A), unreachable);
    assert.equal(reply.rcode, Rcode.ServerFailure);
    assert.equal(reply.bare, true);
    assert.match(reply.error ?? "", /^read udp .*->127\.0\.0\.1:\d+: i\/o timeout$/);
    await waitFor(() => f.proxies.every((p) => p.down(2)), { what: "both marked down" });
    const before = dead1.received.length + dead2.received.length;
    const again = await f.serve(fakeRequest("www.example.", Type.A), unreachable);
    assert.equal(again.rcode, Rcode.ServerFailure);
    assert.ok(dead1.received.length + dead2.received.length > before, "no upstream tried");

    // failfast: no upstream is tried once all are down.
    await failfast.serve(fakeRequest("www.example.", Type.A), unreachable);
    await waitFor(() => failfast.proxies.every((p) => p.down(2)), { what: "failfast down" });
    const quick = await failfast.serve(fakeRequest("www.example.", Type.A), unreachable);
    assert.equal(quick.rcode, Rcode.ServerFailure);
    assert.equal(quick.error, ERR_NO_HEALTHY);
  } finally {
    await closeAll(f, failfast, dead1, dead2);
  }
});

Deno.test("forward: names outside FROM or in except go to the next plugin", async () => {
  const upstream = startFakeServer((q) =>
    replyTo(q, { answer: [a(q.question[0].name, "192.0.2.7")] })
  );
  const ctx = setupContext(
    directivesOf(
      "forward",
      `forward example.com 127.0.0.1:${upstream.port} {\nexcept internal.example.com\n}`,
    ),
  );
  const local = answering("local", (req) => [a(req.question.name, "10.9.9.9")]);
  const server = serveChain([(await forwardPlugin.setup(ctx))!, local]);
  try {
    assert.equal((await ask(server.port, "www.example.com.", Type.A)).answer[0].data, "192.0.2.7");
    assert.equal(
      (await ask(server.port, "db.internal.example.com.", Type.A)).answer[0].data,
      "10.9.9.9",
    );
    assert.equal((await ask(server.port, "www.example.org.", Type.A)).answer[0].data, "10.9.9.9");
    assert.equal(local.calls, 2);
    assert.equal(upstream.received.length, 1);
  } finally {
    await closeAll(server);
    await ctx.shutdown();
    await upstream.close();
  }
});

Deno.test("forward: a reply to another question is FORMERR; one with another ID is ignored", async () => {
  const upstream = startFakeServer((q) => {
    const name = q.question[0].name;
    if (name.startsWith("wrongname.")) {
      return replyTo(q, { question: [{ name: "other.example.", type: Type.A, class: 1 }] });
    }
    if (name.startsWith("wrongtype.")) {
      return replyTo(q, { question: [{ name, type: Type.AAAA, class: 1 }] });
    }
    if (name.startsWith("wrongid.")) return replyTo(q, { id: (q.id + 1) & 0xffff });
    return replyTo(q);
  });
  const ctx = setupContext(directivesOf("forward", `forward . 127.0.0.1:${upstream.port}`));
  const server = serveChain([(await forwardPlugin.setup(ctx))!]);
  const f = forwardFrom(`forward . 127.0.0.1:${upstream.port}`);
  try {
    const m = await ask(server.port, "wrongname.example.", Type.A);
    assert.equal(m.rcode, Rcode.FormatError);
    assert.equal(m.question[0].name, "wrongname.example.");
    assert.equal(m.answer.length, 0);
    assert.equal((await ask(server.port, "wrongtype.example.", Type.A)).rcode, Rcode.FormatError);
    const reply = await f.serve(fakeRequest("wrongid.example.", Type.A), unreachable);
    assert.equal(reply.rcode, Rcode.ServerFailure);
    assert.match(reply.error ?? "", /i\/o timeout/);
  } finally {
    await closeAll(server, f);
    await ctx.shutdown();
    await upstream.close();
  }
});

Deno.test("forward: max_concurrent refuses queries beyond the limit", async () => {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => release = resolve);
  const upstream = startFakeServer(async (q) => {
    await gate;
    return replyTo(q, { answer: [a(q.question[0].name, "192.0.2.1")] });
  });
  const f = forwardFrom(`forward . 127.0.0.1:${upstream.port} {\nmax_concurrent 1\n}`, {
    readTimeoutMs: 2_000,
    totalTimeoutMs: 5_000,
  });
  try {
    const first = f.serve(fakeRequest("one.example.", Type.A), unreachable);
    await waitFor(() => upstream.received.length === 1, { what: "first query upstream" });
    const second = await f.serve(fakeRequest("two.example.", Type.A), unreachable);
    assert.equal(second.rcode, Rcode.Refused);
    assert.equal(second.error, "concurrent queries exceeded maximum 1");
    release();
    assert.equal((await first).answer[0].data, "192.0.2.1");
  } finally {
    release();
    await closeAll(f, upstream);
  }
});

Deno.test("forward: failover tries the next upstream on listed rcodes; next hands over to the next stanza", async () => {
  const failing = startFakeServer((q) => replyTo(q, { rcode: Rcode.ServerFailure }));
  const nxdomain = startFakeServer((q) => replyTo(q, { rcode: Rcode.NameError, authority: [soa] }));
  const good = startFakeServer((q) => replyTo(q, { answer: [a(q.question[0].name, "192.0.2.5")] }));
  const f = forwardFrom(
    `forward . 127.0.0.1:${failing.port} 127.0.0.1:${good.port} {\npolicy sequential\nfailover SERVFAIL\n}`,
  );
  const ctx = setupContext(
    directivesOf(
      "forward",
      `forward . 127.0.0.1:${nxdomain.port} {\nnext NXDOMAIN\n}\nforward . 127.0.0.1:${good.port}`,
    ),
  );
  const server = serveChain([(await forwardPlugin.setup(ctx))!]);
  try {
    const reply = await f.serve(fakeRequest("www.example.", Type.A), unreachable);
    assert.equal(reply.answer[0].data, "192.0.2.5");
    assert.equal(failing.received.length, 1);
    // With nothing to fail over to, the SERVFAIL is the answer (asked once).
    const lone = forwardFrom(`forward . 127.0.0.1:${failing.port} {\nfailover SERVFAIL\n}`);
    const start = performance.now();
    const servfail = await lone.serve(fakeRequest("www.example.", Type.A), unreachable);
    await lone.stop();
    assert.equal(servfail.rcode, Rcode.ServerFailure);
    assert.equal(servfail.bare, undefined, "the upstream's own SERVFAIL, relayed");
    assert.equal(failing.received.length, 2);
    assert.ok(performance.now() - start < 200);
    const m = await ask(server.port, "www.example.", Type.A);
    assert.equal(m.rcode, Rcode.Success);
    assert.equal(m.answer[0].data, "192.0.2.5");
    assert.equal(nxdomain.received.length, 1);
  } finally {
    await closeAll(server, f);
    await ctx.shutdown();
    await closeAll(failing, nxdomain, good);
  }
});

Deno.test("forward: non-IN classes are forwarded (CH TXT)", async () => {
  const upstream = startFakeServer((q) =>
    replyTo(q, {
      answer: [{
        name: q.question[0].name,
        type: Type.TXT,
        class: Class.CHAOS,
        ttl: 0,
        data: ["x"],
      }],
    })
  );
  const ctx = setupContext(directivesOf("forward", `forward . 127.0.0.1:${upstream.port}`));
  const server = serveChain([(await forwardPlugin.setup(ctx))!]);
  try {
    const m = await ask(server.port, "version.bind.", Type.TXT, { cls: Class.CHAOS });
    assert.equal(m.rcode, Rcode.Success);
    assert.deepEqual(m.answer[0].data, ["x"]);
    assert.equal(upstream.received[0].query.question[0].class, Class.CHAOS);
  } finally {
    await closeAll(server);
    await ctx.shutdown();
    await upstream.close();
  }
});

Deno.test("forward: a refused TCP upstream fails with Go's dial error", async () => {
  const port = await freePort(); // nothing listens there
  const f = forwardFrom(`forward . 127.0.0.1:${port} {\nforce_tcp\nmax_fails 0\n}`, {
    readTimeoutMs: 300,
    totalTimeoutMs: 500,
  });
  try {
    const reply = await f.serve(fakeRequest("www.example.", Type.A), unreachable);
    assert.equal(reply.rcode, Rcode.ServerFailure);
    assert.match(reply.error ?? "", /^dial tcp 127\.0\.0\.1:\d+: connect: connection refused$/);
  } finally {
    await f.stop();
  }
});
