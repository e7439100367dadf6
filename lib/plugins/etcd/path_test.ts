import assert from "node:assert/strict";
import { clean } from "../../go/path.ts";
import {
  domainFromKey,
  etcdPath,
  InternalPanic,
  KeyNames,
  pathWithWildcard,
  prefixRoot,
} from "./path.ts";

Deno.test("etcdPath: labels reversed under the prefix (msg.Path, TestPath)", () => {
  for (const prefix of ["mydns", "skydns"]) {
    assert.equal(
      etcdPath("service.staging.skydns.local.", prefix),
      `/${prefix}/local/skydns/staging/service`,
    );
  }
});

Deno.test("etcdPath: prefix spellings that path.Join cleans to the same keys", () => {
  for (const prefix of ["skydns", "/skydns", "skydns/", "/skydns/", "//skydns//"]) {
    assert.equal(etcdPath("a.example.", prefix), "/skydns/example/a");
  }
  assert.equal(etcdPath("x.local.", "skydns/ka2"), "/skydns/ka2/local/x");
  assert.equal(etcdPath("1.0.0.10.in-addr.arpa.", "skydns"), "/skydns/arpa/in-addr/10/0/0/1");
  assert.equal(etcdPath(".", "skydns"), "/skydns");
  assert.equal(etcdPath("example.", ""), "/example");
  assert.equal(etcdPath(".", ""), "/");
});

Deno.test("etcdPath: labels that are path syntax are cleaned as Go's path.Join does", () => {
  assert.equal(etcdPath("a/b.example.", "skydns"), "/skydns/example/a/b");
  // Labels "x/", "", "/y": slashes inside labels merge into the key's own.
  assert.equal(etcdPath("x/../y.example.", "skydns"), "/skydns/example/y/x");
  // Escaped dots stay escaped in the key, so a label never becomes "..".
  assert.equal(etcdPath("x.\\.\\..example.", "skydns"), "/skydns/example/\\.\\./x");
  assert.equal(etcdPath("a..b.", "skydns"), "/skydns/b/a"); // the empty label collapses
});

Deno.test("domainFromKey: msg.Domain with and without the trailing slash (TestDomain)", () => {
  assert.equal(
    domainFromKey("/skydns/local/cluster/staging/service/"),
    "service.staging.cluster.local.",
  );
  assert.equal(
    domainFromKey("/skydns/local/cluster/staging/service"),
    "service.staging.cluster.local.",
  );
  assert.equal(domainFromKey("/skydns/test/skydns/ns/dns/a"), "a.dns.ns.skydns.test.");
});

Deno.test("domainFromKey: a multi-component prefix gives CoreDNS's wrong name", () => {
  assert.equal(domainFromKey("/skydns/ka2/local/x"), "x.local.ka2.");
});

Deno.test("domainFromKey: the prefix alone panics as in Go", () => {
  assert.throws(() => domainFromKey("/skydns"), InternalPanic);
  assert.throws(() => domainFromKey("/skydns/"), InternalPanic);
});

Deno.test("pathWithWildcard: cut before the first wildcard in key order", () => {
  assert.deepEqual(pathWithWildcard("*.region1.skydns.test.", "skydns"), {
    path: "/skydns/test/skydns/region1",
    wildcard: true,
  });
  assert.deepEqual(pathWithWildcard("prod.*.skydns.test.", "skydns"), {
    path: "/skydns/test/skydns",
    wildcard: true,
  });
  assert.deepEqual(pathWithWildcard("prod.any.skydns.test.", "skydns"), {
    path: "/skydns/test/skydns",
    wildcard: true,
  });
  // Two wildcards: the rightmost in DNS order (first met TLD-first) cuts.
  assert.deepEqual(pathWithWildcard("*.a.*.test.", "skydns"), {
    path: "/skydns/test",
    wildcard: true,
  });
  assert.deepEqual(pathWithWildcard("a.b.test.", "skydns"), {
    path: "/skydns/test/b/a",
    wildcard: false,
  });
  // Only exact labels count: "anyway" and "a*" are not wildcards.
  assert.equal(pathWithWildcard("anyway.a*.test.", "skydns").wildcard, false);
});

Deno.test('prefixRoot is Clean("/" + prefix + "/")', () => {
  for (const prefix of ["skydns", "/skydns/", "skydns/ka2", "", ".", "..", "a/../b", "..."]) {
    assert.equal(prefixRoot(prefix), clean("/" + prefix + "/"), prefix);
  }
});

Deno.test("KeyNames: msg.Domain of keys, remembered up to a byte bound", () => {
  const names = new KeyNames(300);
  assert.equal(names.of("/skydns/test/skydns/a"), "a.skydns.test.");
  assert.equal(names.of("/skydns/test/skydns/a"), "a.skydns.test.");
  assert.equal(names.size, 1);
  // Each entry costs 2 bytes per code unit plus 64: the third starts the memory over.
  names.of("/skydns/test/skydns/b");
  names.of("/skydns/test/skydns/c");
  assert.equal(names.size, 1);
  assert.equal(names.of("/skydns/test/skydns/b"), "b.skydns.test.");
  assert.throws(() => names.of("/skydns"), InternalPanic);
});
