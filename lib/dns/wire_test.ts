import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import { Buffer } from "node:buffer";
import { decodeMessage, encodeMessage, encodeQuery, type Message, parseQuery } from "./wire.ts";
import { Rcode, type RR, type SRVData, Type } from "./types.ts";
import { message } from "../../tests/helpers/dns.ts";

/** An authoritative reply (ID 4242, RD kept) to Example.ORG. A, with `records` on top. */
function reply(records: Partial<Message> = {}): Message {
  return message({
    id: 4242,
    response: true,
    authoritative: true,
    recursionDesired: true,
    question: [{ name: "Example.ORG.", type: Type.A, class: 1 }],
    ...records,
  });
}

const sample: RR[] = [
  { name: "Example.ORG.", type: Type.A, class: 1, ttl: 300, data: "10.0.0.1" },
  { name: "example.org.", type: Type.AAAA, class: 1, ttl: 300, data: "2001:db8::1" },
  { name: "example.org.", type: Type.CNAME, class: 1, ttl: 60, data: "www.example.org." },
  {
    name: "_x._tcp.example.org.",
    type: Type.SRV,
    class: 1,
    ttl: 30,
    data: { priority: 10, weight: 33, port: 8080, target: "a.example.org." },
  },
  {
    name: "example.org.",
    type: Type.MX,
    class: 1,
    ttl: 30,
    data: { preference: 10, exchange: "mail.example.org." },
  },
  { name: "example.org.", type: Type.TXT, class: 1, ttl: 30, data: ["hello", "world"] },
  { name: "1.0.0.10.in-addr.arpa.", type: Type.PTR, class: 1, ttl: 30, data: "example.org." },
];

Deno.test("wire: encoded records decode identically with dns-packet and with our decoder", () => {
  const soa: RR = {
    name: "example.org.",
    type: Type.SOA,
    class: 1,
    ttl: 30,
    data: {
      mname: "ns.dns.example.org.",
      rname: "hostmaster.example.org.",
      serial: 1700000000,
      refresh: 7200,
      retry: 1800,
      expire: 86400,
      minimum: 30,
    },
  };
  const msg = reply({ answer: sample, authority: [soa] });
  const bytes = encodeMessage(msg);
  const ours = decodeMessage(bytes);
  assert.deepEqual(ours.answer, sample);
  assert.deepEqual(ours.authority, [soa]);
  assert.equal(ours.id, 4242);
  assert.equal(ours.authoritative, true);

  const theirs = dnsPacket.decode(Buffer.from(bytes));
  assert.equal(theirs.answers?.length, sample.length);
  const a = theirs.answers![0] as { name: string; data: string };
  assert.equal(a.name, "Example.ORG");
  assert.equal(a.data, "10.0.0.1");
  const srv = theirs.answers![3] as { data: { target: string; port: number; weight: number } };
  assert.deepEqual(srv.data, { priority: 10, weight: 33, port: 8080, target: "a.example.org" });
});

Deno.test("wire: names are compressed (a repeated owner costs 2 bytes)", () => {
  const one = encodeMessage(reply({ answer: sample.slice(0, 1) }));
  const two = encodeMessage(reply({ answer: [sample[0], { ...sample[0], data: "10.0.0.2" }] }));
  // The second record adds a 2-byte pointer plus type/class/ttl/rdlength (10) and 4 bytes of data.
  assert.equal(two.length - one.length, 16);
});

Deno.test("wire: truncation drops whole records, keeps OPT and sets TC", () => {
  const many: RR[] = [];
  for (let i = 0; i < 100; i++) {
    many.push({ name: `host${i}.example.org.`, type: Type.A, class: 1, ttl: 30, data: "10.0.0.1" });
  }
  const opt: RR = {
    name: ".",
    type: Type.OPT,
    class: 1232,
    ttl: 0,
    data: { udpSize: 1232, extendedRcode: 0, version: 0, dnssecOk: false, options: [] },
  };
  const bytes = encodeMessage(reply({ answer: many, additional: [opt] }), 512);
  assert.ok(bytes.length <= 512);
  const decoded = decodeMessage(bytes);
  assert.equal(decoded.truncated, true);
  assert.ok(decoded.answer.length > 0 && decoded.answer.length < 100);
  assert.equal(decoded.additional.at(-1)?.type, Type.OPT);
  const whole = decodeMessage(encodeMessage(reply({ answer: many, additional: [opt] })));
  assert.equal(whole.truncated, false);
  assert.equal(whole.answer.length, 100);
});

Deno.test("wire: parseQuery reads question, case and EDNS0", () => {
  const q = encodeQuery(7, "WwW.Example.org.", Type.AAAA, { udpSize: 4096, dnssecOk: true });
  const parsed = parseQuery(q);
  assert.ok(!("kind" in parsed));
  assert.equal(parsed.question.name, "WwW.Example.org.");
  assert.equal(parsed.question.type, Type.AAAA);
  assert.equal(parsed.edns?.udpSize, 4096);
  assert.equal(parsed.edns?.dnssecOk, true);
});

Deno.test("wire: parseQuery rejects what miekg/dns rejects", () => {
  assert.deepEqual(parseQuery(new Uint8Array(5)), { kind: "drop" });
  const q = encodeQuery(7, "a.", Type.A);
  const response = q.slice();
  response[2] |= 0x80;
  assert.deepEqual(parseQuery(response), { kind: "drop" });
  const update = q.slice();
  update[2] = (update[2] & 0x87) | (5 << 3);
  const u = parseQuery(update);
  assert.ok("kind" in u && u.kind === "reject" && u.rcode === Rcode.NotImplemented);
  const twoQuestions = q.slice();
  twoQuestions[5] = 2;
  const t = parseQuery(twoQuestions);
  assert.ok("kind" in t && t.kind === "reject" && t.rcode === Rcode.FormatError);
  const cut = q.slice(0, q.length - 2);
  const c = parseQuery(cut);
  assert.ok("kind" in c && c.kind === "reject" && c.rcode === Rcode.FormatError);
});

Deno.test("wire: compression loops and pointers past the end are errors, not hangs", () => {
  const loop = new Uint8Array([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
  const parsed = parseQuery(loop);
  assert.ok("kind" in parsed && parsed.kind === "reject");
  assert.throws(() => decodeMessage(loop));
});

Deno.test("wire: escaped labels survive a round trip", () => {
  const name = "a\\.b.example.org.";
  const bytes = encodeMessage(reply({
    question: [{ name, type: Type.TXT, class: 1 }],
    answer: [{ name, type: Type.TXT, class: 1, ttl: 1, data: ["x"] }],
  }));
  const back = decodeMessage(bytes);
  assert.equal(back.question[0].name, name);
  assert.equal(back.answer[0].name, name);
});

Deno.test("wire: decoding random bytes never throws anything but WireError", () => {
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const base = encodeMessage(reply({ answer: sample }));
  for (let i = 0; i < 5000; i++) {
    const buf = base.slice(0, Math.floor(rand() * base.length));
    for (let j = 0; j < 4; j++) buf[Math.floor(rand() * buf.length)] = Math.floor(rand() * 256);
    try {
      decodeMessage(buf);
    } catch (err) {
      assert.equal((err as Error).name, "WireError", String((err as Error).stack));
    }
    parseQuery(buf);
  }
});

Deno.test("wire: compressed names inside MB/MINFO rdata are expanded when kept raw", () => {
  // Header, question "a.b." MB, answer owner pointer -> question, rdata = pointer to "b.".
  const q = [1, 0x61, 1, 0x62, 0];
  const buf = new Uint8Array([
    0,
    1,
    0x84,
    0,
    0,
    1,
    0,
    1,
    0,
    0,
    0,
    0,
    ...q,
    0,
    7,
    0,
    1,
    0xc0,
    12,
    0,
    7,
    0,
    1,
    0,
    0,
    0,
    10,
    0,
    2,
    0xc0,
    14,
  ]);
  const m = decodeMessage(buf);
  assert.deepEqual(m.answer[0].data, Uint8Array.from([1, 0x62, 0]));
});

Deno.test("wire: TXT that is not UTF-8 passes through byte for byte", () => {
  const rdata = Uint8Array.from([3, 0xff, 0xfe, 0x41, 2, 0xe9, 0xe9]);
  const msg = reply({
    answer: [{ name: "t.example.", type: Type.TXT, class: 1, ttl: 1, data: rdata }],
  });
  const back = decodeMessage(encodeMessage(msg));
  assert.deepEqual(back.answer[0].data, rdata);
  const text = decodeMessage(encodeMessage(reply({
    answer: [{ name: "t.example.", type: Type.TXT, class: 1, ttl: 1, data: ["héllo", "x"] }],
  })));
  assert.deepEqual(text.answer[0].data, ["héllo", "x"]);
});

Deno.test("wire: compressed names inside AFSDB and NAPTR rdata are expanded", () => {
  // Question "a.b." (offset 12); AFSDB = subtype 1 + pointer to "b." (offset 14).
  const header = [0, 1, 0x84, 0, 0, 1, 0, 2, 0, 0, 0, 0];
  const question = [1, 0x61, 1, 0x62, 0, 0, 18, 0, 1];
  const afsdb = [0xc0, 12, 0, 18, 0, 1, 0, 0, 0, 10, 0, 4, 0, 1, 0xc0, 14];
  // NAPTR: order 10, pref 20, flags "u", service "", regexp "", replacement -> pointer "a.b.".
  const naptr = [0xc0, 12, 0, 35, 0, 1, 0, 0, 0, 10, 0, 10, 0, 10, 0, 20, 1, 0x75, 0, 0, 0xc0, 12];
  const m = decodeMessage(Uint8Array.from([...header, ...question, ...afsdb, ...naptr]));
  assert.deepEqual(m.answer[0].data, Uint8Array.from([0, 1, 1, 0x62, 0]));
  assert.deepEqual(
    m.answer[1].data,
    Uint8Array.from([0, 10, 0, 20, 1, 0x75, 0, 0, 1, 0x61, 1, 0x62, 0]),
  );
});

Deno.test("wire: names present as miekg/dns's UnpackDomainName writes them", () => {
  // Each label's bytes on the wire -> the text CoreDNS keys its lookups on.
  const cases: [number[], string][] = [
    [[...new TextEncoder().encode("my printer")], "my\\ printer"],
    [[...new TextEncoder().encode("it's")], "it\\'s"],
    [[...new TextEncoder().encode("a$b")], "a$b"],
    [[...new TextEncoder().encode('@;()"\\')], '\\@\\;\\(\\)\\"\\\\'],
    [[0x61, 0x2e, 0x62], "a\\.b"],
    [[0x09, 0x7f, 0x7e, 0xc3, 0xa9], "\\009\\127~\\195\\169"],
    [[...new TextEncoder().encode("_srv-1*")], "_srv-1*"],
  ];
  for (const [label, text] of cases) {
    const name = [label.length, ...label, 7, ...new TextEncoder().encode("example"), 0];
    const packet = Uint8Array.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...name, 0, 1, 0, 1]);
    const parsed = parseQuery(packet);
    assert.ok(!("kind" in parsed));
    assert.equal(parsed.question.name, `${text}.example.`, JSON.stringify(label));
    // And back: the text encodes to the same bytes.
    const again = encodeQuery(1, parsed.question.name, Type.A);
    assert.deepEqual([...again.subarray(12, 12 + name.length)], name);
  }
});

Deno.test("wire: characters outside the BMP in an escaped name are encoded whole", () => {
  const bytes = encodeQuery(1, "a\\.\u{1f600}.example.", Type.A);
  const back = parseQuery(bytes);
  assert.ok(!("kind" in back));
  assert.equal(back.question.name, "a\\.\\240\\159\\152\\128.example.");
});

Deno.test("wire: names written uncompressed (SRV targets) are targets for later pointers", () => {
  // An SRV answer whose additional A records follow the targets: miekg/dns
  // points the A owners at the SRV targets (2 bytes each, not 14), so all 6
  // fit in 512 bytes (467) where recording only compressed names would not (539).
  const zone = "_app._tcp.example.local.";
  const answer: RR[] = Array.from({ length: 6 }, (_, i) => ({
    name: zone,
    type: Type.SRV,
    class: 1,
    ttl: 300,
    data: { priority: 10, weight: 8, port: 8080, target: `app-server${i}.${zone}` },
  }));
  const extra: RR[] = answer.map((r, i) => ({
    name: (r.data as SRVData).target,
    type: Type.A,
    class: 1,
    ttl: 300,
    data: `10.0.0.${i}`,
  }));
  const bytes = encodeMessage(
    reply({
      question: [{ name: zone, type: Type.SRV, class: 1 }],
      answer,
      additional: extra,
    }),
    512,
  );
  const m = decodeMessage(bytes);
  assert.equal(m.truncated, false, `${bytes.length} bytes`);
  assert.equal(m.additional.length, 6);
  assert.equal(bytes.length, 467);
  // Each A record: a 2-byte pointer, type, class, TTL, length, 4 bytes of address.
  const srvEnd = bytes.length - 6 * 16;
  for (let i = 0; i < 6; i++) assert.equal(bytes[srvEnd + i * 16] & 0xc0, 0xc0);
  // The SRV targets themselves stay uncompressed (RFC 2782).
  assert.deepEqual(m.answer.map((r) => (r.data as SRVData).target), extra.map((r) => r.name));
});

Deno.test("wire: a TSIG record goes last, after OPT, its owner uncompressed", () => {
  const tsig: RR = {
    name: "example.org.",
    type: Type.TSIG,
    class: 255,
    ttl: 0,
    data: Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 17, 0, 0]),
  };
  const opt: RR = {
    name: ".",
    type: Type.OPT,
    class: 1232,
    ttl: 0,
    data: { udpSize: 1232, extendedRcode: 0, version: 0, dnssecOk: false, options: [] },
  };
  const bytes = encodeMessage(reply({ additional: [tsig, opt] }));
  const m = decodeMessage(bytes);
  assert.deepEqual(m.additional.map((r) => r.type), [Type.OPT, Type.TSIG]);
  // The last record: a whole "example.org." (13 bytes), no pointer to the question's.
  const tail = bytes.subarray(bytes.length - (13 + 10 + 16), bytes.length - 10 - 16);
  assert.deepEqual([...tail], [7, ...new TextEncoder().encode("example"), 3, 111, 114, 103, 0]);
});

// encodeMessage reuses one work buffer per process (see `shared` in wire.ts):
// these check what makes that safe.

Deno.test("wire: the shared work buffer: results are copies, never views of it", () => {
  const first = encodeMessage(reply({ answer: sample }));
  const kept = first.slice();
  const second = encodeMessage(reply({ id: 7, answer: sample.slice(0, 2) }));
  assert.deepEqual(first, kept, "a later encode changed an earlier result");
  assert.notEqual(first.buffer, second.buffer);
});

Deno.test("wire: the shared work buffer: an encode that throws leaves nothing behind", () => {
  const msg = reply({ answer: sample });
  const before = encodeMessage(msg);
  // The first records are written (and their names are compression targets) before the bad one throws.
  const bad = reply({
    answer: [...sample, { name: "bad.example.org.", type: Type.A, class: 1, ttl: 1, data: "x" }],
  });
  assert.throws(() => encodeMessage(bad), /bad IPv4 address x/);
  assert.deepEqual(encodeMessage(msg), before);
  // A reply that outgrew the buffer (it doubles) changes nothing for the next one either.
  const big = reply({
    answer: Array.from({ length: 400 }, (_, i) => ({
      name: `n${i}.example.org.`,
      type: Type.TXT,
      class: 1,
      ttl: 1,
      data: ["x".repeat(200)],
    })),
  });
  assert.ok(encodeMessage(big, 65_535).length > 4096);
  assert.deepEqual(encodeMessage(msg), before);
});

Deno.test("wire: the shared work buffer: encodes interleaved with awaits give what fresh encodes give", async () => {
  const messages = Array.from(
    { length: 50 },
    (_, i) => reply({ id: i, answer: sample.slice(0, 1 + (i % sample.length)) }),
  );
  const alone = messages.map((m) => encodeMessage(m));
  // Many async tasks encoding at once: each encode runs whole between awaits.
  const together = await Promise.all(messages.map(async (m, i) => {
    for (let k = 0; k < i % 3; k++) await Promise.resolve();
    const out = encodeMessage(m);
    await new Promise((resolve) => setTimeout(resolve, 0));
    return out;
  }));
  assert.deepEqual(together, alone);
  for (const [i, bytes] of together.entries()) assert.equal(decodeMessage(bytes).id, i);
});
