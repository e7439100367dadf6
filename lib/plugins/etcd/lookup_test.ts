/**
 * The etcd plugin against an in-memory key space: CoreDNS's own etcd test
 * tables (lookup_test.go, other_test.go, cname_test.go) plus the behaviours
 * of the spec's Part A, through the handler (zone match, BackendError
 * replies, fallthrough) and through the lookup functions directly.
 */

import assert from "node:assert/strict";
import { lowerName } from "../../dns/name.ts";
import { Rcode, type RR, Type } from "../../dns/types.ts";
import { createLogger, type Level } from "../../log.ts";
import type { Reply, Request } from "../../server/plugin.ts";
import { createEtcdHandler, type EtcdMirror } from "./handler.ts";
import {
  lookup,
  lookupSync,
  MAX_CNAME_CHAIN_LENGTH,
  soaRecord,
  type UpstreamAnswer,
} from "./lookup.ts";
import { MemorySource, type ServiceFields, show } from "./testing.ts";

// ------------------------------------------------------------------ harness

/** A mirror over a MemorySource that is loaded (or becomes loaded when told). */
function mirrorOf(source: MemorySource, ready = true): EtcdMirror & { load(): void } {
  let loaded = ready;
  let resolveStart: () => void = () => {};
  const started = new Promise<void>((r) => (resolveStart = r));
  if (ready) resolveStart();
  return {
    range: (p) => source.range(p),
    get: (k) => source.get(k),
    leaseRemaining: (l) => source.leaseRemaining(l),
    get generation() {
      return source.generation;
    },
    start: () => started,
    isReady: () => loaded,
    load() {
      loaded = true;
      resolveStart();
    },
  };
}

type Upstream = (name: string, type: number) => Promise<Reply>;

const noServer: Upstream = () => Promise.reject(new Error("no full server is running"));

function request(name: string, type: number, upstream: Upstream = noServer): Request {
  return {
    id: 1,
    opcode: 0,
    rd: true,
    cd: false,
    ad: false,
    question: { name, type, class: 1 },
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
    lookup: upstream,

    observe: () => {},
  };
}

/** The reply a next plugin gives, so tests can see that the query went on. */
const NEXT_REPLY: Reply = {
  rcode: Rcode.Refused,
  authoritative: false,
  answer: [],
  authority: [],
  additional: [],
  plugin: "next",
};

interface Setup {
  zones: string[];
  fallthrough?: string[];
  prefix?: string;
  minLeaseTTL?: number;
  maxLeaseTTL?: number;
  upstream?: Upstream;
  logs?: string[];
}

function handlerFor(source: MemorySource, setup: Setup, mirror = mirrorOf(source)) {
  const logs = setup.logs ?? [];
  const log = createLogger("plugin/etcd", (_level: Level, line: string) => logs.push(line));
  return createEtcdHandler(
    {
      zones: setup.zones,
      fallthrough: setup.fallthrough ?? [],
      lookup: {
        pathPrefix: setup.prefix ?? "skydns",
        minLeaseTTL: setup.minLeaseTTL ?? 0,
        maxLeaseTTL: setup.maxLeaseTTL ?? 0,
      },
    },
    mirror,
    log,
  );
}

async function ask(
  source: MemorySource,
  setup: Setup,
  qname: string,
  qtype: number,
): Promise<Reply> {
  const { plugin } = handlerFor(source, setup);
  return await plugin.serve(
    request(qname, qtype, setup.upstream),
    () => Promise.resolve(NEXT_REPLY),
  );
}

/** Records in test notation, SOA serials masked. */
function lines(records: readonly RR[]): string[] {
  return records.map((r) => show(r).replace(/ SOA (\S+) (\S+) \d+ /, " SOA $1 $2 SERIAL "));
}

function soa(zone: string): string {
  const mname = zone === "." ? "ns.dns." : `ns.dns.${zone}`;
  const rname = zone === "." ? "hostmaster." : `hostmaster.${zone}`;
  return `${zone} 30 IN SOA ${mname} ${rname} SERIAL 7200 1800 86400 30`;
}

interface Case {
  qname: string;
  qtype: number;
  rcode?: number;
  answer?: string[];
  ns?: string[];
  extra?: string[];
  /** Compare sections in order (CoreDNS's cname_test), not sorted. */
  ordered?: boolean;
  truncated?: boolean;
  error?: string;
}

async function check(source: MemorySource, setup: Setup, c: Case): Promise<Reply> {
  const reply = await ask(source, setup, c.qname, c.qtype);
  const label = `${c.qname} ${c.qtype}`;
  const norm = (xs: string[]) => (c.ordered ? xs : [...xs].sort());
  assert.equal(reply.rcode, c.rcode ?? Rcode.Success, `${label}: rcode`);
  assert.equal(reply.authoritative, true, `${label}: AA`);
  assert.equal(reply.plugin, "etcd", `${label}: plugin`);
  assert.deepEqual(norm(lines(reply.answer)), norm(c.answer ?? []), `${label}: answer`);
  assert.deepEqual(norm(lines(reply.authority)), norm(c.ns ?? []), `${label}: authority`);
  assert.deepEqual(norm(lines(reply.additional)), norm(c.extra ?? []), `${label}: additional`);
  assert.equal(reply.truncated === true, c.truncated === true, `${label}: TC`);
  assert.equal(reply.error, c.error, `${label}: error`);
  return reply;
}

function load(records: [string, ServiceFields][], prefix = "skydns"): MemorySource {
  const source = new MemorySource(prefix);
  for (const [name, fields] of records) source.set(name, fields);
  return source;
}

// ------------------------------------------------------- CoreDNS lookup_test

const lookupServices: [string, ServiceFields][] = [
  ["a.server1.dev.region1.skydns.test.", { host: "dev.server1", port: 8080 }],
  ["a.server1.prod.region1.skydns.test.", { host: "10.0.0.1", port: 8080 }],
  ["b.server1.prod.region1.skydns.test.", { host: "10.0.0.2", port: 8080 }],
  ["b.server6.prod.region1.skydns.test.", { host: "::1", port: 8080 }],
  // Unresolvable internal name.
  ["cname.prod.region1.skydns.test.", { host: "unresolvable.skydns.test" }],
  // Priority.
  ["priority.skydns.test.", { host: "priority.server1", priority: 333, port: 8080 }],
  // Subdomain.
  ["a.sub.region1.skydns.test.", { host: "sub.server1", port: 0 }],
  ["b.sub.region1.skydns.test.", { host: "sub.server2", port: 80 }],
  ["c.sub.region1.skydns.test.", { host: "10.0.0.1", port: 8080 }],
  // CNAME loop.
  ["b.cname.skydns.test.", { host: "a.cname.skydns.test" }],
  ["a.cname.skydns.test.", { host: "b.cname.skydns.test" }],
  // Nameservers.
  ["a.ns.dns.skydns.test.", { host: "10.0.0.2" }],
  ["b.ns.dns.skydns.test.", { host: "10.0.0.3" }],
  // Zone name as A record (basic, return all).
  ["x.skydns_zonea.test.", { host: "10.0.0.2" }],
  ["y.skydns_zonea.test.", { host: "10.0.0.3" }],
  // Zone name as A (single entry).
  ["x.skydns_zoneb.test.", { host: "10.0.0.2" }],
  ["y.skydns_zoneb.test.", { host: "10.0.0.3" }],
  ["apex.dns.skydns_zoneb.test.", { host: "10.0.0.4" }],
  // A zone record (rr multiple entries).
  ["x.skydns_zonec.test.", { host: "10.0.0.2" }],
  ["y.skydns_zonec.test.", { host: "10.0.0.3" }],
  ["a1.apex.dns.skydns_zonec.test.", { host: "10.0.0.4" }],
  ["a2.apex.dns.skydns_zonec.test.", { host: "10.0.0.5" }],
  // AAAA zone record (rr multiple entries mixed with A).
  ["x.skydns_zoned.test.", { host: "10.0.0.2" }],
  ["y.skydns_zoned.test.", { host: "10.0.0.3" }],
  ["a1.apex.dns.skydns_zoned.test.", { host: "10.0.0.4" }],
  ["a2.apex.dns.skydns_zoned.test.", { host: "10.0.0.5" }],
  ["a3.apex.dns.skydns_zoned.test.", { host: "2003::8:1" }],
  ["a4.apex.dns.skydns_zoned.test.", { host: "2003::8:2" }],
  // Reverse.
  ["1.0.0.10.in-addr.arpa.", { host: "reverse.example.com" }],
];

const lookupZones = [
  "skydns.test.",
  "skydns_extra.test.",
  "skydns_zonea.test.",
  "skydns_zoneb.test.",
  "skydns_zonec.test.",
  "skydns_zoned.test.",
  "in-addr.arpa.",
];

const lookupCases: Case[] = [
  {
    qname: "a.server1.dev.region1.skydns.test.",
    qtype: Type.SRV,
    answer: ["a.server1.dev.region1.skydns.test. 300 IN SRV 10 100 8080 dev.server1."],
  },
  {
    qname: "a.SERVer1.dEv.region1.skydns.tEst.",
    qtype: Type.SRV,
    answer: ["a.SERVer1.dEv.region1.skydns.tEst. 300 IN SRV 10 100 8080 dev.server1."],
  },
  {
    qname: "doesnotexist.skydns.test.",
    qtype: Type.A,
    rcode: Rcode.NameError,
    ns: [soa("skydns.test.")],
  },
  {
    qname: "a.server1.prod.region1.skydns.test.",
    qtype: Type.A,
    answer: ["a.server1.prod.region1.skydns.test. 300 IN A 10.0.0.1"],
  },
  {
    qname: "a.server1.prod.region1.skydns.test.",
    qtype: Type.SRV,
    answer: [
      "a.server1.prod.region1.skydns.test. 300 IN SRV 10 100 8080 a.server1.prod.region1.skydns.test.",
    ],
    extra: ["a.server1.prod.region1.skydns.test. 300 IN A 10.0.0.1"],
  },
  {
    qname: "b.server6.prod.region1.skydns.test.",
    qtype: Type.AAAA,
    answer: ["b.server6.prod.region1.skydns.test. 300 IN AAAA ::1"],
  },
  {
    qname: "server1.prod.region1.skydns.test.",
    qtype: Type.A,
    answer: [
      "server1.prod.region1.skydns.test. 300 IN A 10.0.0.1",
      "server1.prod.region1.skydns.test. 300 IN A 10.0.0.2",
    ],
  },
  {
    qname: "priority.skydns.test.",
    qtype: Type.SRV,
    answer: ["priority.skydns.test. 300 IN SRV 333 100 8080 priority.server1."],
  },
  {
    qname: "sub.region1.skydns.test.",
    qtype: Type.SRV,
    answer: [
      "sub.region1.skydns.test. 300 IN SRV 10 33 0 sub.server1.",
      "sub.region1.skydns.test. 300 IN SRV 10 33 80 sub.server2.",
      "sub.region1.skydns.test. 300 IN SRV 10 33 8080 c.sub.region1.skydns.test.",
    ],
    extra: ["c.sub.region1.skydns.test. 300 IN A 10.0.0.1"],
  },
  {
    qname: "cname.prod.region1.skydns.test.",
    qtype: Type.A,
    ns: [soa("skydns.test.")],
  },
  {
    qname: "*.region1.skydns.test.",
    qtype: Type.SRV,
    answer: [
      "*.region1.skydns.test. 300 IN SRV 10 12 0 sub.server1.",
      "*.region1.skydns.test. 300 IN SRV 10 12 0 unresolvable.skydns.test.",
      "*.region1.skydns.test. 300 IN SRV 10 12 80 sub.server2.",
      "*.region1.skydns.test. 300 IN SRV 10 12 8080 a.server1.prod.region1.skydns.test.",
      "*.region1.skydns.test. 300 IN SRV 10 12 8080 b.server1.prod.region1.skydns.test.",
      "*.region1.skydns.test. 300 IN SRV 10 12 8080 b.server6.prod.region1.skydns.test.",
      "*.region1.skydns.test. 300 IN SRV 10 12 8080 c.sub.region1.skydns.test.",
      "*.region1.skydns.test. 300 IN SRV 10 12 8080 dev.server1.",
    ],
    extra: [
      "a.server1.prod.region1.skydns.test. 300 IN A 10.0.0.1",
      "b.server1.prod.region1.skydns.test. 300 IN A 10.0.0.2",
      "b.server6.prod.region1.skydns.test. 300 IN AAAA ::1",
      "c.sub.region1.skydns.test. 300 IN A 10.0.0.1",
    ],
  },
  ...["prod.*.skydns.test.", "prod.any.skydns.test.", "prod.ANY.skydns.test."].map((q) => ({
    qname: q,
    qtype: Type.SRV,
    answer: [
      `${q} 300 IN SRV 10 25 0 unresolvable.skydns.test.`,
      `${q} 300 IN SRV 10 25 8080 a.server1.prod.region1.skydns.test.`,
      `${q} 300 IN SRV 10 25 8080 b.server1.prod.region1.skydns.test.`,
      `${q} 300 IN SRV 10 25 8080 b.server6.prod.region1.skydns.test.`,
    ],
    extra: [
      "a.server1.prod.region1.skydns.test. 300 IN A 10.0.0.1",
      "b.server1.prod.region1.skydns.test. 300 IN A 10.0.0.2",
      "b.server6.prod.region1.skydns.test. 300 IN AAAA ::1",
    ],
  })),
  // CNAME loop detection.
  { qname: "a.cname.skydns.test.", qtype: Type.A, ns: [soa("skydns.test.")] },
  // NODATA: a name host is no TXT record (and its target is outside, unreachable).
  { qname: "a.server1.dev.region1.skydns.test.", qtype: Type.TXT, ns: [soa("skydns.test.")] },
  // NODATA for an unsupported type on an existing name.
  { qname: "a.server1.dev.region1.skydns.test.", qtype: Type.HINFO, ns: [soa("skydns.test.")] },
  {
    qname: "a.server1.nonexistent.region1.skydns.test.",
    qtype: Type.HINFO,
    rcode: Rcode.NameError,
    ns: [soa("skydns.test.")],
  },
  {
    qname: "skydns.test.",
    qtype: Type.SOA,
    answer: [soa("skydns.test.")],
  },
  {
    qname: "skydns.test.",
    qtype: Type.NS,
    answer: [
      "skydns.test. 300 IN NS a.ns.dns.skydns.test.",
      "skydns.test. 300 IN NS b.ns.dns.skydns.test.",
    ],
    extra: ["a.ns.dns.skydns.test. 300 IN A 10.0.0.2", "b.ns.dns.skydns.test. 300 IN A 10.0.0.3"],
  },
  // NS below the apex is the fake A lookup: a missing name is NXDOMAIN.
  { qname: "a.skydns.test.", qtype: Type.NS, rcode: Rcode.NameError, ns: [soa("skydns.test.")] },
  {
    qname: "ns.dns.skydns.test.",
    qtype: Type.A,
    answer: ["ns.dns.skydns.test. 300 IN A 10.0.0.2", "ns.dns.skydns.test. 300 IN A 10.0.0.3"],
  },
  {
    qname: "skydns_extra.test.",
    qtype: Type.SOA,
    answer: [soa("skydns_extra.test.")],
  },
  // Backward compatibility: without dns/apex the apex answers the whole zone.
  {
    qname: "skydns_zonea.test.",
    qtype: Type.A,
    answer: ["skydns_zonea.test. 300 IN A 10.0.0.2", "skydns_zonea.test. 300 IN A 10.0.0.3"],
  },
  { qname: "skydns_zoneb.test.", qtype: Type.A, answer: ["skydns_zoneb.test. 300 IN A 10.0.0.4"] },
  {
    qname: "skydns_zonec.test.",
    qtype: Type.A,
    answer: ["skydns_zonec.test. 300 IN A 10.0.0.4", "skydns_zonec.test. 300 IN A 10.0.0.5"],
  },
  {
    qname: "skydns_zoned.test.",
    qtype: Type.A,
    answer: ["skydns_zoned.test. 300 IN A 10.0.0.4", "skydns_zoned.test. 300 IN A 10.0.0.5"],
  },
  {
    qname: "skydns_zoned.test.",
    qtype: Type.AAAA,
    answer: [
      "skydns_zoned.test. 300 IN AAAA 2003::8:1",
      "skydns_zoned.test. 300 IN AAAA 2003::8:2",
    ],
  },
  {
    qname: "1.0.0.10.in-addr.arpa.",
    qtype: Type.PTR,
    answer: ["1.0.0.10.in-addr.arpa. 300 IN PTR reverse.example.com."],
  },
];

Deno.test("CoreDNS lookup_test: every case", async () => {
  const source = load(lookupServices);
  for (const c of lookupCases) await check(source, { zones: lookupZones }, c);
});

// -------------------------------------------------------- CoreDNS other_test

const otherServices: [string, ServiceFields][] = [
  ["a.server1.dev.region1.skydns.test.", { host: "dev.server1", port: 8080 }],
  // mx
  ["a.mail.skydns.test.", { host: "mx.skydns.test", priority: 50, mail: true }],
  ["b.mail.skydns.test.", { host: "mx.miek.nl", priority: 50, mail: true }],
  ["a.mx.skydns.test.", { host: "a.ipaddr.skydns.test", priority: 30, mail: true }],
  ["a.mx2.skydns.test.", { host: "a.ipaddr.skydns.test", mail: true }],
  ["b.mx2.skydns.test.", { host: "b.ipaddr.skydns.test", mail: true }],
  ["a.mx3.skydns.test.", { host: "a.ipaddr.skydns.test", priority: 20, mail: true }],
  ["b.mx3.skydns.test.", { host: "a.ipaddr.skydns.test", priority: 30, mail: true }],
  ["a.ipaddr.skydns.test.", { host: "172.16.1.1" }],
  ["b.ipaddr.skydns.test.", { host: "172.16.1.2" }],
  // txt
  ["a1.txt.skydns.test.", { text: "abc" }],
  ["a2.txt.skydns.test.", { text: "abc abc" }],
  ["large400.skydns.test.", { text: "0".repeat(400) }],
  ["large600.skydns.test.", { text: "0".repeat(600) }],
  ["large2000.skydns.test.", { text: "0".repeat(2000) }],
  // ns
  ["ipv4.ns.dns.skydns.test.", { host: "172.17.1.1" }],
  // duplicate ip address
  ["http.multiport.http.skydns.test.", { host: "10.11.11.10", port: 80 }],
  ["https.multiport.http.skydns.test.", { host: "10.11.11.10", port: 443 }],
];

const otherCases: Case[] = [
  // NODATA: not a mail:true record.
  { qname: "a.server1.dev.region1.skydns.test.", qtype: Type.MX, ns: [soa("skydns.test.")] },
  {
    qname: "a.mail.skydns.test.",
    qtype: Type.MX,
    answer: ["a.mail.skydns.test. 300 IN MX 50 mx.skydns.test."],
    extra: [
      "a.ipaddr.skydns.test. 300 IN A 172.16.1.1",
      "mx.skydns.test. 300 IN CNAME a.ipaddr.skydns.test.",
    ],
  },
  {
    qname: "mx2.skydns.test.",
    qtype: Type.MX,
    answer: [
      "mx2.skydns.test. 300 IN MX 10 a.ipaddr.skydns.test.",
      "mx2.skydns.test. 300 IN MX 10 b.ipaddr.skydns.test.",
    ],
    extra: [
      "a.ipaddr.skydns.test. 300 IN A 172.16.1.1",
      "b.ipaddr.skydns.test. 300 IN A 172.16.1.2",
    ],
  },
  // Different priority, same host: one additional lookup.
  {
    qname: "mx3.skydns.test.",
    qtype: Type.MX,
    answer: [
      "mx3.skydns.test. 300 IN MX 20 a.ipaddr.skydns.test.",
      "mx3.skydns.test. 300 IN MX 30 a.ipaddr.skydns.test.",
    ],
    extra: ["a.ipaddr.skydns.test. 300 IN A 172.16.1.1"],
  },
  {
    qname: "a1.txt.skydns.test.",
    qtype: Type.TXT,
    answer: ['a1.txt.skydns.test. 300 IN TXT "abc"'],
  },
  {
    qname: "a2.txt.skydns.test.",
    qtype: Type.TXT,
    answer: ['a2.txt.skydns.test. 300 IN TXT "abc abc"'],
  },
  {
    qname: "large400.skydns.test.",
    qtype: Type.TXT,
    answer: [`large400.skydns.test. 300 IN TXT "${"0".repeat(255)}" "${"0".repeat(145)}"`],
  },
  {
    qname: "skydns.test.",
    qtype: Type.NS,
    answer: ["skydns.test. 300 IN NS ipv4.ns.dns.skydns.test."],
    extra: ["ipv4.ns.dns.skydns.test. 300 IN A 172.17.1.1"],
  },
  {
    qname: "multiport.http.skydns.test.",
    qtype: Type.A,
    answer: ["multiport.http.skydns.test. 300 IN A 10.11.11.10"],
  },
];

Deno.test("CoreDNS other_test: MX, TXT, NS, duplicate addresses", async () => {
  const source = load(otherServices);
  for (const c of otherCases) await check(source, { zones: ["skydns.test."] }, c);
});

Deno.test("TXT: 2000 bytes are eight strings, the last 215 long", async () => {
  const reply = await ask(
    load(otherServices),
    { zones: ["skydns.test."] },
    "large2000.skydns.test.",
    Type.TXT,
  );
  const strings = reply.answer[0].data as string[];
  assert.deepEqual(strings.map((s) => s.length), [255, 255, 255, 255, 255, 255, 255, 215]);
});

// -------------------------------------------------------- CoreDNS cname_test

const cnameServices: [string, ServiceFields][] = [
  ["a.server1.dev.region1.skydns.test.", { host: "cname1.region2.skydns.test" }],
  ["cname1.region2.skydns.test.", { host: "cname2.region2.skydns.test" }],
  ["cname2.region2.skydns.test.", { host: "cname3.region2.skydns.test" }],
  ["cname3.region2.skydns.test.", { host: "cname4.region2.skydns.test" }],
  ["cname4.region2.skydns.test.", { host: "cname5.region2.skydns.test" }],
  ["cname5.region2.skydns.test.", { host: "cname6.region2.skydns.test" }],
  ["cname6.region2.skydns.test.", { host: "endpoint.region2.skydns.test" }],
  ["region2.skydns.test.", { host: "mainendpoint.region2.skydns.test" }],
  ["region3.skydns.test.", { text: "SOME-RECORD-TEXT" }],
  ["endpoint.region2.skydns.test.", { host: "10.240.0.1" }],
];

const cnameCases: Case[] = [
  {
    qname: "a.server1.dev.region1.skydns.test.",
    qtype: Type.SRV,
    ordered: true,
    answer: ["a.server1.dev.region1.skydns.test. 300 IN SRV 10 100 0 cname1.region2.skydns.test."],
    extra: [
      "cname1.region2.skydns.test. 300 IN CNAME cname2.region2.skydns.test.",
      "cname2.region2.skydns.test. 300 IN CNAME cname3.region2.skydns.test.",
      "cname3.region2.skydns.test. 300 IN CNAME cname4.region2.skydns.test.",
      "cname4.region2.skydns.test. 300 IN CNAME cname5.region2.skydns.test.",
      "cname5.region2.skydns.test. 300 IN CNAME cname6.region2.skydns.test.",
      "cname6.region2.skydns.test. 300 IN CNAME endpoint.region2.skydns.test.",
      "endpoint.region2.skydns.test. 300 IN A 10.240.0.1",
    ],
  },
  {
    qname: "region2.skydns.test.",
    qtype: Type.CNAME,
    ordered: true,
    answer: ["region2.skydns.test. 300 IN CNAME mainendpoint.region2.skydns.test."],
  },
  // A text-only key is filtered by shouldInclude for a CNAME query: NODATA.
  { qname: "region3.skydns.test.", qtype: Type.CNAME, ns: [soa("skydns.test.")] },
  // An A query walks the chain, answers in chase order.
  {
    qname: "a.server1.dev.region1.skydns.test.",
    qtype: Type.A,
    ordered: true,
    answer: [
      "a.server1.dev.region1.skydns.test. 300 IN CNAME cname1.region2.skydns.test.",
      "cname1.region2.skydns.test. 300 IN CNAME cname2.region2.skydns.test.",
      "cname2.region2.skydns.test. 300 IN CNAME cname3.region2.skydns.test.",
      "cname3.region2.skydns.test. 300 IN CNAME cname4.region2.skydns.test.",
      "cname4.region2.skydns.test. 300 IN CNAME cname5.region2.skydns.test.",
      "cname5.region2.skydns.test. 300 IN CNAME cname6.region2.skydns.test.",
      "cname6.region2.skydns.test. 300 IN CNAME endpoint.region2.skydns.test.",
      "endpoint.region2.skydns.test. 300 IN A 10.240.0.1",
    ],
  },
];

Deno.test("CoreDNS cname_test: chains in order, CNAME qtype, text-only NODATA", async () => {
  const source = load(cnameServices);
  for (const c of cnameCases) await check(source, { zones: ["skydns.test."] }, c);
});

// ------------------------------------------------------------ the seed walk-through

Deno.test("seed walk-through: SRV and A for _app/_web under example.local", async () => {
  const source = new MemorySource();
  for (const i of [1, 2, 3]) {
    source.put(
      `/skydns/local/example/_tcp/_web/web-server0${i}`,
      `{"host":"1.1.1.${i}","port":80}`,
    );
    source.put(
      `/skydns/local/example/_tcp/_app/app-server0${i}`,
      `{"host":"1.1.2.${i}","port":8080}`,
    );
  }
  const setup = { zones: ["example.local."] };
  await check(source, setup, {
    qname: "_app._tcp.example.local.",
    qtype: Type.SRV,
    ordered: true,
    answer: [1, 2, 3].map((i) =>
      `_app._tcp.example.local. 300 IN SRV 10 33 8080 app-server0${i}._app._tcp.example.local.`
    ),
    extra: [1, 2, 3].map((i) => `app-server0${i}._app._tcp.example.local. 300 IN A 1.1.2.${i}`),
  });
  await check(source, setup, {
    qname: "_app._tcp.example.local.",
    qtype: Type.A,
    ordered: true,
    answer: [1, 2, 3].map((i) => `_app._tcp.example.local. 300 IN A 1.1.2.${i}`),
  });
  await check(source, setup, {
    qname: "_web._tcp.example.local.",
    qtype: Type.SRV,
    ordered: true,
    answer: [1, 2, 3].map((i) =>
      `_web._tcp.example.local. 300 IN SRV 10 33 80 web-server0${i}._web._tcp.example.local.`
    ),
    extra: [1, 2, 3].map((i) => `web-server0${i}._web._tcp.example.local. 300 IN A 1.1.1.${i}`),
  });
  // The whole tcp subtree: six addresses.
  const all = await ask(source, setup, "_tcp.example.local.", Type.A);
  assert.equal(all.answer.length, 6);
  // And the apex (no dns/apex key): every address of the zone.
  const apex = await ask(source, setup, "example.local.", Type.A);
  assert.equal(apex.answer.length, 6);
});

// ------------------------------------------------------------- subtree semantics

Deno.test("subtree: the exact key is ignored when children exist; siblings never match", async () => {
  const source = new MemorySource();
  source.set("svc.skydns.test.", { host: "10.0.0.9" }); // shadowed by its children
  source.set("a.svc.skydns.test.", { host: "10.0.0.1" });
  source.set("svc2.skydns.test.", { host: "10.0.0.2" }); // a sibling, not a child
  const setup = { zones: ["skydns.test."] };
  await check(source, setup, {
    qname: "svc.skydns.test.",
    qtype: Type.A,
    answer: ["svc.skydns.test. 300 IN A 10.0.0.1"],
  });
  await check(source, setup, {
    qname: "svc2.skydns.test.",
    qtype: Type.A,
    answer: ["svc2.skydns.test. 300 IN A 10.0.0.2"],
  });
  // CNAME and PTR read the exact key only.
  await check(source, setup, {
    qname: "svc.skydns.test.",
    qtype: Type.CNAME,
    ns: [soa("skydns.test.")],
  });
  // Children but no exact key: the name exists, so NODATA (CoreDNS: NXDOMAIN).
  source.delete(source.keyOf("svc.skydns.test."));
  for (const qtype of [Type.CNAME, Type.PTR]) {
    await check(source, setup, { qname: "svc.skydns.test.", qtype, ns: [soa("skydns.test.")] });
  }
  // A name with no key at or below it is still NXDOMAIN for them.
  await check(source, setup, {
    qname: "nothing.skydns.test.",
    qtype: Type.CNAME,
    rcode: Rcode.NameError,
    ns: [soa("skydns.test.")],
  });
  // An interior name with no key of its own still has data below it.
  await check(source, setup, { qname: "skydns.test.", qtype: Type.MX, ns: [soa("skydns.test.")] });
});

Deno.test("wildcards: no match after filtering is NODATA, keys deeper than the name match", async () => {
  const source = new MemorySource();
  source.set("a.east.skydns.test.", { host: "10.0.0.1" });
  source.set("b.deep.a.west.skydns.test.", { host: "10.0.0.2" });
  const setup = { zones: ["skydns.test."] };
  await check(source, setup, {
    qname: "*.east.skydns.test.",
    qtype: Type.A,
    answer: ["*.east.skydns.test. 300 IN A 10.0.0.1"],
  });
  // a.*: the west key is deeper than the name: the subtree matches.
  await check(source, setup, {
    qname: "a.*.skydns.test.",
    qtype: Type.A,
    answer: ["a.*.skydns.test. 300 IN A 10.0.0.1", "a.*.skydns.test. 300 IN A 10.0.0.2"],
  });
  await check(source, setup, {
    qname: "zzz.*.skydns.test.",
    qtype: Type.A,
    ns: [soa("skydns.test.")],
  });
  await check(source, setup, {
    qname: "*.nowhere.skydns.test.",
    qtype: Type.A,
    rcode: Rcode.NameError,
    ns: [soa("skydns.test.")],
  });
});

Deno.test("groups: the shallowest group wins over deeper ones", async () => {
  const source = new MemorySource();
  source.set("a.dom.skydns.test.", { host: "10.0.0.1", group: "g1" });
  source.set("b.sub.dom.skydns.test.", { host: "10.0.0.2", group: "g2" });
  source.set("c.sub.dom.skydns.test.", { host: "10.0.0.3" });
  await check(source, { zones: ["skydns.test."] }, {
    qname: "dom.skydns.test.",
    qtype: Type.A,
    answer: ["dom.skydns.test. 300 IN A 10.0.0.1", "dom.skydns.test. 300 IN A 10.0.0.3"],
  });
});

// --------------------------------------------------------------------- apex

Deno.test("apex: dns/apex answered even when empty; NS needs dns/ns", async () => {
  const source = new MemorySource();
  source.set("x.example.", { host: "10.0.0.2" });
  source.set("apex.dns.example.", { text: "not an address" });
  const setup = { zones: ["example."] };
  // dns/apex exists (0 usable records): NODATA, no fallback to the zone.
  await check(source, setup, { qname: "example.", qtype: Type.A, ns: [soa("example.")] });
  // Other types at the apex use the same lookup to tell NODATA.
  await check(source, setup, { qname: "example.", qtype: Type.ANY, ns: [soa("example.")] });
  // No dns/ns: NODATA at the apex, which exists whatever the data (CoreDNS: NXDOMAIN).
  await check(source, setup, { qname: "example.", qtype: Type.NS, ns: [soa("example.")] });
  source.set("ns1.ns.dns.example.", { host: "example.net" });
  await check(source, setup, {
    qname: "example.",
    qtype: Type.NS,
    rcode: Rcode.ServerFailure,
    ns: [soa("example.")],
    error: "NS record must be an IP address: example.net",
  });
});

Deno.test("apex: a CNAME to the zone name itself reads dns/apex", async () => {
  const source = new MemorySource();
  source.set("www.example.", { host: "EXAMPLE" + "." });
  source.set("apex.dns.example.", { host: "192.0.2.1" });
  source.set("other.example.", { host: "192.0.2.9" });
  await check(source, { zones: ["example."] }, {
    qname: "www.example.",
    qtype: Type.A,
    ordered: true,
    answer: ["www.example. 300 IN CNAME EXAMPLE.", "EXAMPLE. 300 IN A 192.0.2.1"],
  });
});

Deno.test("NS: the address is repeated for a repeated name; targetstrip applies", async () => {
  const source = new MemorySource();
  source.set("a.ns1.ns.dns.example.", { host: "192.0.2.1", targetstrip: 1 });
  source.set("b.ns1.ns.dns.example.", { host: "192.0.2.2", targetstrip: 1 });
  await check(source, { zones: ["example."] }, {
    qname: "EXAMPLE.",
    qtype: Type.NS,
    answer: ["EXAMPLE. 300 IN NS ns1.ns.dns.example."],
    extra: ["ns1.ns.dns.example. 300 IN A 192.0.2.1", "ns1.ns.dns.example. 300 IN A 192.0.2.2"],
  });
});

// ---------------------------------------------------------------- SRV and MX

Deno.test("SRV: weights in float64, port -1 skipped but counted, TXT-type counted", async () => {
  const source = new MemorySource();
  source.set("a.w.skydns.test.", { host: "a.example.org" });
  source.set("b.w.skydns.test.", { host: "b.example.org", weight: 50 });
  await check(source, { zones: ["skydns.test."] }, {
    qname: "w.skydns.test.",
    qtype: Type.SRV,
    answer: [
      "w.skydns.test. 300 IN SRV 10 66 0 a.example.org.",
      "w.skydns.test. 300 IN SRV 10 33 0 b.example.org.",
    ],
  });
  source.set("c.w.skydns.test.", { host: "c.example.org", port: -1 });
  source.set("d.w.skydns.test.", { host: "d.example.org", text: "txt-type" });
  source.set("e.w.skydns.test.", { host: "e.example.org", priority: 20 });
  await check(source, { zones: ["skydns.test."] }, {
    qname: "w.skydns.test.",
    qtype: Type.SRV,
    answer: [
      "w.skydns.test. 300 IN SRV 10 28 0 a.example.org.", // 100/350*100 = 28.57
      "w.skydns.test. 300 IN SRV 10 14 0 b.example.org.",
      "w.skydns.test. 300 IN SRV 20 100 0 e.example.org.",
    ],
  });
});

Deno.test("SRV: eight records get weight 12, a tiny share gets 1", async () => {
  const source = new MemorySource();
  for (let i = 0; i < 8; i++) source.set(`s${i}.eight.skydns.test.`, { host: `10.0.0.${i + 1}` });
  const reply = await ask(source, { zones: ["skydns.test."] }, "eight.skydns.test.", Type.SRV);
  assert.deepEqual(
    reply.answer.map((r) => (r.data as { weight: number }).weight),
    [12, 12, 12, 12, 12, 12, 12, 12],
  );
  const tiny = new MemorySource();
  tiny.set("a.t.skydns.test.", { host: "a.example.org", weight: 1 });
  tiny.set("b.t.skydns.test.", { host: "b.example.org", weight: 1000 });
  const r2 = await ask(tiny, { zones: ["skydns.test."] }, "t.skydns.test.", Type.SRV);
  assert.deepEqual(r2.answer.map((r) => (r.data as { weight: number }).weight), [1, 99]);
});

Deno.test("SRV/MX: targetstrip, duplicate (target, port) and the MX additional quirk", async () => {
  const source = new MemorySource();
  source.set("a.targetstrip.skydns.test.", { host: "10.0.0.1", port: 8080, targetstrip: 1 });
  await check(source, { zones: ["skydns.test."] }, {
    qname: "a.targetstrip.skydns.test.",
    qtype: Type.SRV,
    answer: ["a.targetstrip.skydns.test. 300 IN SRV 10 100 8080 targetstrip.skydns.test."],
    extra: ["targetstrip.skydns.test. 300 IN A 10.0.0.1"],
  });
  const mail = new MemorySource();
  mail.set("a.mx.skydns.test.", { host: "10.0.0.1", mail: true, targetstrip: 1 });
  mail.set("b.mx.skydns.test.", { host: "10.0.0.2", mail: true, targetstrip: 1 });
  await check(mail, { zones: ["skydns.test."] }, {
    qname: "mx.skydns.test.",
    qtype: Type.MX,
    answer: ["mx.skydns.test. 300 IN MX 10 mx.skydns.test."],
    // The additional owners are the unstripped key names.
    extra: ["a.mx.skydns.test. 300 IN A 10.0.0.1", "b.mx.skydns.test. 300 IN A 10.0.0.2"],
  });
  const dup = new MemorySource();
  dup.set("a.d.skydns.test.", { host: "10.0.0.1", port: 80, targetstrip: 1 });
  dup.set("b.d.skydns.test.", { host: "10.0.0.2", port: 80, targetstrip: 1 });
  await check(dup, { zones: ["skydns.test."] }, {
    qname: "d.skydns.test.",
    qtype: Type.SRV,
    answer: ["d.skydns.test. 300 IN SRV 10 50 80 d.skydns.test."],
    extra: ["d.skydns.test. 300 IN A 10.0.0.1", "d.skydns.test. 300 IN A 10.0.0.2"],
  });
});

Deno.test("SRV: a deep prefix gives Domain()'s wrong target", async () => {
  const source = new MemorySource("skydns/ka2");
  source.set("x.local.", { host: "10.0.0.1", port: 1 });
  await check(source, { zones: ["local."], prefix: "skydns/ka2" }, {
    qname: "x.local.",
    qtype: Type.SRV,
    answer: ["x.local. 300 IN SRV 10 100 1 x.local.ka2."],
    extra: ["x.local.ka2. 300 IN A 10.0.0.1"],
  });
});

// -------------------------------------------------------------------- CNAMEs

Deno.test("CNAME: self loops, names below the query and dangling targets are dropped", async () => {
  const source = new MemorySource();
  source.set("self.skydns.test.", { host: "self.skydns.test" });
  source.set("up.skydns.test.", { host: "x.up.skydns.test" });
  source.set("dangling.skydns.test.", { host: "nothing.skydns.test" });
  const setup = { zones: ["skydns.test."] };
  for (const name of ["self", "up", "dangling"]) {
    await check(source, setup, {
      qname: `${name}.skydns.test.`,
      qtype: Type.A,
      ns: [soa("skydns.test.")],
    });
  }
  // The CNAME query itself answers regardless.
  await check(source, setup, {
    qname: "dangling.skydns.test.",
    qtype: Type.CNAME,
    answer: ["dangling.skydns.test. 300 IN CNAME nothing.skydns.test."],
  });
});

Deno.test("CNAME: chains stop after maxCnameChainLength links", async () => {
  const source = new MemorySource();
  const n = 15;
  for (let i = 0; i < n; i++) source.set(`c${i}.skydns.test.`, { host: `c${i + 1}.skydns.test` });
  source.set(`c${n}.skydns.test.`, { host: "10.0.0.1" });
  // The chain breaks before reaching the address, so nothing is answered.
  await check(source, { zones: ["skydns.test."] }, {
    qname: "c0.skydns.test.",
    qtype: Type.A,
    ns: [soa("skydns.test.")],
  });
  // c4 is 11 links from the address: just within the limit.
  const start = n - MAX_CNAME_CHAIN_LENGTH - 1;
  const reply = await ask(source, { zones: ["skydns.test."] }, `c${start}.skydns.test.`, Type.A);
  assert.equal(reply.answer.length, MAX_CNAME_CHAIN_LENGTH + 2);
  assert.equal(show(reply.answer.at(-1)!), `c${n}.skydns.test. 300 IN A 10.0.0.1`);
  const tooLong = await ask(
    source,
    { zones: ["skydns.test."] },
    `c${start - 1}.skydns.test.`,
    Type.A,
  );
  assert.equal(tooLong.answer.length, 0);
});

Deno.test("CNAME: owner names keep the query's case and the host's case", async () => {
  const source = new MemorySource();
  source.set("www.skydns.test.", { host: "Web.SkyDNS.test" });
  source.set("web.skydns.test.", { host: "10.0.0.1" });
  await check(source, { zones: ["skydns.test."] }, {
    qname: "WWW.skydns.TEST.",
    qtype: Type.A,
    ordered: true,
    answer: [
      "WWW.skydns.TEST. 300 IN CNAME Web.SkyDNS.test.",
      "Web.SkyDNS.test. 300 IN A 10.0.0.1",
    ],
  });
});

Deno.test("TXT: chases in-zone CNAMEs; IP hosts with text are no TXT", async () => {
  const source = new MemorySource();
  source.set("alias.skydns.test.", { host: "real.skydns.test" });
  source.set("real.skydns.test.", { text: "v=spf1 -all" });
  source.set("ip.skydns.test.", { host: "10.0.0.1", text: "ignored" });
  const setup = { zones: ["skydns.test."] };
  await check(source, setup, {
    qname: "alias.skydns.test.",
    qtype: Type.TXT,
    ordered: true,
    answer: [
      "alias.skydns.test. 300 IN CNAME real.skydns.test.",
      'alias.skydns.test. 300 IN TXT "v=spf1 -all"'.replace("alias.", "real."),
    ],
  });
  await check(source, setup, {
    qname: "ip.skydns.test.",
    qtype: Type.TXT,
    ns: [soa("skydns.test.")],
  });
  await check(source, setup, {
    qname: "ip.skydns.test.",
    qtype: Type.A,
    answer: ["ip.skydns.test. 300 IN A 10.0.0.1"],
  });
  // A text record is no address: NODATA for A.
  await check(source, setup, {
    qname: "real.skydns.test.",
    qtype: Type.A,
    ns: [soa("skydns.test.")],
  });
});

// ------------------------------------------------------------------ upstream

function upstreamServer(
  records: Record<string, RR[]>,
  truncated = new Set<string>(),
  asked: string[] = [],
): Upstream {
  return (name, type) => {
    asked.push(`${name} ${type}`);
    const key = `${name} ${type}`;
    return Promise.resolve({
      rcode: Rcode.Success,
      authoritative: false,
      truncated: truncated.has(key),
      answer: records[key] ?? [],
      authority: [],
      additional: [],
    });
  };
}

function a(name: string, address: string, type: number = Type.A): RR {
  return { name, type, class: 1, ttl: 60, data: address };
}

Deno.test("upstream: CNAMEs outside the zone are resolved through the server", async () => {
  const source = new MemorySource();
  source.set("ext.skydns.test.", { host: "www.example.org" });
  source.set("missing.skydns.test.", { host: "nx.example.org" });
  const asked: string[] = [];
  const upstream = upstreamServer(
    {
      [`www.example.org. ${Type.A}`]: [
        { name: "www.example.org.", type: Type.CNAME, class: 1, ttl: 60, data: "cdn.example.net." },
        a("cdn.example.net.", "192.0.2.7"),
      ],
    },
    new Set([`www.example.org. ${Type.A}`]),
    asked,
  );
  const setup = { zones: ["skydns.test."], upstream };
  await check(source, setup, {
    qname: "ext.skydns.test.",
    qtype: Type.A,
    ordered: true,
    truncated: true, // TC from upstream propagates for A
    answer: [
      "ext.skydns.test. 300 IN CNAME www.example.org.",
      "www.example.org. 60 IN CNAME cdn.example.net.",
      "cdn.example.net. 60 IN A 192.0.2.7",
    ],
  });
  assert.deepEqual(asked, [`www.example.org. ${Type.A}`]);
  // An empty upstream answer still brings the CNAME (a full server always answers).
  await check(source, setup, {
    qname: "missing.skydns.test.",
    qtype: Type.A,
    answer: ["missing.skydns.test. 300 IN CNAME nx.example.org."],
  });
  // Answers that went through the server's chain are never kept encoded.
  const viaUpstream = await ask(source, setup, "ext.skydns.test.", Type.A);
  assert.equal(viaUpstream.cacheGeneration, undefined);
  // Without a server (a failed lookup) the link is dropped: NODATA.
  await check(source, { zones: ["skydns.test."] }, {
    qname: "ext.skydns.test.",
    qtype: Type.A,
    ns: [soa("skydns.test.")],
  });
});

Deno.test("upstream: TXT does not propagate upstream TC; SRV gets A plus AAAA without CNAMEs", async () => {
  const source = new MemorySource();
  source.set("t.skydns.test.", { host: "txt.example.org" });
  source.set("a.s.skydns.test.", { host: "srv.example.org", port: 443 });
  source.set("b.s.skydns.test.", { host: "srv.example.org", port: 8443 });
  const cname: RR = {
    name: "srv.example.org.",
    type: Type.CNAME,
    class: 1,
    ttl: 60,
    data: "h.example.org.",
  };
  const asked: string[] = [];
  const upstream = upstreamServer(
    {
      [`txt.example.org. ${Type.TXT}`]: [{
        name: "txt.example.org.",
        type: Type.TXT,
        class: 1,
        ttl: 60,
        data: ["hi"],
      }],
      [`srv.example.org. ${Type.A}`]: [cname, a("h.example.org.", "192.0.2.1")],
      [`srv.example.org. ${Type.AAAA}`]: [cname, a("h.example.org.", "2001:db8::1", Type.AAAA)],
    },
    new Set([`txt.example.org. ${Type.TXT}`]),
    asked,
  );
  const setup = { zones: ["skydns.test."], upstream };
  await check(source, setup, {
    qname: "t.skydns.test.",
    qtype: Type.TXT,
    ordered: true,
    answer: ["t.skydns.test. 300 IN CNAME txt.example.org.", 'txt.example.org. 60 IN TXT "hi"'],
  });
  asked.length = 0;
  await check(source, setup, {
    qname: "s.skydns.test.",
    qtype: Type.SRV,
    ordered: true,
    answer: [
      "s.skydns.test. 300 IN SRV 10 50 443 srv.example.org.",
      "s.skydns.test. 300 IN SRV 10 50 8443 srv.example.org.",
    ],
    extra: [
      "srv.example.org. 60 IN CNAME h.example.org.",
      "h.example.org. 60 IN A 192.0.2.1",
      "h.example.org. 60 IN AAAA 2001:db8::1",
    ],
  });
  // Looked up once per distinct target.
  assert.deepEqual(asked.sort(), [`srv.example.org. ${Type.A}`, `srv.example.org. ${Type.AAAA}`]);
});

Deno.test("upstream: the fake A of other types makes no upstream lookups", async () => {
  const source = new MemorySource();
  source.set("ext.skydns.test.", { host: "www.example.org" });
  const asked: string[] = [];
  await check(source, { zones: ["skydns.test."], upstream: upstreamServer({}, new Set(), asked) }, {
    qname: "ext.skydns.test.",
    qtype: Type.HINFO,
    ns: [soa("skydns.test.")],
  });
  assert.deepEqual(asked, []);
});

Deno.test("lookup: synchronous without outside targets; a rejected resolve drops the link", async () => {
  const source = new MemorySource();
  source.set("a.skydns.test.", { host: "10.0.0.1" });
  source.set("ext.skydns.test.", { host: "www.example.org" });
  const env = { source, config: { pathPrefix: "skydns", minLeaseTTL: 0, maxLeaseTTL: 0 } };
  const resolve = (): Promise<UpstreamAnswer> => Promise.reject(new Error("boom"));
  const sync = lookup(env, "skydns.test.", "a.skydns.test.", "a.skydns.test.", Type.A, resolve);
  assert.ok(!(sync instanceof Promise));
  const later = lookup(
    env,
    "skydns.test.",
    "ext.skydns.test.",
    "ext.skydns.test.",
    Type.A,
    resolve,
  );
  assert.ok(later instanceof Promise);
  const outcome = await later;
  assert.equal(outcome.rcode, Rcode.Success);
  assert.equal(outcome.answer.length, 0);
  assert.equal(outcome.pendingUpstream.length, 0);
  // lookupSync alone notes what it would need.
  const pass = lookupSync(
    { ...env, upstream: () => undefined },
    "skydns.test.",
    "ext.skydns.test.",
    "ext.skydns.test.",
    Type.A,
  );
  assert.deepEqual(pass.pendingUpstream, [{ name: "www.example.org.", type: Type.A }]);
});

// ----------------------------------------------------------- zones, fallthrough

Deno.test("zones: the longest zone answers; names outside every zone go to the next plugin", async () => {
  const source = new MemorySource();
  source.set("a.sub.example.", { host: "10.0.0.1" });
  const setup = { zones: ["example.", "sub.example."] };
  // The SOA is the longest matching zone's.
  await check(source, setup, {
    qname: "nx.sub.example.",
    qtype: Type.A,
    rcode: Rcode.NameError,
    ns: [soa("sub.example.")],
  });
  await check(source, setup, {
    qname: "nx.example.",
    qtype: Type.A,
    rcode: Rcode.NameError,
    ns: [soa("example.")],
  });
  const outside = await ask(source, setup, "example.org.", Type.A);
  assert.equal(outside, NEXT_REPLY);
  // Internal CNAME chasing stays inside the matched zone.
  source.set("c.sub.example.", { host: "b.example" });
  source.set("b.example.", { host: "10.0.0.2" });
  await check(source, setup, { qname: "c.sub.example.", qtype: Type.A, ns: [soa("sub.example.")] });
});

Deno.test("fallthrough: only NXDOMAIN in a covered zone goes on", async () => {
  const source = new MemorySource();
  source.set("a.example.", { host: "10.0.0.1" });
  const all = { zones: ["example."], fallthrough: ["."] };
  assert.equal(await ask(source, all, "nx.example.", Type.A), NEXT_REPLY);
  // NODATA stays.
  await check(source, all, { qname: "a.example.", qtype: Type.AAAA, ns: [soa("example.")] });
  const narrow = { zones: ["example."], fallthrough: ["sub.example."] };
  assert.equal(await ask(source, narrow, "x.sub.example.", Type.A), NEXT_REPLY);
  await check(source, narrow, {
    qname: "nx.example.",
    qtype: Type.A,
    rcode: Rcode.NameError,
    ns: [soa("example.")],
  });
});

Deno.test("reverse zones: PTR from the exact key, IP hosts skipped", async () => {
  const source = new MemorySource();
  source.set("1.0.0.10.in-addr.arpa.", { host: "host1.example" });
  source.set("2.0.0.10.in-addr.arpa.", { host: "10.0.0.2" });
  const setup = { zones: ["example.", "0.0.10.in-addr.arpa."] };
  await check(source, setup, {
    qname: "1.0.0.10.in-addr.arpa.",
    qtype: Type.PTR,
    answer: ["1.0.0.10.in-addr.arpa. 300 IN PTR host1.example."],
  });
  await check(source, setup, {
    qname: "2.0.0.10.in-addr.arpa.",
    qtype: Type.PTR,
    ns: [soa("0.0.10.in-addr.arpa.")],
  });
  await check(source, setup, {
    qname: "3.0.0.10.in-addr.arpa.",
    qtype: Type.PTR,
    rcode: Rcode.NameError,
    ns: [soa("0.0.10.in-addr.arpa.")],
  });
});

Deno.test("root zone: SOA names, every host is in the zone, names below '.' are loops", async () => {
  const source = new MemorySource();
  source.set("www.example.", { host: "web.example" });
  source.set("web.example.", { host: "10.0.0.1" });
  const setup = { zones: ["."] };
  await check(source, setup, {
    qname: "nx.",
    qtype: Type.A,
    rcode: Rcode.NameError,
    ns: [soa(".")],
  });
  await check(source, setup, {
    qname: "www.example.",
    qtype: Type.A,
    ordered: true,
    answer: ["www.example. 300 IN CNAME web.example.", "web.example. 300 IN A 10.0.0.1"],
  });
  await check(source, setup, {
    qname: ".",
    qtype: Type.A,
    answer: [". 300 IN A 10.0.0.1"],
  });
});

// ----------------------------------------------------------------- TTLs, JSON

Deno.test("TTLs: from records, from leases clamped, the smaller of both", async () => {
  const source = new MemorySource();
  source.set("rec.skydns.test.", { host: "10.0.0.1", ttl: 60 });
  source.set("lease.skydns.test.", { host: "10.0.0.2" }, "7");
  source.set("short.skydns.test.", { host: "10.0.0.3" }, "8");
  source.set("both.skydns.test.", { host: "10.0.0.4", ttl: 45 }, "9");
  source.set("unknown.skydns.test.", { host: "10.0.0.5" }, "10");
  source.setLease("7", 1000);
  source.setLease("8", 3);
  source.setLease("9", 100);
  const setup = { zones: ["skydns.test."] };
  const ttl = async (name: string, s: Setup = setup) =>
    (await ask(source, s, `${name}.skydns.test.`, Type.A)).answer[0].ttl;
  assert.equal(await ttl("rec"), 60);
  assert.equal(await ttl("lease"), 1000);
  assert.equal(await ttl("short"), 30);
  assert.equal(await ttl("short", { ...setup, minLeaseTTL: 2 }), 3);
  assert.equal(await ttl("lease", { ...setup, maxLeaseTTL: 600 }), 600);
  assert.equal(await ttl("both"), 45);
  assert.equal(await ttl("unknown"), 300);
});

Deno.test("bad JSON: SERVFAIL with the key and Go's error, logged once per version", async () => {
  const source = new MemorySource();
  source.set("good.skydns.test.", { host: "10.0.0.1" });
  source.put("/skydns/test/skydns/bad", '{"host":"10.0.0.2","port":"80"}');
  const logs: string[] = [];
  const setup = { zones: ["skydns.test."], logs };
  const { plugin } = handlerFor(source, setup);
  const error =
    "/skydns/test/skydns/bad: json: cannot unmarshal string into Go struct field Service.port of type int";
  for (let i = 0; i < 3; i++) {
    const reply = await plugin.serve(
      request("bad.skydns.test.", Type.A),
      () => Promise.resolve(NEXT_REPLY),
    );
    assert.equal(reply.rcode, Rcode.ServerFailure);
    assert.equal(reply.error, error);
    assert.deepEqual(lines(reply.authority), [soa("skydns.test.")]);
  }
  // The whole zone reads it at the apex: SERVFAIL there too; siblings are fine.
  const apex = await plugin.serve(
    request("skydns.test.", Type.A),
    () => Promise.resolve(NEXT_REPLY),
  );
  assert.equal(apex.rcode, Rcode.ServerFailure);
  const good = await plugin.serve(
    request("good.skydns.test.", Type.A),
    () => Promise.resolve(NEXT_REPLY),
  );
  assert.equal(good.rcode, Rcode.Success);
  assert.equal(logs.length, 1);
  assert.match(
    logs[0],
    /^\[WARNING\] plugin\/etcd: .*\/skydns\/test\/skydns\/bad: json: cannot unmarshal/,
  );
  // A new version of the key is logged again.
  source.put("/skydns/test/skydns/bad", "{");
  await plugin.serve(request("bad.skydns.test.", Type.A), () => Promise.resolve(NEXT_REPLY));
  assert.equal(logs.length, 2);
  assert.match(logs[1], /unexpected end of JSON input/);
});

// ------------------------------------------------------------- handler extras

Deno.test("handler: SOA answers at the apex only, serial = unix time", async () => {
  const source = new MemorySource();
  source.set("www.example.", { host: "10.0.0.1" });
  const before = Math.floor(Date.now() / 1000);
  const reply = await ask(source, { zones: ["example."] }, "EXAMPLE.", Type.SOA);
  const after = Math.floor(Date.now() / 1000);
  assert.equal(reply.rcode, Rcode.Success);
  assert.deepEqual(lines(reply.answer), [soa("example.")]);
  // Below the apex the SOA goes to the authority section of a NODATA or an
  // NXDOMAIN, as Knot answers (CoreDNS puts the apex SOA in the answer).
  await check(source, { zones: ["example."] }, {
    qname: "www.example.",
    qtype: Type.SOA,
    ns: [soa("example.")],
  });
  await check(source, { zones: ["example."] }, {
    qname: "does.not.exist.EXAMPLE.",
    qtype: Type.SOA,
    rcode: Rcode.NameError,
    ns: [soa("example.")],
  });
  const serial = (reply.answer[0].data as { serial: number }).serial;
  assert.ok(serial >= before && serial <= after);
  // Kept by the server for at most a second, the serial's own resolution.
  assert.equal(reply.cacheGeneration?.(), source.generation);
  assert.deepEqual(soaRecord("x.", 1700000000.9).data, {
    mname: "ns.dns.x.",
    rname: "hostmaster.x.",
    serial: 1700000000,
    refresh: 7200,
    retry: 1800,
    expire: 86400,
    minimum: 30,
  });
});

Deno.test("handler: mirror answers are cacheable per generation; errors are not", async () => {
  const source = new MemorySource();
  source.set("a.example.", { host: "10.0.0.1" });
  source.set("l.example.", { host: "10.0.0.2" }, "5");
  source.setLease("5", 100);
  const plain = await ask(source, { zones: ["example."] }, "a.example.", Type.A);
  assert.equal(plain.cacheGeneration?.(), source.generation);
  // Lease TTLs tick, but the server keeps an encoded reply at most a second.
  const leased = await ask(source, { zones: ["example."] }, "l.example.", Type.A);
  assert.equal(leased.cacheGeneration?.(), source.generation);
  source.put(source.keyOf("bad.example."), "{not json");
  const bad = await ask(source, { zones: ["example."] }, "bad.example.", Type.A);
  assert.equal(bad.rcode, Rcode.ServerFailure);
  assert.equal(bad.cacheGeneration, undefined);
});

Deno.test("handler: waits for the first load, then answers; ready() follows the mirror", async () => {
  const source = new MemorySource();
  source.set("a.example.", { host: "10.0.0.1" });
  const mirror = mirrorOf(source, false);
  const { plugin, start } = handlerFor(source, { zones: ["example."] }, mirror);
  assert.equal(plugin.ready?.(), false);
  const pending = plugin.serve(request("a.example.", Type.A), () => Promise.resolve(NEXT_REPLY));
  void start();
  setTimeout(() => mirror.load(), 10);
  const reply = await pending;
  assert.equal(reply.rcode, Rcode.Success);
  assert.equal(reply.answer.length, 1);
  assert.equal(plugin.ready?.(), true);
});

Deno.test("handler: a panic in a lookup is a bare SERVFAIL", async () => {
  const source = new MemorySource();
  // A key equal to the prefix root makes msg.Domain panic in CoreDNS.
  source.put("/skydns/", '{"host":"10.0.0.1"}');
  const reply = await ask(source, { zones: ["."] }, ".", Type.SRV);
  assert.equal(reply.rcode, Rcode.ServerFailure);
  assert.equal(reply.bare, true);
  assert.match(reply.error ?? "", /index out of range/);
});

Deno.test("SRV: negative weights wrap as Go's uint16(float64) does on amd64", async () => {
  const source = new MemorySource();
  source.set("a.n.skydns.test.", { host: "a.example.org", weight: -50 });
  source.set("b.n.skydns.test.", { host: "b.example.org", weight: 100 });
  source.set("a.z.skydns.test.", { host: "a.example.org", weight: -100 });
  source.set("b.z.skydns.test.", { host: "b.example.org", weight: 100 });
  const weights = async (name: string) =>
    (await ask(source, { zones: ["skydns.test."] }, name, Type.SRV)).answer.map((r) =>
      (r.data as { weight: number }).weight
    );
  // total 50: -100 wraps to 65436, 200 stays; total 0: ±Inf becomes 0, then 1.
  assert.deepEqual(await weights("n.skydns.test."), [65436, 200]);
  assert.deepEqual(await weights("z.skydns.test."), [1, 1]);
});

// ------------------------------------------------------------- existing names

Deno.test("apex: every one of the 65,536 qtypes, in an empty zone and a full one, is never NXDOMAIN", () => {
  const full = new MemorySource();
  full.set("www.example.", { host: "10.0.0.1" });
  full.set("ns1.ns.dns.example.", { host: "10.0.0.53" });
  full.set("apex.dns.example.", { host: "10.0.0.2" });
  const empty = new MemorySource();
  const config = { pathPrefix: "skydns", minLeaseTTL: 0, maxLeaseTTL: 0 };
  for (const [label, source] of [["full", full], ["empty", empty]] as const) {
    const env = { source, config };
    const seen = new Set<number>();
    for (let qtype = 0; qtype < 65536; qtype++) {
      for (const owner of ["example.", "EXAMPLE."]) {
        const outcome = lookupSync(env, "example.", "example.", owner, qtype);
        seen.add(outcome.rcode);
        assert.notEqual(outcome.rcode, Rcode.NameError, `${label} zone, apex qtype ${qtype}`);
        // A NODATA names the zone in its authority section.
        if (outcome.answer.length === 0 && outcome.rcode === Rcode.Success) {
          assert.equal(outcome.authority[0]?.type, Type.SOA, `${label}, qtype ${qtype}: SOA`);
        }
      }
    }
    assert.ok(seen.has(Rcode.Success));
  }
});

Deno.test("empty non-terminals: every qtype gets NODATA, never NXDOMAIN", () => {
  const source = new MemorySource();
  // dns.example. and b.example. exist only as the parents of keys.
  source.set("ns1.ns.dns.example.", { host: "10.0.0.53" });
  source.set("a.b.example.", { host: "host.elsewhere." });
  const env = { source, config: { pathPrefix: "skydns", minLeaseTTL: 0, maxLeaseTTL: 0 } };
  const types = [
    Type.A,
    Type.AAAA,
    Type.CNAME,
    Type.PTR,
    Type.NS,
    Type.SOA,
    Type.TXT,
    Type.MX,
    Type.SRV,
    Type.ANY,
    Type.HINFO,
    Type.CAA,
    Type.DS,
    Type.HTTPS,
  ];
  for (const name of ["dns.example.", "ns.dns.example.", "b.example."]) {
    for (const qtype of types) {
      const outcome = lookupSync(env, "example.", name, name, qtype);
      assert.notEqual(outcome.rcode, Rcode.NameError, `${name} ${qtype}`);
      if (outcome.answer.length === 0) {
        assert.equal(outcome.authority[0]?.type, Type.SOA, `${name} ${qtype}: SOA`);
      }
    }
  }
  // A name nothing is stored at or below stays NXDOMAIN for every type.
  for (const qtype of types) {
    const outcome = lookupSync(env, "example.", "c.example.", "c.example.", qtype);
    assert.equal(outcome.rcode, Rcode.NameError, `c.example. ${qtype}`);
  }
});
