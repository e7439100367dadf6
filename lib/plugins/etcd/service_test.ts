import assert from "node:assert/strict";
import { Type } from "../../dns/types.ts";
import { goJSONSyntaxError } from "./gojson.ts";
import {
  computeTTL,
  decodeKeyValue,
  decodeServiceValue,
  group,
  hostType,
  serviceOf,
  split255,
  targetStrip,
  txtStrings,
} from "./service.ts";
import { MemorySource } from "./testing.ts";

Deno.test("hostType: the TestType table", () => {
  const cases: [string, boolean, string, number][] = [
    ["example.org", false, "", Type.CNAME],
    ["127.0.0.1", false, "", Type.A],
    ["2000::3", false, "", Type.AAAA],
    ["2000..3", false, "", Type.CNAME],
    ["127.0.0.257", false, "", Type.CNAME],
    ["127.0.0.252", true, "", Type.A],
    ["127.0.0.252", true, "a", Type.A],
    ["127.0.0.254", false, "a", Type.A],
  ];
  for (const [host, _mail, text, want] of cases) {
    assert.equal(hostType(host, text).type, want, `${host} ${text}`);
  }
});

Deno.test("hostType: names with text are TXT, an empty host with text too", () => {
  assert.equal(hostType("example.org", "hello").type, Type.TXT);
  assert.equal(hostType("", "hello").type, Type.TXT);
  assert.equal(hostType("", "").type, Type.CNAME);
});

Deno.test("hostType: Go's ParseIP edge cases and the address text", () => {
  assert.deepEqual(hostType("::ffff:1.2.3.4", ""), { type: Type.A, address: "1.2.3.4" });
  assert.deepEqual(hostType("010.0.0.1", ""), { type: Type.CNAME, address: "" });
  assert.deepEqual(hostType("fe80::1%eth0", ""), { type: Type.CNAME, address: "" });
  assert.deepEqual(hostType("1.2.3", ""), { type: Type.CNAME, address: "" });
  assert.deepEqual(hostType("1.2.3.4.", ""), { type: Type.CNAME, address: "" });
  assert.deepEqual(hostType("::", ""), { type: Type.AAAA, address: "::" });
  assert.deepEqual(hostType("2001:DB8:0:0:0:0:0:1", ""), {
    type: Type.AAAA,
    address: "2001:db8::1",
  });
  assert.deepEqual(hostType("2001:db8::1.2.3.4", ""), {
    type: Type.AAAA,
    address: "2001:db8::102:304",
  });
  assert.deepEqual(hostType("1:0:0:2:0:0:0:3", ""), { type: Type.AAAA, address: "1:0:0:2::3" });
  // The parser's own edge cases (Go's net.ParseIP) are lib/go/ip_test.ts's.
  assert.deepEqual(hostType("1::2::3", ""), { type: Type.CNAME, address: "" });
  assert.deepEqual(hostType("1:2:3:4:5:6:7::8", ""), { type: Type.CNAME, address: "" });
  assert.deepEqual(hostType("0.0.0.0", ""), { type: Type.A, address: "0.0.0.0" });
});

Deno.test("split255: the service_test sizes and the exact-multiple quirk", () => {
  assert.deepEqual(split255("abc"), ["abc"]);
  assert.deepEqual(split255("a".repeat(254)), ["a".repeat(254)]);
  assert.deepEqual(split255("a".repeat(255)), ["a".repeat(255), ""]);
  assert.deepEqual(split255("a".repeat(255) + "b"), ["a".repeat(255), "b"]);
  const s511 = split255("a".repeat(511));
  assert.equal(s511.length, 3);
  assert.equal(s511[2], "a");
  assert.deepEqual(split255("a".repeat(510)), ["a".repeat(255), "a".repeat(255), ""]);
});

Deno.test("split255: counts UTF-8 bytes and never cuts a character", () => {
  // 127 two-byte characters are 254 bytes: one string.
  assert.deepEqual(split255("é".repeat(127)), ["é".repeat(127)]);
  // 128 are 256 bytes: 255 would cut the last character, so the chunk stops at 254.
  assert.deepEqual(split255("é".repeat(128)), ["é".repeat(127), "é"]);
  for (const chunk of split255("€".repeat(300))) {
    assert.ok(new TextEncoder().encode(chunk).length <= 255);
  }
});

Deno.test("txtStrings: presentation escapes collapse as miekg/dns packs them", () => {
  assert.deepEqual(txtStrings('a\\"b'), ['a"b']);
  assert.deepEqual(txtStrings("a\\065b"), ["aAb"]);
  assert.deepEqual(txtStrings("a\\\\b"), ["a\\b"]);
  assert.deepEqual(txtStrings("trailing\\"), ["trailing"]);
  assert.deepEqual(txtStrings("plain text"), ["plain text"]);
});

Deno.test("targetStrip: drops leftmost labels, keeps the name on overshoot", () => {
  assert.equal(targetStrip("a.targetstrip.skydns.test.", 1), "targetstrip.skydns.test.");
  assert.equal(targetStrip("a.targetstrip.skydns.test.", 2), "skydns.test.");
  assert.equal(targetStrip("a.targetstrip.skydns.test.", 3), "test.");
  assert.equal(targetStrip("a.targetstrip.skydns.test.", 4), "a.targetstrip.skydns.test.");
  assert.equal(targetStrip("a.b.", 9), "a.b.");
  assert.equal(targetStrip("a.b.", 0), "a.b.");
  assert.equal(targetStrip("a.b.", -1), "a.b.");
});

type G = { host: string; group: string; key: string };

Deno.test("group: the TestGroup table", () => {
  const g = (host: string, grp: string, key: string): G => ({ host, group: grp, key });
  const cases: [G[], number, string[]?][] = [
    [
      [g("127.0.0.1", "g1", "b/sub/dom1/skydns/test"), g("127.0.0.2", "g2", "a/dom1/skydns/test")],
      1,
      [
        "a/dom1/skydns/test",
      ],
    ],
    [[g("server1", "g1", "region1/skydns/test"), g("server2", "g2", "region1/skydns/test")], 2],
    [[
      g("server1", "g1", "a/dom/region1/skydns/test"),
      g("server2", "g2", "a/subdom/dom/region1/skydns/test"),
    ], 1],
    [[
      g("server1", "g1", "a/dom/region1/skydns/test"),
      g("server2", "g2", "a/subdom/dom/region1/skydns/test"),
      g("server2", "", "b/subdom/dom/region1/skydns/test"),
    ], 2],
    [[
      g("server1", "g1", "a/dom/region1/skydns/test"),
      g("server1", "", "b/dom/region1/skydns/test"),
      g("server2", "g2", "a/subdom/dom/region1/skydns/test"),
    ], 2],
    [[
      g("server1", "g5", "a/dom/region1/skydns/test"),
      g("server1", "", "b/dom/region1/skydns/test"),
      g("server2", "g5", "a/subdom/dom/region1/skydns/test"),
    ], 3],
    [[g("server1", "g6", "a/dom/region1/skydns/test")], 1],
    [[g("server1", "", "a/dom/region1/skydns/test")], 1],
  ];
  for (const [input, size, keys] of cases) {
    const out = group(input);
    assert.equal(out.length, size, JSON.stringify(input));
    if (keys) assert.deepEqual(out.map((s) => s.key), keys);
  }
  assert.deepEqual(group([]), []);
});

Deno.test("computeTTL: the ttl_test table (no client: the lease is never consulted)", () => {
  const cases: [number, number, number, number][] = [
    // record ttl, min, max, want
    [0, 0, 0, 300],
    [0, 0, 0, 300],
    [300, 0, 0, 300],
    [120, 0, 0, 120],
    [0, 60, 3600, 300],
    [0, 0, 0, 300],
    [0, 0, 0, 300],
  ];
  for (const [ttl, min, max, want] of cases) {
    assert.equal(computeTTL(ttl, undefined, min, max), want);
  }
});

Deno.test("computeTTL: lease TTLs are clamped to [min, max] and combined with the record's", () => {
  assert.equal(computeTTL(0, 100), 100);
  assert.equal(computeTTL(0, 5), 30); // below the default minimum
  assert.equal(computeTTL(0, 100_000), 86400); // above the default maximum
  assert.equal(computeTTL(0, 5, 10, 60), 10);
  assert.equal(computeTTL(0, 600, 10, 60), 60);
  assert.equal(computeTTL(120, 600), 120); // the smaller of the two
  assert.equal(computeTTL(600, 120), 120);
  assert.equal(computeTTL(60, 10), 30); // clamped lease 30 < record 60
  assert.equal(computeTTL(0, 0), 300); // expired lease: as if none
  assert.equal(computeTTL(0, -1), 300);
  assert.equal(computeTTL(20, 0.5), 20); // less than a second counts as 0
  assert.equal(computeTTL(0, 99.9), 99);
});

Deno.test("decodeServiceValue: fields, defaults, Go's 16-bit conversions", () => {
  const v = decodeServiceValue(
    '{"host":"10.0.0.1","port":8080,"priority":5,"weight":7,"text":"t","mail":true,"ttl":60,"targetstrip":1,"group":"g"}',
  );
  assert.ok(typeof v !== "string");
  assert.equal(v.host, "10.0.0.1");
  assert.equal(v.port, 8080);
  assert.equal(v.priority, 5);
  assert.equal(v.weight, 7);
  assert.equal(v.text, "t");
  assert.equal(v.mail, true);
  assert.equal(v.ttl, 60);
  assert.equal(v.targetStrip, 1);
  assert.equal(v.group, "g");
  const wide = decodeServiceValue('{"port":65537,"priority":-1}');
  assert.ok(typeof wide !== "string");
  assert.equal(wide.port16, 1);
  assert.equal(wide.priority16, 65535);
  const empty = decodeServiceValue("{}");
  assert.ok(typeof empty !== "string");
  assert.deepEqual([empty.host, empty.port, empty.mail, empty.ttl], ["", 0, false, 0]);
});

Deno.test("decodeServiceValue: Go's encoding/json matching rules", () => {
  const host = (json: string) => {
    const v = decodeServiceValue(json);
    assert.ok(typeof v !== "string", String(v));
    return v.host;
  };
  assert.equal(host('{"Host":"a"}'), "a"); // case-insensitive
  assert.equal(host('{"HOST":"a"}'), "a");
  assert.equal(host('{"hoſt":"a"}'), "a"); // long s folds to s, as in Go
  assert.equal(host('{"host":"a","unknown":[1,{"x":null}],"extra":true}'), "a");
  assert.equal(host('{"host":"a","host":"b"}'), "b"); // last duplicate wins
  assert.equal(host('{"host":"a","HOST":"b","host":"c"}'), "c");
  assert.equal(host('{"host":"a","host":null}'), "a"); // null leaves the value
  assert.equal(host('{"host":null}'), "");
  assert.equal(host("null"), "");
  assert.equal(host('{"h\\u006fst":"esc\\u00e9\\n"}'), "escé\n");
  assert.equal(host('{"host":"\\ud83d\\ude00 \\ud800"}'), "😀 \ufffd");
  assert.equal(host(' \t\r\n{"host" : "a" } \n'), "a");
  assert.equal(host('{"key":"x","-":"y","host":"a"}'), "a"); // Key is json:"-"
  const ttl = decodeServiceValue('{"ttl":4294967295,"port":-0}');
  assert.ok(typeof ttl !== "string");
  assert.equal(ttl.ttl, 4294967295);
});

Deno.test("decodeServiceValue: type errors carry Go's texts", () => {
  const cases: [string, string][] = [
    [
      '{"port":"80"}',
      "json: cannot unmarshal string into Go struct field Service.port of type int",
    ],
    [
      '{"port":80.5}',
      "json: cannot unmarshal number 80.5 into Go struct field Service.port of type int",
    ],
    [
      '{"port":80.0}',
      "json: cannot unmarshal number 80.0 into Go struct field Service.port of type int",
    ],
    [
      '{"port":1e2}',
      "json: cannot unmarshal number 1e2 into Go struct field Service.port of type int",
    ],
    [
      '{"port":9223372036854775808}',
      "json: cannot unmarshal number 9223372036854775808 into Go struct field Service.port of type int",
    ],
    [
      '{"ttl":-1}',
      "json: cannot unmarshal number -1 into Go struct field Service.ttl of type uint32",
    ],
    [
      '{"ttl":-0}',
      "json: cannot unmarshal number -0 into Go struct field Service.ttl of type uint32",
    ],
    [
      '{"ttl":4294967296}',
      "json: cannot unmarshal number 4294967296 into Go struct field Service.ttl of type uint32",
    ],
    [
      '{"mail":"true"}',
      "json: cannot unmarshal string into Go struct field Service.mail of type bool",
    ],
    ['{"mail":1}', "json: cannot unmarshal number into Go struct field Service.mail of type bool"],
    [
      '{"host":1}',
      "json: cannot unmarshal number into Go struct field Service.host of type string",
    ],
    [
      '{"host":true}',
      "json: cannot unmarshal bool into Go struct field Service.host of type string",
    ],
    [
      '{"HOST":[]}',
      "json: cannot unmarshal array into Go struct field Service.host of type string",
    ],
    [
      '{"text":{}}',
      "json: cannot unmarshal object into Go struct field Service.text of type string",
    ],
    // The first type error wins; decoding went on past it.
    [
      '{"port":"x","ttl":-1}',
      "json: cannot unmarshal string into Go struct field Service.port of type int",
    ],
    ["[]", "json: cannot unmarshal array into Go value of type msg.Service"],
    ['"x"', "json: cannot unmarshal string into Go value of type msg.Service"],
    ["1", "json: cannot unmarshal number into Go value of type msg.Service"],
    ["true", "json: cannot unmarshal bool into Go value of type msg.Service"],
  ];
  for (const [json, want] of cases) assert.equal(decodeServiceValue(json), want, json);
});

Deno.test("goJSONSyntaxError: Go's scanner messages", () => {
  const cases: [string, string | undefined][] = [
    ['{"host":"a"}', undefined],
    ["", "unexpected end of JSON input"],
    ["   ", "unexpected end of JSON input"],
    ["{", "unexpected end of JSON input"],
    ['{"host":"a"', "unexpected end of JSON input"],
    ['{"host', "unexpected end of JSON input"],
    ["x", "invalid character 'x' looking for beginning of value"],
    ['{"host":}', "invalid character '}' looking for beginning of value"],
    ["{'host':1}", "invalid character '\\'' looking for beginning of object key string"],
    ['{"a":1,}', "invalid character '}' looking for beginning of object key string"],
    ['{"a" 1}', "invalid character '1' after object key"],
    ['{"a":1 "b":2}', "invalid character '\"' after object key:value pair"],
    ["[1 2]", "invalid character '2' after array element"],
    ['{"a":1} x', "invalid character 'x' after top-level value"],
    ['{"a":1}{}', "invalid character '{' after top-level value"],
    ['{"port":01}', "invalid character '1' after object key:value pair"],
    ['{"port":-}', "invalid character '}' in numeric literal"],
    ['{"port":1.}', "invalid character '}' after decimal point in numeric literal"],
    ['{"port":1e}', "invalid character '}' in exponent of numeric literal"],
    ['{"a":"\t"}', "invalid character '\\t' in string literal"],
    ['{"a":"\x01"}', "invalid character '\\x01' in string literal"],
    ['{"a":"\\x"}', "invalid character 'x' in string escape code"],
    ['{"a":"\\u12g4"}', "invalid character 'g' in \\u hexadecimal character escape"],
    ['{"a":tru}', "invalid character '}' in literal true (expecting 'e')"],
    ["tru", "invalid character ' ' in literal true (expecting 'e')"],
    ["-", "invalid character ' ' in numeric literal"],
    ['{"a":nul}', "invalid character '}' in literal null (expecting 'l')"],
    ['{"a":fals}', "invalid character '}' in literal false (expecting 'e')"],
    ['{"a":tRue}', "invalid character 'R' in literal true (expecting 'r')"],
    ["\ufeff{}", "invalid character 'ï' looking for beginning of value"],
    ["é", "invalid character 'Ã' looking for beginning of value"],
    ["\\", "invalid character '\\\\' looking for beginning of value"],
    ['{"a":1}\n', undefined],
    ["[".repeat(10001), "invalid character '[' exceeded max depth"],
  ];
  for (const [json, want] of cases) assert.equal(goJSONSyntaxError(json), want, json);
});

Deno.test("decodeKeyValue: cached per KeyValue object; errors name the key", () => {
  const source = new MemorySource();
  const kv = source.put("/skydns/test/a", '{"host":"10.0.0.1"}');
  const first = decodeKeyValue(kv);
  assert.equal(decodeKeyValue(kv), first);
  assert.equal(first.service?.kind, Type.A);
  assert.equal(first.service?.address, "10.0.0.1");
  assert.equal(first.service?.priority, 10); // 0 becomes 10
  assert.equal(first.service?.ttl, 300);
  const bad = source.put("/skydns/test/b", "{nope");
  assert.equal(
    decodeKeyValue(bad).error,
    "/skydns/test/b: invalid character 'n' looking for beginning of object key string",
  );
});

Deno.test("serviceOf: lease TTLs come from the source at each call", () => {
  const source = new MemorySource();
  const kv = source.put("/skydns/test/a", '{"host":"10.0.0.1","ttl":600}', "42");
  source.setLease("42", 100);
  const a = serviceOf(kv, source, 0, 0);
  assert.ok(typeof a !== "string");
  assert.equal(a.ttl, 100);
  source.setLease("42", 5);
  const b = serviceOf(kv, source, 0, 0);
  assert.ok(typeof b !== "string");
  assert.equal(b.ttl, 30);
  assert.equal((serviceOf(kv, source, 1, 0) as { ttl: number }).ttl, 5);
  source.setLease("42", undefined); // unknown lease: the record's own ttl
  assert.equal((serviceOf(kv, source, 0, 0) as { ttl: number }).ttl, 600);
});
