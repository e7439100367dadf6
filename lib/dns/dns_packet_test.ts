/**
 * A cross-check of lib/dns/wire.ts against an independent DNS codec, the npm
 * package dns-packet: every record type the server encodes is decoded by
 * dns-packet field by field, and what dns-packet encodes is decoded by ours.
 *
 * The file also holds the measurement behind the server's own codec
 * (README, Development): `deno bench lib/dns/dns_packet_test.ts` encodes and
 * decodes the same replies with both (`deno test` skips the benches and
 * `deno bench` the tests).
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import dnsPacket from "dns-packet";
import { decodeMessage, encodeMessage, encodeQuery, type Message, parseQuery } from "./wire.ts";
import { Class, Opcode, type OPTData, Rcode, type RR, Type } from "./types.ts";

/** A response header with every flag we set somewhere, and no records yet. */
function reply(records: Partial<Message> = {}): Message {
  return {
    id: 0xbeef,
    response: true,
    opcode: Opcode.Query,
    authoritative: true,
    truncated: false,
    recursionDesired: true,
    recursionAvailable: true,
    zero: false,
    authenticData: false,
    checkingDisabled: true,
    rcode: Rcode.NameError,
    question: [{ name: "Worker4.TF.local.", type: Type.A, class: Class.INET }],
    answer: [],
    authority: [],
    additional: [],
    ...records,
  };
}

const utf8 = new TextEncoder();

/** CAA 0 issue "letsencrypt.org", as raw RDATA (the server passes unknown types through). */
const CAA_RDATA = Uint8Array.from([0, 5, ...utf8.encode("issue"), ...utf8.encode("ca.example")]);
/** An unassigned type, raw (RFC 3597). */
const PRIVATE_TYPE = 65280;

/** One record of each type the server writes (lib/dns/wire.ts's writeRData), owner names repeating. */
const ANSWERS: RR[] = [
  { name: "Worker4.TF.local.", type: Type.A, class: Class.INET, ttl: 30, data: "10.0.0.14" },
  { name: "worker4.tf.local.", type: Type.AAAA, class: Class.INET, ttl: 30, data: "2001:db8::14" },
  { name: "worker4.tf.local.", type: Type.AAAA, class: Class.INET, ttl: 30, data: "::1" },
  {
    name: "www.tf.local.",
    type: Type.CNAME,
    class: Class.INET,
    ttl: 60,
    data: "worker4.tf.local.",
  },
  { name: "tf.local.", type: Type.NS, class: Class.INET, ttl: 60, data: "ns1.tf.local." },
  {
    name: "14.0.0.10.in-addr.arpa.",
    type: Type.PTR,
    class: Class.INET,
    ttl: 30,
    data: "worker4.tf.local.",
  },
  {
    name: "tf.local.",
    type: Type.MX,
    class: Class.INET,
    ttl: 300,
    data: { preference: 10, exchange: "mail.tf.local." },
  },
  {
    name: "_nodes.tf.local.",
    type: Type.SRV,
    class: Class.INET,
    ttl: 30,
    data: { priority: 0, weight: 100, port: 2222, target: "worker4.tf.local." },
  },
  {
    name: "tf.local.",
    type: Type.TXT,
    class: Class.INET,
    ttl: 30,
    data: ["hello", "wörld ✓", ""],
  },
  { name: "version.bind.", type: Type.TXT, class: Class.CHAOS, ttl: 0, data: ["idetcd"] },
  { name: "tf.local.", type: Type.CAA, class: Class.INET, ttl: 30, data: CAA_RDATA },
  {
    name: "tf.local.",
    type: PRIVATE_TYPE,
    class: Class.INET,
    ttl: 30,
    data: Uint8Array.of(1, 2, 3, 255),
  },
];

const SOA: RR = {
  name: "tf.local.",
  type: Type.SOA,
  class: Class.INET,
  ttl: 30,
  data: {
    mname: "ns.dns.tf.local.",
    rname: "hostmaster.tf.local.",
    serial: 4_000_000_000,
    refresh: 7200,
    retry: 1800,
    expire: 86400,
    minimum: 5,
  },
};

const GLUE: RR = {
  name: "ns1.tf.local.",
  type: Type.A,
  class: Class.INET,
  ttl: 30,
  data: "10.0.0.1",
};

/** EDNS0 with the DO bit and the options the server may answer with (NSID, a cookie, padding). */
const OPT: RR = {
  name: ".",
  type: Type.OPT,
  class: 1232,
  ttl: 0,
  data: {
    udpSize: 1232,
    extendedRcode: 0,
    version: 0,
    dnssecOk: true,
    options: [
      { code: 3, data: utf8.encode("node-4") },
      { code: 10, data: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) },
      { code: 12, data: new Uint8Array(6) },
    ],
  } satisfies OPTData,
};

/** dns-packet's names have no trailing dot and keep their case. */
const bare = (name: string) => name.replace(/\.$/, "");

/** The fields of one record as dns-packet decodes it, for deepEqual against the expected ones. */
function expected(rr: RR): Record<string, unknown> {
  const base = {
    name: bare(rr.name),
    type: rr.type === PRIVATE_TYPE ? `UNKNOWN_${PRIVATE_TYPE}` : packetType(rr.type),
    class: rr.class === Class.CHAOS ? "CH" : "IN",
    ttl: rr.ttl,
    flush: false,
  };
  const d = rr.data;
  switch (rr.type) {
    case Type.A:
    case Type.AAAA:
      return { ...base, data: d };
    case Type.CNAME:
    case Type.NS:
    case Type.PTR:
      return { ...base, data: bare(d as string) };
    case Type.MX: {
      const mx = d as { preference: number; exchange: string };
      return { ...base, data: { preference: mx.preference, exchange: bare(mx.exchange) } };
    }
    case Type.SRV: {
      const srv = d as { priority: number; weight: number; port: number; target: string };
      return { ...base, data: { ...srv, target: bare(srv.target) } };
    }
    case Type.SOA: {
      const soa = d as { mname: string; rname: string };
      return { ...base, data: { ...soa, mname: bare(soa.mname), rname: bare(soa.rname) } };
    }
    case Type.TXT:
      return { ...base, data: (d as string[]).map((s) => Buffer.from(utf8.encode(s))) };
    case Type.CAA:
      return {
        ...base,
        data: { flags: 0, tag: "issue", value: "ca.example", issuerCritical: false },
      };
    default:
      return { ...base, data: Buffer.from(d as Uint8Array) };
  }
}

/** dns-packet's type mnemonic. */
function packetType(type: number): string {
  const names: Record<number, string> = {
    [Type.A]: "A",
    [Type.AAAA]: "AAAA",
    [Type.CNAME]: "CNAME",
    [Type.NS]: "NS",
    [Type.PTR]: "PTR",
    [Type.MX]: "MX",
    [Type.SRV]: "SRV",
    [Type.SOA]: "SOA",
    [Type.TXT]: "TXT",
    [Type.CAA]: "CAA",
  };
  return names[type];
}

/** What dns-packet's decode returns for one record, as a plain object. */
type Decoded = Record<string, unknown>;

Deno.test("dns-packet decodes every record type we encode, field by field", () => {
  const msg = reply({ answer: ANSWERS, authority: [SOA], additional: [GLUE, OPT] });
  const bytes = encodeMessage(msg);
  const theirs = dnsPacket.decode(Buffer.from(bytes));

  // Header.
  assert.equal(theirs.id, 0xbeef);
  assert.equal(theirs.type, "response");
  assert.equal(theirs.opcode, "QUERY");
  assert.equal(theirs.rcode, "NXDOMAIN");
  const flags = theirs as unknown as Record<string, boolean>;
  assert.deepEqual(
    ["flag_qr", "flag_aa", "flag_tc", "flag_rd", "flag_ra", "flag_z", "flag_ad", "flag_cd"]
      .map((f) => flags[f]),
    [true, true, false, true, true, false, false, true],
  );

  // Question: the case it was sent in.
  assert.deepEqual(theirs.questions, [{ name: "Worker4.TF.local", type: "A", class: "IN" }]);

  // Each section, record by record.
  assert.equal(theirs.answers?.length, ANSWERS.length);
  ANSWERS.forEach((rr, i) => {
    assert.deepEqual(theirs.answers![i] as Decoded, expected(rr), `answer ${i} (type ${rr.type})`);
  });
  assert.deepEqual(theirs.authorities as Decoded[], [expected(SOA)]);
  assert.equal(theirs.additionals?.length, 2);
  assert.deepEqual(theirs.additionals![0] as Decoded, expected(GLUE));

  // OPT, last: payload size, extended rcode, version, DO, the options in order.
  const opt = theirs.additionals![1] as unknown as {
    name: string;
    type: string;
    udpPayloadSize: number;
    extendedRcode: number;
    ednsVersion: number;
    flag_do: boolean;
    options: { code: number; data: Buffer }[];
  };
  assert.equal(opt.name, ".");
  assert.equal(opt.type, "OPT");
  assert.equal(opt.udpPayloadSize, 1232);
  assert.equal(opt.extendedRcode, 0);
  assert.equal(opt.ednsVersion, 0);
  assert.equal(opt.flag_do, true);
  assert.deepEqual(
    opt.options.map((o) => [o.code, [...o.data]]),
    (OPT.data as OPTData).options.map((o) => [o.code, [...o.data]]),
  );

  // And our own decoder gives back what went in.
  const ours = decodeMessage(bytes);
  assert.deepEqual(ours.answer, ANSWERS);
  assert.deepEqual(ours.authority, [SOA]);
  assert.deepEqual(ours.additional[0], GLUE);
  assert.deepEqual(ours.additional[1].data, OPT.data);
});

Deno.test("dns-packet sees an extended rcode (BADVERS) split between header and OPT", () => {
  const opt: RR = { ...OPT, data: { ...(OPT.data as OPTData), options: [] } };
  const bytes = encodeMessage(reply({ rcode: Rcode.BadVers, additional: [opt] }));
  const theirs = dnsPacket.decode(Buffer.from(bytes));
  assert.equal(theirs.rcode, "NOERROR", "the low 4 bits of 16");
  const decoded = theirs.additionals![0] as unknown as { extendedRcode: number };
  assert.equal(decoded.extendedRcode, 1, "the high 8 bits of 16");
  assert.equal(decodeMessage(bytes).rcode, Rcode.BadVers);
});

Deno.test("our decoder reads what dns-packet encodes, field by field", () => {
  const bytes = dnsPacket.encode({
    type: "response",
    id: 7,
    flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_DESIRED,
    questions: [{ type: "SRV", name: "_nodes.tf.local" }],
    answers: [
      { type: "A", name: "worker1.tf.local", ttl: 30, data: "10.0.0.11" },
      { type: "AAAA", name: "worker1.tf.local", ttl: 30, data: "2001:db8::11" },
      { type: "CNAME", name: "www.tf.local", ttl: 60, data: "worker1.tf.local" },
      { type: "NS", name: "tf.local", ttl: 60, data: "ns1.tf.local" },
      { type: "PTR", name: "11.0.0.10.in-addr.arpa", ttl: 30, data: "worker1.tf.local" },
      { type: "MX", name: "tf.local", ttl: 300, data: { preference: 5, exchange: "mx.tf.local" } },
      {
        type: "SRV",
        name: "_nodes.tf.local",
        ttl: 30,
        data: { priority: 1, weight: 2, port: 3, target: "worker1.tf.local" },
      },
      { type: "TXT", name: "tf.local", ttl: 30, data: ["a", "wörld"] },
    ],
    authorities: [{
      type: "SOA",
      name: "tf.local",
      ttl: 30,
      data: {
        mname: "ns.dns.tf.local",
        rname: "hostmaster.tf.local",
        serial: 1,
        refresh: 2,
        retry: 3,
        expire: 4,
        minimum: 5,
      },
    }],
    additionals: [{
      type: "OPT",
      name: ".",
      udpPayloadSize: 4096,
      flags: dnsPacket.DNSSEC_OK,
      options: [{ code: 3, data: Buffer.from("nsid") }],
    }],
  } as dnsPacket.Packet);
  const m = decodeMessage(Uint8Array.from(bytes));
  assert.equal(m.id, 7);
  assert.equal(m.response, true);
  assert.equal(m.authoritative, true);
  assert.equal(m.recursionDesired, true);
  assert.deepEqual(m.question, [{ name: "_nodes.tf.local.", type: Type.SRV, class: Class.INET }]);
  assert.deepEqual(m.answer.map((r) => [r.name, r.type, r.class, r.ttl, r.data]), [
    ["worker1.tf.local.", Type.A, 1, 30, "10.0.0.11"],
    ["worker1.tf.local.", Type.AAAA, 1, 30, "2001:db8::11"],
    ["www.tf.local.", Type.CNAME, 1, 60, "worker1.tf.local."],
    ["tf.local.", Type.NS, 1, 60, "ns1.tf.local."],
    ["11.0.0.10.in-addr.arpa.", Type.PTR, 1, 30, "worker1.tf.local."],
    ["tf.local.", Type.MX, 1, 300, { preference: 5, exchange: "mx.tf.local." }],
    [
      "_nodes.tf.local.",
      Type.SRV,
      1,
      30,
      { priority: 1, weight: 2, port: 3, target: "worker1.tf.local." },
    ],
    ["tf.local.", Type.TXT, 1, 30, ["a", "wörld"]],
  ]);
  assert.deepEqual(m.authority[0].data, {
    mname: "ns.dns.tf.local.",
    rname: "hostmaster.tf.local.",
    serial: 1,
    refresh: 2,
    retry: 3,
    expire: 4,
    minimum: 5,
  });
  const opt = m.additional.at(-1)!.data as OPTData;
  assert.equal(opt.udpSize, 4096);
  assert.equal(opt.dnssecOk, true);
  assert.deepEqual(opt.options.map((o) => [o.code, new TextDecoder().decode(o.data)]), [
    [3, "nsid"],
  ]);
});

// --- the measurement: `deno bench lib/dns/dns_packet_test.ts` ------------------------

/** The commonest reply: one A record for a claimed name, with EDNS0. */
const A_REPLY = reply({
  rcode: Rcode.Success,
  answer: [ANSWERS[0]],
  additional: [{ ...OPT, data: { ...(OPT.data as OPTData), options: [] } }],
});

/** The heaviest common one: `_nodes` SRV for a 5-node cluster, with the A glue. */
const SRV_REPLY = reply({
  rcode: Rcode.Success,
  question: [{ name: "_nodes.tf.local.", type: Type.SRV, class: Class.INET }],
  answer: [1, 2, 3, 4, 5].map((n) => ({
    name: "_nodes.tf.local.",
    type: Type.SRV,
    class: Class.INET,
    ttl: 30,
    data: { priority: 0, weight: 100, port: 2222, target: `worker${n}.tf.local.` },
  })),
  additional: [1, 2, 3, 4, 5].map((n) => ({
    name: `worker${n}.tf.local.`,
    type: Type.A,
    class: Class.INET,
    ttl: 30,
    data: `10.0.0.${10 + n}`,
  })),
});

/** The same message in dns-packet's shape, built once outside the timed loop. */
function asPacket(msg: Message): dnsPacket.Packet {
  const rr = (r: RR) =>
    r.type === Type.OPT ? { type: "OPT", name: ".", udpPayloadSize: 1232, flags: 0x8000 } : {
      type: packetType(r.type),
      name: bare(r.name),
      ttl: r.ttl,
      data: r.type === Type.SRV
        ? { ...(r.data as object), target: bare((r.data as { target: string }).target) }
        : r.data,
    };
  return {
    type: "response",
    id: msg.id,
    flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_DESIRED,
    questions: msg.question.map((q) => ({ type: packetType(q.type), name: bare(q.name) })),
    answers: msg.answer.map(rr),
    additionals: msg.additional.map(rr),
  } as dnsPacket.Packet;
}

for (const [what, msg] of [["A reply", A_REPLY], ["_nodes SRV reply", SRV_REPLY]] as const) {
  const packet = asPacket(msg);
  Deno.bench({
    name: `${what}: lib/dns/wire.ts encode + decode`,
    group: what,
    baseline: true,
    fn: () => {
      decodeMessage(encodeMessage(msg));
    },
  });
  Deno.bench({
    name: `${what}: dns-packet encode + decode`,
    group: what,
    fn: () => {
      dnsPacket.decode(dnsPacket.encode(packet));
    },
  });
}

// What the server does per query that misses the fast path: read the query, write the reply.
const QUERY = encodeQuery(0xbeef, "worker4.tf.local.", Type.A, { udpSize: 1232 });
const QUERY_BUFFER = Buffer.from(QUERY);
const A_PACKET = asPacket(A_REPLY);
Deno.bench({
  name: "per query: lib/dns/wire.ts parseQuery + encodeMessage",
  group: "per query",
  baseline: true,
  fn: () => {
    parseQuery(QUERY);
    encodeMessage(A_REPLY);
  },
});
Deno.bench({
  name: "per query: dns-packet decode + encode",
  group: "per query",
  fn: () => {
    dnsPacket.decode(QUERY_BUFFER);
    dnsPacket.encode(A_PACKET);
  },
});
