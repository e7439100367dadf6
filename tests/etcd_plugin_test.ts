/**
 * The `etcd` plugin end to end: a real etcd, the real program (`deno run
 * main.ts -conf Corefile`) and real DNS sockets (dig, UDP, TCP).
 *
 * 1. The seed walk-through, word for word (etcdctl puts, `dig +short`).
 * 2. CoreDNS's etcd test fixtures (lookup_test, other_test, cname_test and
 *    the spec's Part A cases of lib/plugins/etcd/lookup_test.ts) through one
 *    server process with several server blocks over one etcd, including the
 *    behaviours only a full server shows: CNAME targets outside the zone
 *    resolved through the server's own chain, fallthrough to the next
 *    plugin, "no next plugin", lease TTLs and clamping, bad JSON.
 * 3. Freshness: a put answers within a second, a delete NXDOMAINs, an
 *    expired lease takes its record away.
 * 4. Outage: etcd stops, answers continue from the copy; etcd returns, new
 *    writes show.
 * 5. Interop: a name claimed by an idetcd node resolves through a server that
 *    runs only the etcd plugin.
 */

import assert from "node:assert/strict";
import type { Etcd3 } from "etcd3";
import { createClient } from "../lib/etcd/client.ts";
import { Rcode, type RR, type SOAData, Type, typeToString } from "../lib/dns/types.ts";
import type { Message } from "../lib/dns/wire.ts";
import { type ServiceFields, serviceJSON, show } from "../lib/plugins/etcd/testing.ts";
import { type EtcdAccess, sharedEtcd, startEtcd } from "./helpers/etcd.ts";
import {
  dig,
  queryTcp,
  queryUdp,
  type ServerProcess,
  startServer,
  writeCorefile,
} from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";

// ------------------------------------------------------------------ helpers

/**
 * The etcd of every test but the outage one (which stops etcd). Each test
 * keeps to its own key prefix (the etcd plugin's `path`, idetcd's `prefix`);
 * the seed walk-through keeps the seed's `/skydns`, which no other test uses.
 */
const shared = sharedEtcd();

/** The fields of a SkyDNS service value (written as JSON, zero values left out). */
type Service = ServiceFields;

/** msg.Path: `a.b.example.` -> `/skydns/example/b/a` (written here, not taken from the product). */
function keyOf(name: string, prefix = "skydns"): string {
  const labels = name.toLowerCase().replace(/\.$/, "").split(".").reverse();
  return `/${prefix}/${labels.join("/")}`;
}

/** Writes every (name, service) pair as its key under `prefix`, in parallel, with the etcd3 client. */
async function putServices(
  client: Etcd3,
  prefix: string,
  services: [string, Service][],
): Promise<void> {
  await Promise.all(
    services.map(([name, s]) => client.put(keyOf(name, prefix)).value(serviceJSON(s))),
  );
}

/** Records in CoreDNS test notation, SOA serials masked, OPT dropped. */
function lines(records: readonly RR[]): string[] {
  return records
    .filter((r) => r.type !== Type.OPT)
    .map((r) => show(r).replace(/ SOA (\S+) (\S+) \d+ /, " SOA $1 $2 SERIAL "));
}

/** The synthesized SOA of `zone`, serial masked. */
function soa(zone: string): string {
  return `${zone} 30 IN SOA ns.dns.${zone} hostmaster.${zone} SERIAL 7200 1800 86400 30`;
}

/** Renames a fixture's zone (CoreDNS's tables all use skydns.test.). */
function rezone<T>(value: T, zone: string): T {
  return JSON.parse(JSON.stringify(value).replaceAll("skydns.test", zone));
}

/** Lease ID (hex, as etcdctl takes it) from `lease grant` output. */
async function grantLease(etcd: EtcdAccess, seconds: number): Promise<string> {
  const out = await etcd.ctl("lease", "grant", String(seconds));
  const hex = /lease ([0-9a-f]+) granted/.exec(out)?.[1];
  assert.ok(hex, `unexpected etcdctl output: ${out}`);
  return hex;
}

/** One expected reply. */
interface Case {
  qname: string;
  qtype: number;
  rcode?: number;
  answer?: string[];
  ns?: string[];
  extra?: string[];
  /** Compare sections in order (CoreDNS's cname_test), not sorted. */
  ordered?: boolean;
  /** Expected AA flag (default true: every etcd reply is authoritative). */
  aa?: boolean;
}

/** Sends every case over TCP (no 512-byte limit) and returns the mismatches, all of them. */
async function mismatches(port: number, cases: readonly Case[]): Promise<string[]> {
  const problems: string[] = [];
  for (const c of cases) {
    const label = `${c.qname} ${typeToString(c.qtype)}`;
    let m: Message;
    try {
      m = await queryTcp("127.0.0.1", port, c.qname, c.qtype);
    } catch (err) {
      problems.push(`${label}: ${(err as Error).message}`);
      continue;
    }
    const norm = (xs: string[]) => (c.ordered ? xs : [...xs].sort());
    const got = {
      rcode: m.rcode,
      aa: m.authoritative,
      tc: m.truncated,
      answer: norm(lines(m.answer)),
      ns: norm(lines(m.authority)),
      extra: norm(lines(m.additional)),
    };
    const want = {
      rcode: c.rcode ?? Rcode.Success,
      aa: c.aa ?? true,
      tc: false,
      answer: norm(c.answer ?? []),
      ns: norm(c.ns ?? []),
      extra: norm(c.extra ?? []),
    };
    try {
      assert.deepEqual(got, want);
    } catch {
      problems.push(
        `${label}:\n  got  ${JSON.stringify(got, null, 1)}\n  want ${
          JSON.stringify(want, null, 1)
        }`,
      );
    }
  }
  return problems;
}

async function checkCases(port: number, cases: readonly Case[]): Promise<void> {
  const problems = await mismatches(port, cases);
  assert.deepEqual(problems, [], `${problems.length} of ${cases.length} cases differ`);
}

/** The A/AAAA/... data of one UDP query's answer, and its rcode. */
async function ask(port: number, name: string, type: number = Type.A) {
  const m = await queryUdp("127.0.0.1", port, name, type);
  return { rcode: m.rcode, data: m.answer.map((r) => r.data), ttls: m.answer.map((r) => r.ttl), m };
}

/** The lines of `dig +short` output, sorted. */
function shortLines(out: string): string[] {
  return out.split("\n").map((l) => l.trim()).filter((l) => l !== "").sort();
}

// ------------------------------------------------------- 1. the seed, verbatim

Deno.test("etcd plugin: the seed walk-through (etcdctl put, dig +short SRV and A)", async () => {
  // The shared etcd, under the seed's own /skydns rather than the scope's prefix.
  const etcd = await shared.scope();
  const port = await freePort();
  // The seed's Corefile; only the ports differ (1053 and localhost:2379 in the seed).
  const conf = await writeCorefile(
    [
      `example.local:${port} {`,
      `    etcd example.local {`,
      `        path /skydns`,
      `        endpoint ${etcd.endpoint}`,
      `    }`,
      `    errors`,
      `    log`,
      `}`,
      ``,
    ].join("\n"),
  );
  await using server = await startServer(conf);
  assert.match(server.output(), new RegExp(`example\\.local\\.:${port}`));

  // srv records for web server
  await etcd.ctl(
    "put",
    "/skydns/local/example/_tcp/_web/web-server01",
    '{"host":"1.1.1.1","port":80}',
  );
  await etcd.ctl(
    "put",
    "/skydns/local/example/_tcp/_web/web-server02",
    '{"host":"1.1.1.2","port":80}',
  );
  await etcd.ctl(
    "put",
    "/skydns/local/example/_tcp/_web/web-server03",
    '{"host":"1.1.1.3","port":80}',
  );
  // srv records for application server
  await etcd.ctl(
    "put",
    "/skydns/local/example/_tcp/_app/app-server01",
    '{"host":"1.1.2.1","port":8080}',
  );
  await etcd.ctl(
    "put",
    "/skydns/local/example/_tcp/_app/app-server02",
    '{"host":"1.1.2.2","port":8080}',
  );
  await etcd.ctl(
    "put",
    "/skydns/local/example/_tcp/_app/app-server03",
    '{"host":"1.1.2.3","port":8080}',
  );

  const digShort = async (type: string, name: string) =>
    shortLines(await dig("+short", "@127.0.0.1", "-p", String(port), type, name));
  const expected: [string, string, string[]][] = [
    ["SRV", "_app._tcp.example.local", [
      "10 33 8080 app-server01._app._tcp.example.local.",
      "10 33 8080 app-server02._app._tcp.example.local.",
      "10 33 8080 app-server03._app._tcp.example.local.",
    ]],
    ["A", "_web._tcp.example.local", ["1.1.1.1", "1.1.1.2", "1.1.1.3"]],
    ["SRV", "_web._tcp.example.local", [
      "10 33 80 web-server01._web._tcp.example.local.",
      "10 33 80 web-server02._web._tcp.example.local.",
      "10 33 80 web-server03._web._tcp.example.local.",
    ]],
    ["A", "_app._tcp.example.local", ["1.1.2.1", "1.1.2.2", "1.1.2.3"]],
  ];
  // The puts are done (etcdctl returned); the watch brings them in within moments.
  await waitFor(async () => (await digShort("SRV", "_app._tcp.example.local")).length === 3, {
    timeoutMs: 5_000,
    what: "the seed's records in answers",
  });
  for (const [type, name, want] of expected) {
    assert.deepEqual(await digShort(type, name), want, `dig +short ${type} ${name}`);
  }
  // The full dig reply: authoritative, the SRV targets' addresses in the additional section.
  const full = await dig("@127.0.0.1", "-p", String(port), "SRV", "_app._tcp.example.local");
  assert.match(full, /status: NOERROR/);
  assert.match(full, /flags: qr aa rd;/);
  assert.match(full, /ANSWER: 3, AUTHORITY: 0, ADDITIONAL: [34]/); // 3 A (+ OPT)
  assert.match(full, /^app-server02\._app\._tcp\.example\.local\.\s+300\s+IN\s+A\s+1\.1\.2\.2$/m);
  // `log` printed the queries.
  await server.waitForOutput(
    /"SRV IN _app\._tcp\.example\.local\. udp \d+ \w+ \d+" NOERROR qr,aa,rd/,
  );
});

// --------------------------------------------- 2. fixtures through real sockets

// CoreDNS lookup_test (zones skydns.test., skydns_*.test., 10.0.0.0/24).
const lookupServices: [string, Service][] = [
  ["a.server1.dev.region1.skydns.test.", { host: "dev.server1", port: 8080 }],
  ["a.server1.prod.region1.skydns.test.", { host: "10.0.0.1", port: 8080 }],
  ["b.server1.prod.region1.skydns.test.", { host: "10.0.0.2", port: 8080 }],
  ["b.server6.prod.region1.skydns.test.", { host: "::1", port: 8080 }],
  ["cname.prod.region1.skydns.test.", { host: "unresolvable.skydns.test" }],
  ["priority.skydns.test.", { host: "priority.server1", priority: 333, port: 8080 }],
  ["a.sub.region1.skydns.test.", { host: "sub.server1", port: 0 }],
  ["b.sub.region1.skydns.test.", { host: "sub.server2", port: 80 }],
  ["c.sub.region1.skydns.test.", { host: "10.0.0.1", port: 8080 }],
  ["b.cname.skydns.test.", { host: "a.cname.skydns.test" }],
  ["a.cname.skydns.test.", { host: "b.cname.skydns.test" }],
  ["a.ns.dns.skydns.test.", { host: "10.0.0.2" }],
  ["b.ns.dns.skydns.test.", { host: "10.0.0.3" }],
  ["x.skydns_zonea.test.", { host: "10.0.0.2" }],
  ["y.skydns_zonea.test.", { host: "10.0.0.3" }],
  ["x.skydns_zoneb.test.", { host: "10.0.0.2" }],
  ["y.skydns_zoneb.test.", { host: "10.0.0.3" }],
  ["apex.dns.skydns_zoneb.test.", { host: "10.0.0.4" }],
  ["x.skydns_zonec.test.", { host: "10.0.0.2" }],
  ["y.skydns_zonec.test.", { host: "10.0.0.3" }],
  ["a1.apex.dns.skydns_zonec.test.", { host: "10.0.0.4" }],
  ["a2.apex.dns.skydns_zonec.test.", { host: "10.0.0.5" }],
  ["x.skydns_zoned.test.", { host: "10.0.0.2" }],
  ["y.skydns_zoned.test.", { host: "10.0.0.3" }],
  ["a1.apex.dns.skydns_zoned.test.", { host: "10.0.0.4" }],
  ["a2.apex.dns.skydns_zoned.test.", { host: "10.0.0.5" }],
  ["a3.apex.dns.skydns_zoned.test.", { host: "2003::8:1" }],
  ["a4.apex.dns.skydns_zoned.test.", { host: "2003::8:2" }],
  ["1.0.0.10.in-addr.arpa.", { host: "reverse.example.com" }],
];

const lookupCases: Case[] = [
  {
    qname: "a.server1.dev.region1.skydns.test.",
    qtype: Type.SRV,
    answer: ["a.server1.dev.region1.skydns.test. 300 IN SRV 10 100 8080 dev.server1."],
  },
  // Original-case owner names.
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
  // NODATA: an A-only name asked for AAAA is NOERROR with the SOA.
  {
    qname: "a.server1.prod.region1.skydns.test.",
    qtype: Type.AAAA,
    ns: [soa("skydns.test.")],
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
  // Subtree: an interior name answers every descendant.
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
  // Dangling CNAME inside the zone: NODATA.
  { qname: "cname.prod.region1.skydns.test.", qtype: Type.A, ns: [soa("skydns.test.")] },
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
  // CNAME loop: NODATA.
  { qname: "a.cname.skydns.test.", qtype: Type.A, ns: [soa("skydns.test.")] },
  // In a full server (unlike CoreDNS's unit test, which has none) the outside
  // target `dev.server1.` is looked up through the server: it matches no block,
  // the REFUSED reply is still a reply, so the CNAME is appended (spec A.3.14).
  {
    qname: "a.server1.dev.region1.skydns.test.",
    qtype: Type.TXT,
    answer: ["a.server1.dev.region1.skydns.test. 300 IN CNAME dev.server1."],
  },
  { qname: "a.server1.dev.region1.skydns.test.", qtype: Type.HINFO, ns: [soa("skydns.test.")] },
  {
    qname: "a.server1.nonexistent.region1.skydns.test.",
    qtype: Type.HINFO,
    rcode: Rcode.NameError,
    ns: [soa("skydns.test.")],
  },
  { qname: "skydns.test.", qtype: Type.SOA, answer: [soa("skydns.test.")] },
  // SOA below the apex: NXDOMAIN (or NODATA) with the SOA in the authority section, as Knot.
  {
    qname: "no.such.name.skydns.test.",
    qtype: Type.SOA,
    rcode: Rcode.NameError,
    ns: [soa("skydns.test.")],
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
  { qname: "a.skydns.test.", qtype: Type.NS, rcode: Rcode.NameError, ns: [soa("skydns.test.")] },
  {
    qname: "ns.dns.skydns.test.",
    qtype: Type.A,
    answer: ["ns.dns.skydns.test. 300 IN A 10.0.0.2", "ns.dns.skydns.test. 300 IN A 10.0.0.3"],
  },
  { qname: "skydns_extra.test.", qtype: Type.SOA, answer: [soa("skydns_extra.test.")] },
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
  // PTR in the reverse zone `10.0.0.0/24` -> 0.0.10.in-addr.arpa.
  {
    qname: "1.0.0.10.in-addr.arpa.",
    qtype: Type.PTR,
    answer: ["1.0.0.10.in-addr.arpa. 300 IN PTR reverse.example.com."],
  },
  {
    qname: "2.0.0.10.in-addr.arpa.",
    qtype: Type.PTR,
    rcode: Rcode.NameError,
    ns: [soa("0.0.10.in-addr.arpa.")],
  },
  // A block zone the etcd line does not list: no next plugin, a bare SERVFAIL.
  { qname: "x.nonext.test.", qtype: Type.A, rcode: Rcode.ServerFailure, aa: false },
  // Outside every block: REFUSED by the server.
  { qname: "1.0.0.11.in-addr.arpa.", qtype: Type.PTR, rcode: Rcode.Refused, aa: false },
];

// CoreDNS other_test, moved to zone other.test.
const otherServices: [string, Service][] = rezone<[string, Service][]>([
  ["a.server1.dev.region1.skydns.test.", { host: "dev.server1", port: 8080 }],
  ["a.mail.skydns.test.", { host: "mx.skydns.test", priority: 50, mail: true }],
  ["b.mail.skydns.test.", { host: "mx.miek.nl", priority: 50, mail: true }],
  ["a.mx.skydns.test.", { host: "a.ipaddr.skydns.test", priority: 30, mail: true }],
  ["a.mx2.skydns.test.", { host: "a.ipaddr.skydns.test", mail: true }],
  ["b.mx2.skydns.test.", { host: "b.ipaddr.skydns.test", mail: true }],
  ["a.mx3.skydns.test.", { host: "a.ipaddr.skydns.test", priority: 20, mail: true }],
  ["b.mx3.skydns.test.", { host: "a.ipaddr.skydns.test", priority: 30, mail: true }],
  ["a.ipaddr.skydns.test.", { host: "172.16.1.1" }],
  ["b.ipaddr.skydns.test.", { host: "172.16.1.2" }],
  ["a1.txt.skydns.test.", { text: "abc" }],
  ["a2.txt.skydns.test.", { text: "abc abc" }],
  ["large400.skydns.test.", { text: "0".repeat(400) }],
  ["large600.skydns.test.", { text: "0".repeat(600) }],
  ["large2000.skydns.test.", { text: "0".repeat(2000) }],
  ["exact255.skydns.test.", { text: "a".repeat(255) }],
  ["ipv4.ns.dns.skydns.test.", { host: "172.17.1.1" }],
  ["http.multiport.http.skydns.test.", { host: "10.11.11.10", port: 80 }],
  ["https.multiport.http.skydns.test.", { host: "10.11.11.10", port: 443 }],
], "other.test");

const otherCases: Case[] = rezone<Case[]>([
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
  // The outside exchange mx.miek.nl. is looked up through the server (REFUSED: nothing added).
  {
    qname: "mail.skydns.test.",
    qtype: Type.MX,
    answer: [
      "mail.skydns.test. 300 IN MX 50 mx.skydns.test.",
      "mail.skydns.test. 300 IN MX 50 mx.miek.nl.",
    ],
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
    qname: "large600.skydns.test.",
    qtype: Type.TXT,
    answer: [
      `large600.skydns.test. 300 IN TXT "${"0".repeat(255)}" "${"0".repeat(255)}" "${
        "0".repeat(90)
      }"`,
    ],
  },
  // split255's quirk: an exact multiple of 255 gets a trailing empty string.
  {
    qname: "exact255.skydns.test.",
    qtype: Type.TXT,
    answer: [`exact255.skydns.test. 300 IN TXT "${"a".repeat(255)}" ""`],
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
], "other.test");

// CoreDNS cname_test, moved to zone chain.test.
const cnameServices: [string, Service][] = rezone<[string, Service][]>([
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
], "chain.test");

const chain = (n: number) =>
  `cname${n}.region2.chain.test. 300 IN CNAME ${
    n === 6 ? "endpoint" : `cname${n + 1}`
  }.region2.chain.test.`;

const cnameCases: Case[] = [
  {
    qname: "a.server1.dev.region1.chain.test.",
    qtype: Type.SRV,
    ordered: true,
    answer: ["a.server1.dev.region1.chain.test. 300 IN SRV 10 100 0 cname1.region2.chain.test."],
    extra: [
      ...[1, 2, 3, 4, 5, 6].map(chain),
      "endpoint.region2.chain.test. 300 IN A 10.240.0.1",
    ],
  },
  {
    qname: "region2.chain.test.",
    qtype: Type.CNAME,
    answer: ["region2.chain.test. 300 IN CNAME mainendpoint.region2.chain.test."],
  },
  { qname: "region3.chain.test.", qtype: Type.CNAME, ns: [soa("chain.test.")] },
  {
    qname: "a.server1.dev.region1.chain.test.",
    qtype: Type.A,
    ordered: true,
    answer: [
      "a.server1.dev.region1.chain.test. 300 IN CNAME cname1.region2.chain.test.",
      ...[1, 2, 3, 4, 5, 6].map(chain),
      "endpoint.region2.chain.test. 300 IN A 10.240.0.1",
    ],
  },
];

// The spec's Part A cases of lookup_test.ts (subtree, groups, SRV weights,
// targetstrip, MX quirk, CNAME case and loops, TXT chase), zone more.test.,
// plus CNAMEs to outside names that the server answers itself.
const moreServices: [string, Service][] = [
  ["svc.more.test.", { host: "10.0.0.9" }], // shadowed by its child
  ["a.svc.more.test.", { host: "10.0.0.1" }],
  ["svc2.more.test.", { host: "10.0.0.2" }], // a sibling, not a child
  ["a.nokey.more.test.", { host: "10.0.0.3" }],
  ["a.dom.more.test.", { host: "10.0.0.1", group: "g1" }],
  ["b.sub.dom.more.test.", { host: "10.0.0.2", group: "g2" }],
  ["c.sub.dom.more.test.", { host: "10.0.0.3" }],
  ["a.w.more.test.", { host: "a.example.org" }],
  ["b.w.more.test.", { host: "b.example.org", weight: 50 }],
  ["c.w.more.test.", { host: "c.example.org", port: -1 }],
  ["d.w.more.test.", { host: "d.example.org", text: "txt-type" }],
  ["e.w.more.test.", { host: "e.example.org", priority: 20 }],
  ["a.targetstrip.more.test.", { host: "10.0.0.1", port: 8080, targetstrip: 1 }],
  ["a.mx.more.test.", { host: "10.0.0.1", mail: true, targetstrip: 1 }],
  ["b.mx.more.test.", { host: "10.0.0.2", mail: true, targetstrip: 1 }],
  ["www.more.test.", { host: "Web.More.test" }],
  ["web.more.test.", { host: "10.0.0.1" }],
  ["self.more.test.", { host: "self.more.test" }],
  ["dangling.more.test.", { host: "nothing.more.test" }],
  ["alias.more.test.", { host: "real.more.test" }],
  ["real.more.test.", { text: "v=spf1 -all" }],
  ["ip.more.test.", { host: "10.0.0.1", text: "ignored" }],
  ["v6.more.test.", { host: "2001:db8::1" }],
  ["rec.more.test.", { host: "10.0.0.5", ttl: 60 }],
  // CNAMEs to names outside the zone.
  ["ext.more.test.", { host: "www.outside.test" }],
  ["srvext.more.test.", { host: "www.outside.test", port: 443 }],
  ["nowhere.more.test.", { host: "nowhere.invalid" }],
  ["www.outside.test.", { host: "192.0.2.10" }],
];

const more = soa("more.test.");
const moreCases: Case[] = [
  // Subtree: the exact key is ignored when children exist; siblings never match.
  { qname: "svc.more.test.", qtype: Type.A, answer: ["svc.more.test. 300 IN A 10.0.0.1"] },
  { qname: "svc2.more.test.", qtype: Type.A, answer: ["svc2.more.test. 300 IN A 10.0.0.2"] },
  { qname: "svc.more.test.", qtype: Type.CNAME, ns: [more] },
  { qname: "nokey.more.test.", qtype: Type.A, answer: ["nokey.more.test. 300 IN A 10.0.0.3"] },
  // The name has keys below it, so it exists: NODATA (RFC 8020; CoreDNS says NXDOMAIN).
  { qname: "nokey.more.test.", qtype: Type.CNAME, ns: [more] },
  { qname: "nx.more.test.", qtype: Type.A, rcode: Rcode.NameError, ns: [more] },
  { qname: "svc.more.test.", qtype: Type.ANY, ns: [more] },
  { qname: "nx.more.test.", qtype: Type.SOA, rcode: Rcode.NameError, ns: [more] },
  // Groups: the shallowest group wins.
  {
    qname: "dom.more.test.",
    qtype: Type.A,
    answer: ["dom.more.test. 300 IN A 10.0.0.1", "dom.more.test. 300 IN A 10.0.0.3"],
  },
  // SRV weights: port -1 skipped but counted, TXT-type counted, priorities apart.
  {
    qname: "w.more.test.",
    qtype: Type.SRV,
    answer: [
      "w.more.test. 300 IN SRV 10 28 0 a.example.org.",
      "w.more.test. 300 IN SRV 10 14 0 b.example.org.",
      "w.more.test. 300 IN SRV 20 100 0 e.example.org.",
    ],
  },
  {
    qname: "a.targetstrip.more.test.",
    qtype: Type.SRV,
    answer: ["a.targetstrip.more.test. 300 IN SRV 10 100 8080 targetstrip.more.test."],
    extra: ["targetstrip.more.test. 300 IN A 10.0.0.1"],
  },
  // MX from mail:true IP hosts: additional owners are the unstripped key names.
  {
    qname: "mx.more.test.",
    qtype: Type.MX,
    answer: ["mx.more.test. 300 IN MX 10 mx.more.test."],
    extra: ["a.mx.more.test. 300 IN A 10.0.0.1", "b.mx.more.test. 300 IN A 10.0.0.2"],
  },
  // Owner names keep the query's case and the host's case.
  {
    qname: "WWW.more.TEST.",
    qtype: Type.A,
    ordered: true,
    answer: ["WWW.more.TEST. 300 IN CNAME Web.More.test.", "Web.More.test. 300 IN A 10.0.0.1"],
  },
  { qname: "self.more.test.", qtype: Type.A, ns: [more] },
  { qname: "dangling.more.test.", qtype: Type.A, ns: [more] },
  {
    qname: "dangling.more.test.",
    qtype: Type.CNAME,
    answer: ["dangling.more.test. 300 IN CNAME nothing.more.test."],
  },
  {
    qname: "alias.more.test.",
    qtype: Type.TXT,
    ordered: true,
    answer: [
      "alias.more.test. 300 IN CNAME real.more.test.",
      'real.more.test. 300 IN TXT "v=spf1 -all"',
    ],
  },
  { qname: "ip.more.test.", qtype: Type.TXT, ns: [more] },
  { qname: "ip.more.test.", qtype: Type.A, answer: ["ip.more.test. 300 IN A 10.0.0.1"] },
  { qname: "real.more.test.", qtype: Type.A, ns: [more] },
  { qname: "v6.more.test.", qtype: Type.AAAA, answer: ["v6.more.test. 300 IN AAAA 2001:db8::1"] },
  { qname: "v6.more.test.", qtype: Type.A, ns: [more] },
  // TTL from the record.
  { qname: "rec.more.test.", qtype: Type.A, answer: ["rec.more.test. 60 IN A 10.0.0.5"] },
  // A CNAME out of the zone, answered by the server's outside.test block.
  {
    qname: "ext.more.test.",
    qtype: Type.A,
    ordered: true,
    answer: [
      "ext.more.test. 300 IN CNAME www.outside.test.",
      "www.outside.test. 300 IN A 192.0.2.10",
    ],
  },
  // The same target's AAAA is NODATA there: the CNAME alone.
  {
    qname: "ext.more.test.",
    qtype: Type.AAAA,
    answer: ["ext.more.test. 300 IN CNAME www.outside.test."],
  },
  {
    qname: "srvext.more.test.",
    qtype: Type.SRV,
    answer: ["srvext.more.test. 300 IN SRV 10 100 443 www.outside.test."],
    extra: ["www.outside.test. 300 IN A 192.0.2.10"],
  },
  // A target no block serves: REFUSED is still a reply, so the CNAME stays (A.3.14).
  {
    qname: "nowhere.more.test.",
    qtype: Type.A,
    answer: ["nowhere.more.test. 300 IN CNAME nowhere.invalid."],
  },
];

// Wildcards, zone wild.test.
const wildServices: [string, Service][] = [
  ["a.east.wild.test.", { host: "10.0.0.1" }],
  ["b.deep.a.west.wild.test.", { host: "10.0.0.2" }],
];
const wild = soa("wild.test.");
const wildCases: Case[] = [
  { qname: "*.east.wild.test.", qtype: Type.A, answer: ["*.east.wild.test. 300 IN A 10.0.0.1"] },
  {
    qname: "any.east.wild.test.",
    qtype: Type.A,
    answer: ["any.east.wild.test. 300 IN A 10.0.0.1"],
  },
  {
    qname: "a.*.wild.test.",
    qtype: Type.A,
    answer: ["a.*.wild.test. 300 IN A 10.0.0.1", "a.*.wild.test. 300 IN A 10.0.0.2"],
  },
  {
    qname: "a.ANY.wild.test.",
    qtype: Type.A,
    answer: ["a.ANY.wild.test. 300 IN A 10.0.0.1", "a.ANY.wild.test. 300 IN A 10.0.0.2"],
  },
  { qname: "zzz.*.wild.test.", qtype: Type.A, ns: [wild] },
  { qname: "*.nowhere.wild.test.", qtype: Type.A, rcode: Rcode.NameError, ns: [wild] },
];

// Fallthrough, zone fall.test (then whoami).
const fallServices: [string, Service][] = [["a.fall.test.", { host: "10.0.0.1" }]];

Deno.test("etcd plugin: CoreDNS's fixtures through one server and one etcd", async (t) => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  const client = createClient({ endpoints: [etcd.endpoint] }, ".");
  try {
    await putServices(client, P.slice(1), [
      ...lookupServices,
      ...otherServices,
      ...cnameServices,
      ...moreServices,
      ...wildServices,
      ...fallServices,
    ]);
  } finally {
    client.close();
  }
  const port = await freePort();
  const p = `:${port}`;
  const E = etcd.endpoint;
  const skydnsZones = [
    "skydns.test",
    "skydns_extra.test",
    "skydns_zonea.test",
    "skydns_zoneb.test",
    "skydns_zonec.test",
    "skydns_zoned.test",
    "10.0.0.0/24",
  ];
  const conf = await writeCorefile(
    [
      // Several zones in one block, named on the etcd line; nonext.test is a block key only.
      `${[...skydnsZones, "nonext.test"].map((z) => z + p).join(" ")} {`,
      `    etcd ${skydnsZones.join(" ")} {`,
      `        path ${P}`,
      `        endpoint ${E}`,
      `    }`,
      `    errors`,
      `}`,
      // Zones from the block keys.
      `other.test${p} chain.test${p} more.test${p} wild.test${p} {`,
      `    etcd {`,
      `        path ${P}`,
      `        endpoint ${E}`,
      `    }`,
      `    errors`,
      `}`,
      // The outside zone more.test's CNAMEs point to.
      `outside.test${p} {`,
      `    etcd {`,
      `        path ${P}`,
      `        endpoint ${E}`,
      `    }`,
      `}`,
      `fall.test${p} {`,
      `    etcd {`,
      `        path ${P}`,
      `        endpoint ${E}`,
      `        fallthrough`,
      `    }`,
      `    whoami`,
      `}`,
      `clamp.test${p} {`,
      `    etcd {`,
      `        path ${P}`,
      `        endpoint ${E}`,
      `        min-lease-ttl 15m`,
      `        max-lease-ttl 1200`,
      `    }`,
      `}`,
      ``,
    ].join("\n"),
  );
  await using server = await startServer(conf);
  // Loading runs with the server's start; the first queries wait for it.
  await waitFor(async () => (await ask(port, "a.fall.test.")).data[0] === "10.0.0.1", {
    what: "the first answer",
  });

  await t.step("lookup_test: several zones, apex, NS, SOA, wildcards, PTR", async () => {
    await checkCases(port, lookupCases);
    // The SOA serial is the current Unix time.
    const m = await queryTcp("127.0.0.1", port, "skydns.test.", Type.SOA);
    const serial = (m.answer[0].data as SOAData).serial;
    assert.ok(Math.abs(serial - Date.now() / 1000) < 10, `serial ${serial}`);
    // The bare SERVFAIL was logged by errors.
    await server.waitForOutput(
      /\[ERROR\] plugin\/errors: 2 x\.nonext\.test\. A: plugin\/etcd: no next plugin found/,
    );
  });

  await t.step("other_test: MX, TXT (split at 255), NS, duplicate addresses", async () => {
    await checkCases(port, otherCases);
    const m = await queryTcp("127.0.0.1", port, "large2000.other.test.", Type.TXT);
    const strings = m.answer[0].data as string[];
    assert.deepEqual(strings.map((s) => s.length), [255, 255, 255, 255, 255, 255, 255, 215]);
    // Over UDP without EDNS the 2000-byte TXT does not fit 512 bytes: TC.
    const udp = await queryUdp("127.0.0.1", port, "large2000.other.test.", Type.TXT);
    assert.equal(udp.truncated, true);
  });

  await t.step("cname_test: chains in order, CNAME qtype, text-only NODATA", async () => {
    await checkCases(port, cnameCases);
  });

  await t.step("subtree, groups, SRV weights, targetstrip, CNAMEs in and out", async () => {
    await checkCases(port, moreCases);
  });

  await t.step("wildcards `*` and `any`", async () => {
    await checkCases(port, wildCases);
  });

  await t.step("fallthrough: NXDOMAIN goes to whoami, NODATA does not", async () => {
    await checkCases(port, [
      { qname: "a.fall.test.", qtype: Type.A, answer: ["a.fall.test. 300 IN A 10.0.0.1"] },
      { qname: "a.fall.test.", qtype: Type.AAAA, ns: [soa("fall.test.")] },
    ]);
    const m = await queryTcp("127.0.0.1", port, "nx.fall.test.", Type.A);
    assert.equal(m.rcode, Rcode.Success);
    assert.deepEqual(m.answer, []);
    assert.deepEqual(m.authority, []);
    // whoami's reply: the client's address in the additional section.
    assert.deepEqual(m.additional[0], {
      name: "nx.fall.test.",
      type: Type.A,
      class: 1,
      ttl: 0,
      data: "127.0.0.1",
    });
    // Without fallthrough (more.test) the same kind of name is NXDOMAIN.
    assert.equal((await ask(port, "nx.more.test.")).rcode, Rcode.NameError);
  });

  await t.step("TTLs from leases, clamped by min-lease-ttl/max-lease-ttl", async () => {
    const l600 = await grantLease(etcd, 600);
    const l3600 = await grantLease(etcd, 3600);
    const l20 = await grantLease(etcd, 20);
    const put = (key: string, value: string, lease: string) =>
      etcd.ctl("put", `--lease=${lease}`, key, value);
    await put(`${P}/test/more/lease`, '{"host":"10.1.0.1"}', l600);
    await put(`${P}/test/more/leasettl`, '{"host":"10.1.0.2","ttl":45}', l600);
    await put(`${P}/test/more/short`, '{"host":"10.1.0.3"}', l20);
    await put(`${P}/test/clamp/a`, '{"host":"10.1.0.4"}', l600);
    await put(`${P}/test/clamp/b`, '{"host":"10.1.0.5"}', l3600);
    // Lease TTLs are fetched in the background: poll until the answer carries them.
    const ttlOf = async (name: string) => {
      const r = await ask(port, name);
      return r.data.length === 1 ? r.ttls[0] : undefined;
    };
    const settle = (name: string, ok: (ttl: number) => boolean) =>
      waitFor(async () => {
        const ttl = await ttlOf(name);
        return ttl !== undefined && ok(ttl) ? ttl : undefined;
      }, { timeoutMs: 5_000, what: `lease TTL of ${name}` });
    // Default clamping [30, 86400]: the lease's remaining seconds.
    const leased = await settle("lease.more.test.", (ttl) => ttl <= 600);
    assert.ok(leased > 500 && leased <= 600, `lease TTL ${leased}`);
    // Record ttl 45 and lease ~600: the smaller.
    assert.equal(await settle("leasettl.more.test.", (ttl) => ttl !== 300), 45);
    // A 20 s lease is raised to the default minimum of 30.
    assert.equal(await settle("short.more.test.", (ttl) => ttl !== 300), 30);
    // min-lease-ttl 15m raises 600 to 900; max-lease-ttl 1200 lowers 3600 to 1200.
    assert.equal(await settle("a.clamp.test.", (ttl) => ttl !== 300), 900);
    assert.equal(await settle("b.clamp.test.", (ttl) => ttl !== 300), 1200);
  });

  await t.step("bad JSON: SERVFAIL with the SOA, logged; other names keep answering", async () => {
    await etcd.ctl("put", `${P}/test/more/bad`, '{"host":"10.0.0.2","port":"80"}');
    await waitFor(
      async () => (await ask(port, "bad.more.test.")).rcode === Rcode.ServerFailure,
      { timeoutMs: 5_000, what: "SERVFAIL for the bad value" },
    );
    await checkCases(port, [
      { qname: "bad.more.test.", qtype: Type.A, rcode: Rcode.ServerFailure, ns: [more] },
      { qname: "svc.more.test.", qtype: Type.A, answer: ["svc.more.test. 300 IN A 10.0.0.1"] },
      { qname: "bad.more.test.", qtype: Type.SRV, rcode: Rcode.ServerFailure, ns: [more] },
      {
        qname: "a.server1.prod.region1.skydns.test.",
        qtype: Type.A,
        answer: ["a.server1.prod.region1.skydns.test. 300 IN A 10.0.0.1"],
      },
    ]);
    await server.waitForOutput(
      `${P}/test/more/bad: json: cannot unmarshal string into Go struct field Service.port of type int`,
    );
    assert.ok(
      server.output().includes(`[ERROR] plugin/errors: 2 bad.more.test. A: ${P}/test/more/bad`),
      server.output(),
    );
    // A fixed value answers again.
    await etcd.ctl("put", `${P}/test/more/bad`, '{"host":"10.0.0.2","port":80}');
    await waitFor(async () => (await ask(port, "bad.more.test.")).data[0] === "10.0.0.2", {
      timeoutMs: 5_000,
      what: "the fixed value",
    });
  });
});

// -------------------------------------------------------------- 3. freshness

/** Polls `probe` as fast as it answers until it returns true; the elapsed ms. */
async function timeUntil(probe: () => Promise<boolean>, what: string, timeoutMs = 1_000) {
  const t0 = performance.now();
  await waitFor(probe, { timeoutMs, intervalMs: 1, what });
  return performance.now() - t0;
}

/** A server with one etcd block `zone`, on etcd, reading keys under `path` (default /skydns). */
async function etcdServer(
  etcd: EtcdAccess,
  zone: string,
  path?: string,
): Promise<[ServerProcess, number]> {
  const port = await freePort();
  const pathLine = path === undefined ? "" : `        path ${path}\n`;
  const conf = await writeCorefile(
    `${zone}:${port} {\n    etcd {\n${pathLine}        endpoint ${etcd.endpoint}\n    }\n    errors\n}\n`,
  );
  return [await startServer(conf), port];
}

Deno.test("etcd plugin: puts, deletes and expired leases show in answers at once", async () => {
  const etcd = await shared.scope();
  const P = etcd.prefix;
  const [server, port] = await etcdServer(etcd, "fresh.test", P);
  await using _server = server;
  const client = createClient({ endpoints: [etcd.endpoint] }, ".");
  try {
    // Loaded (empty zone: NXDOMAIN, not the not-loaded SERVFAIL).
    await waitFor(async () => (await ask(port, "a.fresh.test.")).rcode === Rcode.NameError, {
      what: "the first load",
    });
    const t0 = performance.now();
    await client.put(`${P}/test/fresh/a`).value('{"host":"10.9.0.1"}');
    const acked = performance.now();
    const putMs = await timeUntil(
      async () => (await ask(port, "a.fresh.test.")).data[0] === "10.9.0.1",
      "the put in answers",
    );
    // An update.
    await client.put(`${P}/test/fresh/a`).value('{"host":"10.9.0.2"}');
    const updateMs = await timeUntil(
      async () => (await ask(port, "a.fresh.test.")).data[0] === "10.9.0.2",
      "the update in answers",
    );
    await client.delete().key(`${P}/test/fresh/a`);
    const deleteMs = await timeUntil(
      async () => (await ask(port, "a.fresh.test.")).rcode === Rcode.NameError,
      "NXDOMAIN after the delete",
    );
    console.log(
      `freshness: put answered ${putMs.toFixed(1)} ms after etcd acknowledged it ` +
        `(${(acked - t0 + putMs).toFixed(1)} ms after the put began), update ${
          updateMs.toFixed(1)
        } ms, delete ${deleteMs.toFixed(1)} ms`,
    );

    // An expiring lease: etcd deletes the key, the watch takes it out of answers.
    const grantedAt = performance.now();
    const lease = await grantLease(etcd, 2);
    await etcd.ctl("put", `--lease=${lease}`, `${P}/test/fresh/eph`, '{"host":"10.9.0.3"}');
    await timeUntil(
      async () => (await ask(port, "eph.fresh.test.")).data[0] === "10.9.0.3",
      "the leased record",
    );
    await timeUntil(
      async () => (await ask(port, "eph.fresh.test.")).rcode === Rcode.NameError,
      "the expired lease's record gone",
      10_000,
    );
    const goneMs = performance.now() - grantedAt;
    console.log(
      `freshness: a 2 s lease's record left the answers ${goneMs.toFixed(0)} ms after the grant`,
    );
    assert.ok(goneMs >= 1_500, `gone only once the lease expired (${goneMs} ms)`);
  } finally {
    client.close();
  }
});

// ----------------------------------------------------------------- 4. outage

Deno.test("etcd plugin: answers from the copy while etcd is down, catches up after", async () => {
  await using etcd = await startEtcd();
  await etcd.ctl("put", "/skydns/test/outage/a", '{"host":"10.8.0.1"}');
  const [server, port] = await etcdServer(etcd, "outage.test");
  await using _server = server;
  await waitFor(async () => (await ask(port, "a.outage.test.")).data[0] === "10.8.0.1", {
    what: "the record",
  });

  const stoppedAt = performance.now();
  await etcd.stop();
  const outage = /cannot (reach etcd|read \S+ from etcd) at /;
  await server.waitForOutput(outage, 20_000);
  const noticedMs = performance.now() - stoppedAt;
  // Keep asking for two seconds of the outage: every answer comes from the copy.
  const t0 = performance.now();
  let answered = 0;
  await waitFor(async () => {
    const r = await ask(port, "a.outage.test.");
    assert.equal(r.rcode, Rcode.Success);
    assert.deepEqual(r.data, ["10.8.0.1"]);
    assert.equal((await ask(port, "nx.outage.test.")).rcode, Rcode.NameError);
    answered++;
    return performance.now() - t0 > 2_000;
  }, { timeoutMs: 10_000, what: "answers during the outage" });
  assert.ok(answered >= 5, `${answered} rounds`);
  const outageLines = server.output().match(new RegExp(outage, "g")) ?? [];
  assert.equal(outageLines.length, 1, `the outage is logged once:\n${server.output()}`);
  assert.match(server.output(), /serving the last copy of \/skydns\/test\/outage/);

  await etcd.start();
  const restartedAt = performance.now();
  await etcd.ctl("put", "/skydns/test/outage/b", '{"host":"10.8.0.2"}');
  await etcd.ctl("del", "/skydns/test/outage/a");
  await waitFor(async () => (await ask(port, "b.outage.test.")).data[0] === "10.8.0.2", {
    timeoutMs: 20_000,
    what: "a put made after the restart",
  });
  await waitFor(async () => (await ask(port, "a.outage.test.")).rcode === Rcode.NameError, {
    timeoutMs: 5_000,
    what: "a delete made after the restart",
  });
  const caughtUpMs = performance.now() - restartedAt;
  await server.waitForOutput(/\[INFO\] plugin\/etcd: reconnected to etcd at /, 10_000);
  console.log(
    `outage: logged ${noticedMs.toFixed(0)} ms after etcd stopped; ${answered} query rounds ` +
      `answered from the copy; a put after the restart answered within ${caughtUpMs.toFixed(0)} ms`,
  );
  console.log(server.output().split("\n").filter((l) => /plugin\/etcd/.test(l)).join("\n"));
});

// ---------------------------------------------------------------- 5. interop

Deno.test("etcd plugin: a name claimed by an idetcd node resolves through an etcd-only server", async () => {
  const etcd = await shared.scope();
  const nodePort = await freePort();
  const nodeConf = await writeCorefile(
    [
      `.:${nodePort} {`,
      `    idetcd {`,
      `        endpoint ${etcd.endpoint}`,
      `        prefix ${etcd.prefix}`,
      `        limit 10`,
      `        pattern worker{{.ID}}.tf.local.`,
      `        address 192.0.2.44 2001:db8::44`,
      `        port 2222`,
      `        lease 2s`,
      `        identity interop-node`,
      `    }`,
      `    whoami`,
      `}`,
      ``,
    ].join("\n"),
  );
  const node = await startServer(nodeConf, { timeoutMs: 60_000 });
  let nodeStopped = false;
  try {
    await node.waitForOutput(/claimed worker1\.tf\.local\./);
    const [server, port] = await etcdServer(etcd, "tf.local", etcd.prefix);
    await using _server = server;
    // Its lease's TTL is fetched in the background: until then the answer has the default 300.
    await waitFor(async () => {
      const r = await ask(port, "worker1.tf.local.");
      return r.data[0] === "192.0.2.44" && r.ttls[0] !== 300;
    }, { what: "worker1 through the etcd plugin, with its lease's TTL" });
    // The 2 s lease is refreshed in the background too: on a loaded machine a refresh
    // can be late, and until it lands the TTL is the lease-less 300; ask again then.
    let last: unknown;
    await waitFor(async () => {
      try {
        await checkCases(port, [
          {
            qname: "worker1.tf.local.",
            qtype: Type.A,
            answer: ["worker1.tf.local. 30 IN A 192.0.2.44"],
          },
          {
            qname: "worker1.tf.local.",
            qtype: Type.AAAA,
            answer: ["worker1.tf.local. 30 IN AAAA 2001:db8::44"],
          },
        ]);
        return true;
      } catch (err) {
        last = err;
        return false;
      }
    }, { timeoutMs: 10_000, what: "the A and AAAA answers with the lease's TTL" }).catch((err) => {
      throw last ?? err;
    });
    const srv = await queryTcp("127.0.0.1", port, "worker1.tf.local.", Type.SRV);
    assert.ok(srv.answer.length >= 1);
    for (const r of srv.answer) assert.equal((r.data as { port: number }).port, 2222);
    // A clean stop revokes the lease: the name leaves the etcd-only server's answers.
    node.kill("SIGTERM");
    await node.exited;
    nodeStopped = true;
    await waitFor(async () => (await ask(port, "worker1.tf.local.")).rcode === Rcode.NameError, {
      timeoutMs: 10_000,
      what: "worker1 gone after the node stopped",
    });
  } finally {
    if (!nodeStopped) await node[Symbol.asyncDispose]();
  }
});
