import assert from "node:assert/strict";
import { CorefileError } from "../../corefile/types.ts";
import { Class, Rcode, type RR, Type } from "../../dns/types.ts";
import type { Reply } from "../../server/plugin.ts";
import { balance, loadbalancePlugin, roundRobin, shuffle } from "./mod.ts";
import { a, directivesOf, setupContext } from "../forward/testkit.ts";

const cname: RR = {
  name: "www.example.",
  type: Type.CNAME,
  class: Class.INET,
  ttl: 60,
  data: "web.example.",
};
const txt: RR = { name: "web.example.", type: Type.TXT, class: Class.INET, ttl: 60, data: ["t"] };
const mx = (pref: number): RR => ({
  name: "web.example.",
  type: Type.MX,
  class: Class.INET,
  ttl: 60,
  data: { preference: pref, exchange: `mx${pref}.example.` },
});
const addresses = [1, 2, 3, 4].map((i) => a("web.example.", `192.0.2.${i}`));

Deno.test("loadbalance: CNAMEs first, other records next, then shuffled A/AAAA, MX, NS", () => {
  // A "random" that always picks 0 turns Fisher-Yates into a rotation: deterministic.
  const out = roundRobin([addresses[0], mx(10), addresses[1], cname, txt, mx(20)], () => 0);
  assert.deepEqual(out.map((r) => r.type), [
    Type.CNAME,
    Type.TXT,
    Type.A,
    Type.A,
    Type.MX,
    Type.MX,
  ]);
  assert.deepEqual(shuffle([1, 2, 3], () => 0), [2, 3, 1]);
  const seen = new Set<string>();
  for (let i = 0; i < 100; i++) {
    const order = roundRobin(addresses).map((r) => r.data).join(",");
    seen.add(order);
  }
  assert.ok(seen.size > 1);
});

Deno.test("loadbalance: errors, bare replies and zone transfers are left alone", () => {
  const reply: Reply = {
    rcode: Rcode.NameError,
    authoritative: true,
    answer: addresses.slice(),
    authority: [],
    additional: [],
  };
  assert.equal(balance(reply, Type.A), reply);
  const ok = { ...reply, rcode: 0 };
  assert.equal(balance(ok, Type.AXFR), ok);
  const generated = balance({ ...ok, cacheGeneration: () => 1 }, Type.A);
  assert.equal(generated.cacheGeneration, undefined);
  assert.equal(generated.answer.length, 4);
});

Deno.test("loadbalance setup: round_robin or nothing; CoreDNS's error texts", () => {
  for (const body of ["loadbalance", "loadbalance round_robin"]) {
    const plugin = loadbalancePlugin.setup(setupContext(directivesOf("loadbalance", body)));
    assert.ok(plugin);
  }
  const error = (body: string) => {
    try {
      loadbalancePlugin.setup(setupContext(directivesOf("loadbalance", body)));
    } catch (err) {
      assert.ok(err instanceof CorefileError);
      return err.message;
    }
    assert.fail(`no error for ${body}`);
  };
  assert.equal(error("loadbalance fastest"), "unknown policy: fastest");
  assert.equal(error("loadbalance round_robin x"), "unknown property for round_robin");
  assert.equal(error("loadbalance {\nprefer 10.0.0.0/8\n}"), "unknown property 'prefer'");
  assert.match(error("loadbalance weighted w.txt"), /not supported by idetcd/);
});
