import assert from "node:assert/strict";
import {
  fqdn,
  isDomainName,
  isFqdn,
  isSubdomain,
  joinLabels,
  matchZone,
  nextDot,
  nextLabel,
  parentName,
  presentationName,
  reverseName,
  splitLabels,
} from "./name.ts";

Deno.test("names: escaped dots are not label boundaries", () => {
  assert.equal(nextDot("a\\.b.c."), 4);
  assert.equal(nextDot("a\\\\.b."), 3);
  assert.equal(nextDot("a\\046b.c."), 6);
  assert.equal(isSubdomain("example.org.", "www.example.org."), true);
  assert.equal(isSubdomain("example.org.", "x\\.example.org."), false);
  assert.equal(isSubdomain("example.org.", "x\\\\.example.org."), true);
  assert.equal(isSubdomain("example.org.", "EXAMPLE.ORG"), true);
  assert.equal(isSubdomain(".", "anything."), true);
  assert.equal(isSubdomain("org.", "borg."), false);
});

Deno.test("names: zones, parents and reverse names", () => {
  assert.equal(matchZone(["org.", "example.org."], "a.example.org."), "example.org.");
  assert.equal(matchZone(["example.com."], "a.example.org."), undefined);
  assert.equal(parentName("a.b."), "b.");
  assert.equal(parentName("b."), ".");
  assert.equal(parentName("."), undefined);
  assert.equal(reverseName("10.0.0.1"), "1.0.0.10.in-addr.arpa.");
  assert.equal(
    reverseName("2001:db8::1"),
    "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.",
  );
});

Deno.test("names: labels split at unescaped dots only, escapes kept (miekg's SplitDomainName)", () => {
  assert.deepEqual(splitLabels("a.b.c."), ["a", "b", "c"]);
  assert.deepEqual(splitLabels("a\\.b.c."), ["a\\.b", "c"]);
  assert.deepEqual(splitLabels("a\\\\.b."), ["a\\\\", "b"]);
  assert.deepEqual(splitLabels("my\\ printer._ipp._tcp.local."), [
    "my\\ printer",
    "_ipp",
    "_tcp",
    "local",
  ]);
  assert.deepEqual(splitLabels("."), []);
  assert.equal(parentName("a\\.b.c."), "c.");
});

Deno.test("names: isFqdn and fqdn see an escaped final dot (miekg's IsFqdn, Fqdn)", () => {
  assert.equal(isFqdn("example.org."), true);
  assert.equal(isFqdn("example.org"), false);
  assert.equal(isFqdn("a\\."), false);
  assert.equal(isFqdn("a\\\\."), true);
  assert.equal(fqdn("a\\."), "a\\..");
  assert.equal(fqdn("example.org"), "example.org.");
  assert.equal(fqdn("."), ".");
  assert.deepEqual(splitLabels(fqdn("a\\.")), ["a\\."]);
  assert.equal(isSubdomain("a\\.", "x.a\\.."), true);
});

Deno.test("names: isDomainName counts escapes as one octet (miekg's IsDomainName)", () => {
  assert.equal(isDomainName("example.org"), true);
  assert.equal(isDomainName("a..b"), false);
  assert.equal(isDomainName(""), false);
  assert.equal(isDomainName("x".repeat(63) + ".org"), true);
  assert.equal(isDomainName("x".repeat(64) + ".org"), false);
  assert.equal(isDomainName("\\065".repeat(63) + ".org"), true);
});

Deno.test("joinLabels is dnsutil.Join", () => {
  assert.equal(joinLabels(["ns.dns", "skydns.test."]), "ns.dns.skydns.test.");
  assert.equal(joinLabels(["ns.dns", "."]), "ns.dns.");
  assert.equal(joinLabels(["hostmaster", "."]), "hostmaster.");
  assert.equal(joinLabels(["a", "b"]), "a.b.");
  assert.throws(() => joinLabels([]), RangeError);
});

Deno.test("splitLabels and nextLabel follow miekg/dns (the etcd plugin's cases), escapes included", () => {
  assert.deepEqual(splitLabels("a.b.c."), ["a", "b", "c"]);
  assert.deepEqual(splitLabels("a.b.c"), ["a", "b", "c"]);
  assert.deepEqual(splitLabels("."), []);
  assert.deepEqual(splitLabels(""), []);
  assert.deepEqual(splitLabels("a\\.b.c."), ["a\\.b", "c"]);
  assert.deepEqual(splitLabels("a\\\\.b."), ["a\\\\", "b"]);
  assert.deepEqual(nextLabel("a.b.", 0), [2, false]);
  assert.deepEqual(nextLabel("a.b.", 2), [4, true]);
  assert.equal(isFqdn("a."), true);
  assert.equal(isFqdn("a\\."), false);
  assert.equal(isFqdn("a\\\\."), true);
});

Deno.test("presentationName escapes as miekg/dns sprintName", () => {
  assert.equal(presentationName("www.example.org."), "www.example.org.");
  assert.equal(presentationName("a b.example."), "a\\ b.example.");
  assert.equal(presentationName("ä.example."), "\\195\\164.example.");
  assert.equal(presentationName("a;b."), "a\\;b.");
  // An escape before anything needs escaping is kept as written; after, it is normalised.
  assert.equal(presentationName("\\a.b."), "\\a.b.");
  assert.equal(presentationName("x y.\\a."), "x\\ y.a.");
  assert.equal(presentationName("\\065."), "\\065.");
  assert.equal(presentationName("a\\"), "a");
});
