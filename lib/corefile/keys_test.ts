import { deepStrictEqual as equal, ok } from "node:assert/strict";
import { isDomainName } from "../dns/name.ts";
import { normalizeZones, parseKey, splitScheme } from "./keys.ts";
import { CorefileError, type Token } from "./types.ts";

function token(text: string, line = 1): Token {
  return { text, file: "Corefile", line };
}

function canonical(text: string, defaultPort = 53): string[] {
  return parseKey(token(text), defaultPort).map((k) => k.canonical);
}

function keyError(text: string): CorefileError {
  try {
    parseKey(token(text, 7), 53);
  } catch (err) {
    ok(err instanceof CorefileError);
    equal(err.line, 7);
    return err;
  }
  throw new Error(`expected ${text} to be rejected`);
}

Deno.test("keys: the spec's canonical key table", () => {
  const table: [string, string][] = [
    ["example.org", "dns://example.org.:53"],
    ["EXAMPLE.ORG", "dns://example.org.:53"],
    ["example.org:1053", "dns://example.org.:1053"],
    ["tls://example.org", "tls://example.org.:853"],
    ["grpc://example.org", "grpc://example.org.:443"],
    ["https://example.org.", "https://example.org.:443"],
    ["quic://example.org", "quic://example.org.:853"],
    ["https3://example.org", "https3://example.org.:443"],
    ["dns://example.org", "dns://example.org.:53"],
    [".", "dns://.:53"],
    [".:53", "dns://.:53"],
    ["dns://.:1053", "dns://.:1053"],
  ];
  for (const [key, expected] of table) equal(canonical(key), [expected], key);
});

Deno.test("keys: fields of a parsed key", () => {
  const tok = token("TLS://Example.Org:8853");
  // Scheme prefixes are case-sensitive, so "TLS://" is part of the name.
  equal(parseKey(tok, 53)[0].scheme, "dns");
  const [key] = parseKey(token("tls://Example.Org:8853"), 53);
  equal({ ...key, token: undefined }, {
    scheme: "tls",
    zone: "example.org.",
    port: 8853,
    canonical: "tls://example.org.:8853",
    token: undefined,
  });
});

Deno.test("keys: -dns.port only changes the default of dns keys", () => {
  equal(canonical("example.org", 1053), ["dns://example.org.:1053"]);
  equal(canonical("example.org:53", 1053), ["dns://example.org.:53"]);
  equal(canonical("tls://example.org", 1053), ["tls://example.org.:853"]);
});

Deno.test("keys: unix keys have no default port", () => {
  const [key] = parseKey(token("unix://example.org"), 53);
  equal([key.scheme, key.port, key.canonical], ["unix", 0, "unix://example.org.:"]);
});

Deno.test("keys: ports are read like Go's strconv.Atoi", () => {
  equal(canonical("a.org:0053"), ["dns://a.org.:53"]);
  equal(canonical("a.org:+53"), ["dns://a.org.:53"]);
  // Not a number: the colon stays in the zone name.
  equal(canonical("a.org:x"), ["dns://a.org:x.:53"]);
});

Deno.test("keys: errors", () => {
  equal(keyError("example.org:").message, 'expecting data after last colon: "example.org:"');
  equal(keyError("dns://").message, 'expecting data after last colon: ""');
  equal(keyError(":53").message, "zone is not a valid domain name: ");
  equal(keyError("a..b").message, "zone is not a valid domain name: a..b");
  equal(
    keyError("x".repeat(64) + ".org").message,
    `zone is not a valid domain name: ${"x".repeat(64)}.org`,
  );
  equal(keyError("a".repeat(256)).message, "specified zone is too long: 256 > 255");
  // 255 octets pass, but the fully qualified form (256) is re-checked and fails.
  const name255 = ["a", "b", "c", "d"].map((c) => c.repeat(63)).join(".");
  equal(name255.length, 255);
  equal(keyError(name255).message, "specified zone is too long: 256 > 255");
  // Written fully qualified it is 256 octets, too long as typed.
  equal(keyError(name255 + ".").message, "specified zone is too long: 256 > 255");
  const name254 = name255.slice(1);
  equal(canonical(name254 + "."), [`dns://${name254}.:53`]);
});

Deno.test("keys: IPv4 CIDR keys become reverse zones", () => {
  equal(canonical("10.0.0.0/24"), ["dns://0.0.10.in-addr.arpa.:53"]);
  equal(canonical("10.0.0.0/8"), ["dns://10.in-addr.arpa.:53"]);
  equal(canonical("10.0.0.0/32"), ["dns://0.0.0.10.in-addr.arpa.:53"]);
  equal(canonical("0.0.0.0/0"), ["dns://in-addr.arpa.:53"]);
  equal(canonical("10.0.0.0/24:1053"), ["dns://0.0.10.in-addr.arpa.:1053"]);
  // Host bits are cleared first.
  equal(canonical("10.0.0.77/24"), ["dns://0.0.10.in-addr.arpa.:53"]);
});

Deno.test("keys: a non-octet mask expands into several zones", () => {
  equal(canonical("10.0.0.0/15"), ["dns://0.10.in-addr.arpa.:53", "dns://1.10.in-addr.arpa.:53"]);
  const zones = parseKey(token("192.168.1.0/25"), 53).map((k) => k.zone);
  equal(zones.length, 128);
  equal(zones, Array.from({ length: 128 }, (_, i) => `${i}.1.168.192.in-addr.arpa.`));
  equal(parseKey(token("10.0.0.0/1"), 53).length, 128);
  equal(parseKey(token("172.16.0.0/12"), 53).map((k) => k.zone).slice(0, 2), [
    "16.172.in-addr.arpa.",
    "17.172.in-addr.arpa.",
  ]);
});

Deno.test("keys: IPv6 CIDR keys become ip6.arpa nibble zones", () => {
  equal(canonical("fd00::/8"), ["dns://d.f.ip6.arpa.:53"]);
  equal(canonical("2001:DB8::/32"), ["dns://8.b.d.0.1.0.0.2.ip6.arpa.:53"]);
  equal(parseKey(token("2001:db8::/30"), 53).map((k) => k.zone), [
    "8.b.d.0.1.0.0.2.ip6.arpa.",
    "9.b.d.0.1.0.0.2.ip6.arpa.",
    "a.b.d.0.1.0.0.2.ip6.arpa.",
    "b.b.d.0.1.0.0.2.ip6.arpa.",
  ]);
  equal(canonical("2001:db8:1::/48:1053"), ["dns://1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.:1053"]);
  equal(canonical("1::/0"), ["dns://ip6.arpa.:53"]);
});

Deno.test("keys: CIDRs starting with ':' or with '0' and a ':' are rejected", () => {
  equal(keyError("::1/128").message, "invalid CIDR ::1/128");
  equal(keyError("::/0").message, "invalid CIDR ::/0");
  equal(keyError("0:0::1/64").message, "invalid CIDR 0:0::1/64");
  equal(keyError("::ffff:10.0.0.0/104").message, "invalid CIDR ::ffff:10.0.0.0/104");
});

Deno.test("keys: strings that are not CIDRs are ordinary names", () => {
  equal(canonical("10.0.0.0/33"), ["dns://10.0.0.0/33.:53"]);
  equal(canonical("010.0.0.0/8"), ["dns://010.0.0.0/8.:53"]);
  equal(canonical("10.0.0/8"), ["dns://10.0.0/8.:53"]);
  equal(canonical("10.0.0.0"), ["dns://10.0.0.0.:53"]);
});

Deno.test("keys: splitScheme", () => {
  equal(splitScheme("https3://a"), { scheme: "https3", rest: "a" });
  equal(splitScheme("https://a"), { scheme: "https", rest: "a" });
  equal(splitScheme("a.org"), { scheme: "dns", rest: "a.org" });
  equal(splitScheme("http://a.org"), { scheme: "dns", rest: "http://a.org" });
});

Deno.test("keys: isDomainName is liberal but bounds labels and length", () => {
  ok(isDomainName("."));
  ok(isDomainName("example.org"));
  ok(isDomainName("ex ample!.org"));
  ok(isDomainName("a\\.b.org"));
  ok(isDomainName("\\065.org"));
  ok(!isDomainName(""));
  ok(!isDomainName(".."));
  ok(!isDomainName("a..org"));
  ok(isDomainName("x".repeat(63)));
  ok(!isDomainName("x".repeat(64)));
  // An escaped octet counts as one: 63 escapes fit a label.
  ok(isDomainName("\\000".repeat(63)));
  ok(!isDomainName("\\000".repeat(64)));
  // Length is counted in UTF-8 octets.
  ok(isDomainName("é".repeat(31)));
  ok(!isDomainName("é".repeat(32)));
});

Deno.test("keys: normalizeZones (OriginsFromArgsOrServerBlock)", () => {
  equal(
    normalizeZones([
      "dns://Example.ORG:53",
      "10.0.0.0/15",
      "bad:",
      "tls://a.org",
      "::1/128",
      "b.org.",
    ]),
    ["example.org.", "0.10.in-addr.arpa.", "1.10.in-addr.arpa.", "a.org.", "b.org."],
  );
  equal(normalizeZones([], ["example.org."]), ["example.org."]);
  equal(normalizeZones([]), []);
  equal(normalizeZones(["."]), ["."]);
});
