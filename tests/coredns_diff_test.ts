/**
 * Differential test: idetcd and the real CoreDNS (`COREDNS_BIN`) serve the
 * same SkyDNS data from one etcd and are asked the same questions; every
 * difference in their replies must be one of the documented differences in
 * {@link DOCUMENTED} (each also listed in lib/plugins/etcd/README.md,
 * "Differences from CoreDNS"), or the test fails.
 *
 * For each seed a random tree is written: every record kind the etcd plugin
 * knows (A, AAAA incl. v4-mapped, names as CNAME/SRV/MX targets in and out of
 * the zone, TXT of awkward lengths, PTR, NS, dns/apex), leases, groups,
 * targetstrip, wildcards, upper case in keys, values and questions, bad
 * JSON, names with special characters (space, quote, `$`, `@`, `;`, dots,
 * non-ASCII), oversized TXT, and enough records to truncate. The questions
 * (every existing name and its parents, wildcard and case variants, missing
 * names, apexes, names outside the zones) go over UDP without EDNS, with
 * EDNS buffers of 512 bytes and below, 1232 and 4096, and over TCP, plus odd
 * packets (CD/AD bits, other opcodes and classes, EDNS version 1, EDNS
 * options, TSIG).
 *
 * Normalised before comparing, because they legitimately differ: the message
 * ID; a lease-derived TTL by one second (both count down a lease etcd
 * reports in whole seconds, asked at slightly different moments); the SOA
 * serial by one second (it is the clock). Record order is compared as is.
 *
 * CoreDNS runs with `bufsize 1232`, which is idetcd's default (see
 * lib/plugins/bufsize/README.md); idetcd runs without it, so the default
 * itself is under test.
 */

import assert from "node:assert/strict";
import { Etcd3 } from "etcd3";
import {
  Class,
  EdnsOption,
  type MXData,
  Opcode,
  type OPTData,
  Rcode,
  type RR,
  type SOAData,
  type SRVData,
  Type,
  typeToString,
} from "../lib/dns/types.ts";
import { decodeMessage, encodeMessage, type Message } from "../lib/dns/wire.ts";
import { corednsTest, startCoreDNS } from "./helpers/coredns.ts";
import { startEtcd } from "./helpers/etcd.ts";
import { exchangeTcp, mapLimit, UdpClient } from "./helpers/exchange.ts";
import { startServer, writeCorefile } from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";

// ------------------------------------------------------------------ the data

const ZONE = "skydns.test.";
const OTHER = "other.test.";
const BULK = "bulk.test.";
/** TXT too large for any message; in a zone of its own, so only the questions meant for it read it. */
const LARGE = "large.test.";
const REVERSE = "in-addr.arpa.";
const ZONES = [ZONE, OTHER, BULK, LARGE, REVERSE];
/** Lease TTLs granted (seconds); explicit `ttl` values never fall near them. */
const LEASE_TTLS = [600, 3600];
/** The seeds CI runs; `DIFF_SEEDS=4,5,6` replays or explores others. */
const SEEDS = (Deno.env.get("DIFF_SEEDS") ?? "1,2,3").split(",").map(Number);

/** Keys whose hosts are names no DNS message can hold. */
const UNPACKABLE = [`emptylabel.${ZONE}`, `longlabel.${ZONE}`];

/** mulberry32: a small seeded PRNG, so a failing seed can be replayed. */
function random(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    chance: (p: number) => next() < p,
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)],
  };
}
type Random = ReturnType<typeof random>;

/** Plain labels, and labels in miekg/dns presentation form (as CoreDNS keys hold them). */
const PLAIN = ["a", "b", "c", "www", "api", "db", "svc", "web", "mail", "node7", "x1", "_tcp"];
const SPECIAL = [
  "my\\ printer", // DNS-SD instance names have spaces
  "it\\'s",
  "a$b",
  "at\\@x",
  "semi\\;c",
  "par\\(en\\)",
  'q\\"t',
  "dot\\.ted",
  "caf\\195\\169",
  "tab\\009x",
  "back\\\\slash",
  "under_score",
  "*",
];

/** One key and its raw value. */
interface Entry {
  /** The DNS name the key stands for (presentation form, lower case). */
  name: string;
  value: string;
  /** Index into the granted leases, or -1. */
  lease: number;
}

/** etcd key of a name: labels reversed under /skydns (escapes kept, as msg.Path). */
function keyOf(name: string): string {
  const labels: string[] = [];
  let label = "";
  for (let i = 0; i < name.length; i++) {
    const c = name[i];
    if (c === "\\") {
      label += name.slice(i, i + 2);
      i++;
    } else if (c === ".") {
      labels.push(label);
      label = "";
    } else {
      label += c;
    }
  }
  if (label) labels.push(label);
  return "/skydns/" + labels.reverse().join("/");
}

function ipv4(r: Random): string {
  return `10.${r.int(4)}.${r.int(256)}.${r.int(256)}`;
}

function ipv6(r: Random): string {
  return `2001:db8::${r.int(0xffff).toString(16)}:${r.int(0xffff).toString(16)}`;
}

function text(r: Random): string {
  const length = r.pick([1, 5, 254, 255, 256, 510, 600, 2000]);
  const alphabet = r.chance(0.2) ? 'aé"\\ ;z' : "abcdefgh ";
  let s = "";
  while (s.length < length) s += alphabet[r.int(alphabet.length)];
  return s.slice(0, length);
}

/** A JSON value: a service with random fields, sometimes odd, sometimes not JSON at all. */
function serviceValue(r: Random, host: string): string {
  if (r.chance(0.04)) {
    return r.pick([
      `{"host":"10.0.0.1",`,
      `{"port":"80","host":"10.0.0.2"}`,
      `{"ttl":-1,"host":"10.0.0.3"}`,
      `[]`,
      `{"host":1}`,
      `{"mail":"yes","host":"10.0.0.4"}`,
      `"just a string"`,
      `null`,
    ]);
  }
  const fields: [string, unknown][] = [];
  const key = (name: string) =>
    r.chance(0.1)
      ? (r.chance(0.5) ? name.toUpperCase() : name[0].toUpperCase() + name.slice(1))
      : name;
  if (host !== "") fields.push([key("host"), host]);
  if (r.chance(0.5)) fields.push([key("port"), r.pick([0, 53, 80, 8080, -1, 70000])]);
  if (r.chance(0.3)) fields.push([key("priority"), r.pick([0, 5, 10, 20, 65537])]);
  if (r.chance(0.3)) fields.push([key("weight"), r.pick([0, 1, 50, 100, 200])]);
  if (r.chance(0.25) || host === "") fields.push([key("text"), text(r)]);
  if (r.chance(0.3)) fields.push([key("mail"), r.chance(0.7)]);
  if (r.chance(0.3)) fields.push([key("ttl"), r.pick([0, 5, 60, 300, 86400])]);
  if (r.chance(0.2)) fields.push([key("targetstrip"), r.pick([0, 1, 2, 9])]);
  if (r.chance(0.2)) fields.push([key("group"), r.pick(["", "g1", "g2"])]);
  return "{" + fields.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(",") + "}";
}

/** A random SkyDNS tree for `seed`. */
function tree(seed: number): Entry[] {
  const r = random(seed);
  const entries: Entry[] = [];
  const names: string[] = [];
  const add = (name: string, value: string, lease = -1) => {
    entries.push({ name, value, lease });
    names.push(name);
  };
  const lease = () => (r.chance(0.2) ? r.int(LEASE_TTLS.length) : -1);
  // Ordinary records, in subtrees that share parents (so there are empty non-terminals).
  for (let i = 0; i < 70; i++) {
    const zone = r.chance(0.85) ? ZONE : OTHER;
    let name: string;
    if (names.length > 0 && r.chance(0.5)) {
      const parent = r.pick(names);
      name = `${r.chance(0.15) ? r.pick(SPECIAL) : r.pick(PLAIN)}.${parent}`;
    } else {
      const depth = 1 + r.int(3);
      name = zone;
      for (let d = 0; d < depth; d++) {
        name = `${r.chance(0.12) ? r.pick(SPECIAL) : r.pick(PLAIN)}.${name}`;
      }
    }
    if (name.length > 200) continue;
    const kind = r.int(10);
    let host: string;
    if (kind < 3) host = r.chance(0.1) ? `::ffff:${ipv4(r)}` : ipv4(r);
    else if (kind < 4) host = ipv6(r);
    else if (kind < 7) {
      host = r.pick([
        () => (names.length ? r.pick(names) : ZONE),
        () => (names.length ? r.pick(names).replace(/\.$/, "") : "x." + ZONE),
        () => `target${r.int(5)}.${OTHER}`,
        () => "nowhere.example.",
        () => name,
        () => `below.${name}`,
        () => ZONE,
        () => (names.length ? r.pick(names).toUpperCase() : "UP." + ZONE),
        () => "010.0.0.1",
      ])();
    } else if (kind < 9) host = "";
    else host = `svc${r.int(4)}.${ZONE}`;
    add(name, serviceValue(r, host), lease());
  }
  // Targets outside the first zone, answered through the server's own chain.
  for (let i = 0; i < 5; i++) add(`target${i}.${OTHER}`, `{"host":"${ipv4(r)}"}`);
  for (let i = 0; i < 4; i++) add(`svc${i}.${ZONE}`, `{"host":"${ipv4(r)}","port":${8000 + i}}`);
  // Zone apexes: addresses and name servers.
  if (r.chance(0.7)) add(`a1.apex.dns.${ZONE}`, `{"host":"${ipv4(r)}"}`);
  if (r.chance(0.5)) add(`apex.dns.${OTHER}`, `{"host":"${ipv6(r)}"}`);
  add(`ns1.ns.dns.${ZONE}`, `{"host":"${ipv4(r)}"}`);
  if (r.chance(0.5)) add(`ns2.ns.dns.${ZONE}`, `{"host":"${ipv6(r)}","targetstrip":1}`);
  if (r.chance(0.3)) add(`ns1.ns.dns.${OTHER}`, `{"host":"ns.example.net"}`);
  // Wildcard-looking keys and reverse records.
  add(`any.wild.${ZONE}`, `{"host":"${ipv4(r)}"}`);
  add(`*.wild.${ZONE}`, `{"host":"${ipv4(r)}"}`);
  for (let i = 0; i < 4; i++) {
    add(
      `${r.int(256)}.${r.int(256)}.0.10.${REVERSE}`,
      `{"host":"${r.pick(["h1", "h2"])}.${ZONE}"}`,
    );
  }
  add(`9.9.0.10.${REVERSE}`, `{"host":"10.0.0.9"}`);
  // Bulk: 100 addresses (1,642 bytes: over the 1,232 cap), SRV targets that
  // compress against each other, and TXT too large for any message.
  for (let i = 0; i < 100; i++) add(`h${i}.many.${BULK}`, `{"host":"10.9.${i >> 8}.${i & 255}"}`);
  for (let i = 0; i < 25; i++) {
    add(`s${i}.srvs.${BULK}`, `{"host":"t${i}.targets.${BULK}","port":${9000 + i}}`);
    add(`t${i}.targets.${BULK}`, `{"host":"10.8.0.${i}"}`);
  }
  add(`big.${LARGE}`, JSON.stringify({ text: "b".repeat(70_000) }));
  if (seed === SEEDS[0]) add(`huge.${LARGE}`, JSON.stringify({ text: "h".repeat(1_000_000) }));
  // Names miekg/dns cannot pack (an empty label, a 64-byte label) as targets.
  add(UNPACKABLE[0], `{"host":"a..b.${ZONE}","port":80}`);
  add(UNPACKABLE[1], `{"host":"${"l".repeat(64)}.${ZONE}","port":80}`);
  // Upper case in a key: never found (questions are lower-cased first).
  add(`Upper.${ZONE}`, `{"host":"10.0.0.77"}`);
  return entries;
}

// ------------------------------------------------------------------ the questions

/** One question to ask both servers. */
interface Probe {
  label: string;
  packet: Uint8Array;
  transport: "udp" | "tcp";
}

interface QueryOptions {
  edns?: { size: number; do?: boolean; version?: number; options?: OPTData["options"] };
  rd?: boolean;
  cd?: boolean;
  ad?: boolean;
  opcode?: number;
  cls?: number;
  extra?: RR[];
}

function query(name: string, type: number, o: QueryOptions = {}): Uint8Array {
  const additional: RR[] = [];
  if (o.edns) {
    const data: OPTData = {
      udpSize: o.edns.size,
      extendedRcode: 0,
      version: o.edns.version ?? 0,
      dnssecOk: o.edns.do ?? false,
      options: o.edns.options ?? [],
    };
    additional.push({ name: ".", type: Type.OPT, class: o.edns.size, ttl: 0, data });
  }
  const msg: Message = {
    id: 0,
    response: false,
    opcode: o.opcode ?? Opcode.Query,
    authoritative: false,
    truncated: false,
    recursionDesired: o.rd ?? true,
    recursionAvailable: false,
    zero: false,
    authenticData: o.ad ?? false,
    checkingDisabled: o.cd ?? false,
    rcode: 0,
    question: [{ name, type, class: o.cls ?? Class.INET }],
    answer: [],
    authority: [],
    additional: [...additional, ...(o.extra ?? [])],
  };
  // Version 1 goes into the OPT TTL, which the encoder takes from the data.
  return encodeMessage(msg);
}

/** Transports and buffer sizes the questions are spread over. */
const WAYS: { label: string; transport: "udp" | "tcp"; options: QueryOptions }[] = [
  { label: "udp", transport: "udp", options: {} },
  { label: "udp/edns512", transport: "udp", options: { edns: { size: 512 } } },
  { label: "udp/edns1232+do", transport: "udp", options: { edns: { size: 1232, do: true } } },
  { label: "udp/edns4096", transport: "udp", options: { edns: { size: 4096 } } },
  { label: "udp/edns100", transport: "udp", options: { edns: { size: 100 } } },
  { label: "tcp", transport: "tcp", options: {} },
  { label: "tcp/edns4096", transport: "tcp", options: { edns: { size: 4096 } } },
];

const TYPES = [
  Type.A,
  Type.AAAA,
  Type.TXT,
  Type.SRV,
  Type.MX,
  Type.CNAME,
  Type.PTR,
  Type.NS,
  Type.SOA,
];
const OTHER_TYPES = [Type.ANY, Type.HINFO, Type.CAA, Type.DS, Type.HTTPS, 10, 65280];

/** Every name of the tree and its parents, with variants, and names that do not exist. */
function questionNames(r: Random, entries: readonly Entry[]): string[] {
  const names = new Set<string>();
  for (const e of entries) {
    if (e.name.endsWith(BULK) || e.name.endsWith(LARGE)) continue;
    let n = e.name;
    while (n !== "" && n !== "test." && n !== "arpa.") {
      names.add(n);
      const i = n.search(/(?<!\\)\./);
      n = n.slice(i + 1);
    }
  }
  for (const zone of ZONES) {
    if (zone === LARGE) continue;
    for (const n of [zone, `dns.${zone}`, `apex.dns.${zone}`, `ns.dns.${zone}`, `nx.${zone}`]) {
      names.add(n);
    }
  }
  for (const n of [...names]) {
    if (r.chance(0.15)) names.add(n.toUpperCase());
    if (r.chance(0.1)) names.add(n.replace(/^[^.]+\./, r.pick(["*.", "any.", "ANY."])));
    if (r.chance(0.08)) names.add(`nope${r.int(100)}.${n}`);
  }
  for (const n of ["test.", ".", "example.net.", "nowhere.example."]) names.add(n);
  return [...names];
}

/** Names whose answers exist to be truncated: asked every way. */
const TRUNCATED = [
  BULK,
  `many.${BULK}`,
  `srvs.${BULK}`,
  `s3.srvs.${BULK}`,
  `targets.${BULK}`,
  `t7.targets.${BULK}`,
];

function probes(seed: number, entries: readonly Entry[]): Probe[] {
  const r = random(seed * 7919);
  const out: Probe[] = [];
  const ask = (name: string, type: number, way: (typeof WAYS)[number]) =>
    out.push({
      label: `${name} ${typeToString(type)} ${way.label}`,
      packet: query(name, type, way.options),
      transport: way.transport,
    });
  for (const name of questionNames(r, entries)) {
    for (const type of [...TYPES, r.pick(OTHER_TYPES)]) {
      ask(name, type, r.pick(WAYS));
      if (r.chance(0.3)) ask(name, type, r.pick(WAYS));
    }
  }
  for (const name of TRUNCATED) {
    for (const type of [...TYPES, Type.ANY]) for (const way of WAYS) ask(name, type, way);
  }
  // The oversized TXT: each of a few questions over UDP and TCP.
  for (const name of [LARGE, `big.${LARGE}`, `huge.${LARGE}`]) {
    for (const type of [Type.TXT, Type.A]) {
      for (
        const way of WAYS.filter((w) => ["udp/edns4096", "tcp", "tcp/edns4096"].includes(w.label))
      ) {
        ask(name, type, way);
      }
    }
  }
  // Odd packets.
  const a = `svc0.${ZONE}`;
  const odd: [string, Uint8Array, "udp" | "tcp"][] = [
    ["CD set", query(a, Type.A, { cd: true }), "udp"],
    ["AD set", query(a, Type.A, { ad: true }), "udp"],
    ["RD clear", query(a, Type.A, { rd: false }), "udp"],
    ["opcode NOTIFY", query(ZONE, Type.SOA, { opcode: Opcode.Notify }), "udp"],
    ["opcode NOTIFY with CD", query(ZONE, Type.SOA, { opcode: Opcode.Notify, cd: true }), "udp"],
    ["opcode UPDATE with CD", query(ZONE, Type.SOA, { opcode: Opcode.Update, cd: true }), "udp"],
    ["opcode STATUS", query(ZONE, Type.A, { opcode: Opcode.Status }), "udp"],
    ["class CH", query("version.bind.", Type.TXT, { cls: Class.CHAOS }), "udp"],
    ["class ANY", query(a, Type.A, { cls: Class.ANY }), "udp"],
    ["EDNS version 1", query(a, Type.A, { edns: { size: 4096, version: 1, do: true } }), "udp"],
    ["EDNS version 1 tcp", query(a, Type.A, { edns: { size: 1232, version: 1 } }), "tcp"],
    [
      "EDNS unknown option",
      query(a, Type.A, {
        edns: { size: 1232, options: [{ code: 65001, data: new Uint8Array([1]) }] },
      }),
      "udp",
    ],
    [
      "EDNS COOKIE and NSID",
      query(a, Type.A, {
        edns: {
          size: 1232,
          options: [
            { code: EdnsOption.Cookie, data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]) },
            { code: EdnsOption.NSID, data: new Uint8Array(0) },
          ],
        },
      }),
      "udp",
    ],
    [
      "EDNS tcp-keepalive over UDP",
      query(a, Type.A, {
        edns: { size: 1232, options: [{ code: EdnsOption.TcpKeepalive, data: new Uint8Array(0) }] },
      }),
      "udp",
    ],
    ["TSIG unknown key", query(a, Type.A, { extra: [tsigRecord()] }), "udp"],
    [
      "TSIG unknown key with EDNS",
      query(a, Type.A, { edns: { size: 1232 }, extra: [tsigRecord()] }),
      "tcp",
    ],
  ];
  for (const [label, packet, transport] of odd) out.push({ label, packet, transport });
  return out;
}

/** A TSIG record (hmac-sha256, key "nokey.") with a made-up MAC. */
function tsigRecord(): RR {
  const alg = [11, ..."hmac-sha256".split("").map((c) => c.charCodeAt(0)), 0];
  const now = Math.floor(Date.now() / 1000);
  const time = [0, 0, (now >>> 24) & 255, (now >>> 16) & 255, (now >>> 8) & 255, now & 255];
  const mac = Array.from({ length: 32 }, (_, i) => i);
  const data = Uint8Array.from([
    ...alg,
    ...time,
    1,
    44, // fudge 300
    0,
    32,
    ...mac,
    0,
    0, // original ID (rewritten by the client anyway)
    0,
    0, // error
    0,
    0, // other len
  ]);
  return { name: "nokey.", type: Type.TSIG, class: Class.ANY, ttl: 0, data };
}

// ------------------------------------------------------------------ comparing

/** A reply as compared: null when the server sent nothing. */
type Reply = Message | null;

/** The record as text, TTL and SOA serial apart (they are compared with tolerance). */
function recordText(rr: RR): string {
  const d = rr.data;
  let rdata: string;
  if (d instanceof Uint8Array) {
    rdata = `\\# ${d.length} ${[...d].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
  } else if (rr.type === Type.OPT) {
    const o = d as OPTData;
    const opts = o.options.map((x) =>
      `${x.code}:${[...x.data].map((b) => b.toString(16)).join("")}`
    );
    rdata = `udp=${o.udpSize} v=${o.version} do=${o.dnssecOk} ext=${o.extendedRcode} [${
      opts.join(" ")
    }]`;
  } else if (rr.type === Type.SRV) {
    const s = d as SRVData;
    rdata = `${s.priority} ${s.weight} ${s.port} ${s.target}`;
  } else if (rr.type === Type.MX) {
    const m = d as MXData;
    rdata = `${m.preference} ${m.exchange}`;
  } else if (rr.type === Type.SOA) {
    const s = d as SOAData;
    rdata = `${s.mname} ${s.rname} SERIAL ${s.refresh} ${s.retry} ${s.expire} ${s.minimum}`;
  } else if (rr.type === Type.TXT) rdata = (d as string[]).map((s) => JSON.stringify(s)).join(" ");
  else rdata = String(d);
  const ttl = rr.type === Type.OPT ? "" : " TTL";
  return `${rr.name}${ttl} CLASS${rr.class} ${typeToString(rr.type)} ${rdata}`;
}

function flags(m: Message): string {
  const f = [
    ["qr", m.response],
    ["aa", m.authoritative],
    ["tc", m.truncated],
    ["rd", m.recursionDesired],
    ["ra", m.recursionAvailable],
    ["z", m.zero],
    ["ad", m.authenticData],
    ["cd", m.checkingDisabled],
  ].filter(([, on]) => on).map(([n]) => n);
  return `opcode=${m.opcode} rcode=${m.rcode} ${f.join(",")}`;
}

/** Whether a TTL can come from a lease: within a few seconds below a granted TTL. */
function leaseLike(ttl: number): boolean {
  return LEASE_TTLS.some((t) => ttl <= t && ttl >= t - 60);
}

/**
 * The differences between two replies, after normalisation; empty when
 * equal. SOA serials (the clock) may differ by the seconds the exchange took.
 */
function differences(core: Reply, ours: Reply, seconds = 1): string[] {
  if (core === null || ours === null) {
    return core === ours
      ? []
      : [`reply: CoreDNS ${core ? "answered" : "none"}, idetcd ${ours ? "answered" : "none"}`];
  }
  const out: string[] = [];
  if (flags(core) !== flags(ours)) {
    out.push(`header: CoreDNS ${flags(core)} | idetcd ${flags(ours)}`);
  }
  const q = (m: Message) => m.question.map((x) => `${x.name} ${x.class} ${x.type}`).join(";");
  if (q(core) !== q(ours)) out.push(`question: CoreDNS ${q(core)} | idetcd ${q(ours)}`);
  const sections = ["answer", "authority", "additional"] as const;
  for (const s of sections) {
    const a = core[s], b = ours[s];
    const n = Math.max(a.length, b.length);
    for (let i = 0; i < n; i++) {
      const x = a[i], y = b[i];
      const tx = x ? recordText(x) : "(none)", ty = y ? recordText(y) : "(none)";
      if (tx !== ty) {
        out.push(`${s}[${i}]: CoreDNS ${tx.slice(0, 160)} | idetcd ${ty.slice(0, 160)}`);
        continue;
      }
      if (x.type !== Type.OPT && x.ttl !== y.ttl) {
        const tolerated = Math.abs(x.ttl - y.ttl) <= 1 && leaseLike(x.ttl) && leaseLike(y.ttl);
        if (!tolerated) {
          out.push(`${s}[${i}] TTL: CoreDNS ${x.ttl} | idetcd ${y.ttl} (${tx.slice(0, 80)})`);
        }
      }
      if (x.type === Type.SOA) {
        const dx = (x.data as SOAData).serial, dy = (y.data as SOAData).serial;
        if (Math.abs(dx - dy) > seconds) {
          out.push(`${s}[${i}] SOA serial: CoreDNS ${dx} | idetcd ${dy}`);
        }
      }
    }
  }
  return out;
}

// ------------------------------------------------------------------ documented differences

/** One exchange: what was asked and what each server said. */
interface Exchange {
  probe: Probe;
  query: Message;
  core: Reply;
  ours: Reply;
  diffs: string[];
  /** Whole seconds the exchange took, plus one: how far SOA serials may differ. */
  seconds: number;
}

/** A documented difference: why, and exactly which exchanges it explains. */
interface Documented {
  id: string;
  /** Why idetcd differs (each is in lib/plugins/etcd/README.md or the plugin's README). */
  reason: string;
  explains(x: Exchange): boolean;
}

// Helpers for the matchers below.
const rcodeOf = (m: Reply) => m?.rcode;
const isSOA = (rr: RR | undefined, zone?: string) =>
  rr?.type === Type.SOA && (zone === undefined || rr.name === zone);
const onlyAuthoritySOA = (m: Message) =>
  m.answer.length === 0 && m.authority.length === 1 && isSOA(m.authority[0]);
const lowerQ = (x: Exchange) => x.query.question[0].name.toLowerCase();
const zoneOf = (name: string) => ZONES.find((z) => name === z || name.endsWith("." + z)) ?? "";
const optOf = (m: Message) =>
  m.additional.find((r) => r.type === Type.OPT)?.data as OPTData | undefined;
/** Both replies equal once `patch` is applied to a copy of CoreDNS's. */
const sameAfter = (x: Exchange, patch: (m: Message) => void) => {
  if (!x.core || !x.ours) return false;
  const copy = structuredClone(x.core);
  patch(copy);
  return differences(copy, x.ours, x.seconds).length === 0;
};

/** A TXT record's character-strings as bytes, whether decoded as text or kept raw. */
function txtStrings(rr: RR): number[][] {
  if (rr.data instanceof Uint8Array) {
    const out: number[][] = [];
    for (let o = 0; o < rr.data.length; o += 1 + rr.data[o]) {
      out.push([...rr.data.subarray(o + 1, o + 1 + rr.data[o])]);
    }
    return out;
  }
  return (rr.data as string[]).map((x) => [...new TextEncoder().encode(x)]);
}

const BACKSLASH = 0x5c;

/**
 * miekg/dns's packTxtString on one string: `\\X` is X, `\\DDD` the byte, a
 * lone trailing backslash nothing. Both servers send TXT strings this way.
 */
function unescapeTxt(c: number[]): number[] {
  const digit = (b: number | undefined) => b !== undefined && b >= 0x30 && b <= 0x39;
  const out: number[] = [];
  for (let i = 0; i < c.length; i++) {
    if (c[i] !== BACKSLASH) {
      out.push(c[i]);
      continue;
    }
    if (++i === c.length) break;
    if (digit(c[i]) && digit(c[i + 1]) && digit(c[i + 2])) {
      out.push(((c[i] - 0x30) * 100 + (c[i + 1] - 0x30) * 10 + (c[i + 2] - 0x30)) & 0xff);
      i += 2;
    } else out.push(c[i]);
  }
  return out;
}

/** CoreDNS's split255: every 255 bytes, and an empty string after an exact multiple. */
function split255(text: number[]): number[][] {
  if (text.length < 255) return [text];
  const chunks: number[][] = [];
  for (let p = 0;; p += 255) {
    if (p + 255 > text.length) return [...chunks, text.slice(p)];
    chunks.push(text.slice(p, p + 255));
  }
}

/** idetcd's split: at most 255 bytes, backing off so no UTF-8 character is cut. */
function splitUtf8(text: number[]): number[][] {
  if (text.length < 255) return [text];
  const chunks: number[][] = [];
  for (let p = 0;;) {
    let end = p + 255;
    if (end > text.length) return [...chunks, text.slice(p)];
    while (end < text.length && end > p && (text[end] & 0xc0) === 0x80) end--;
    chunks.push(text.slice(p, end));
    p = end;
  }
}

const form = (strings: number[][]) => strings.map((x) => x.join()).join("|");

/** For one tree: the TXT strings each server makes of every text, where they differ. */
interface Texts {
  /** CoreDNS's form -> idetcd's form. */
  forms: Map<string, string>;
  /** idetcd's forms of texts with a backslash or non-ASCII (CoreDNS sizes those differently). */
  awkward: Set<string>;
}

function textsOf(entries: readonly Entry[]): Texts {
  const texts: Texts = { forms: new Map(), awkward: new Set() };
  for (const e of entries) {
    let value: unknown;
    try {
      value = JSON.parse(e.value);
    } catch {
      continue;
    }
    if (typeof value !== "object" || value === null) continue;
    for (const [k, v] of Object.entries(value)) {
      if (k.toLowerCase() !== "text" || typeof v !== "string") continue;
      const bytes = [...new TextEncoder().encode(v)];
      const theirs = form(split255(bytes).map(unescapeTxt));
      const ours = form(splitUtf8(bytes).map(unescapeTxt));
      if (theirs !== ours) texts.forms.set(theirs, ours);
      if (/[\\\u0080-\uffff]/.test(v)) texts.awkward.add(ours);
    }
  }
  return texts;
}

/** The texts of the tree being compared (set per seed). */
let currentTexts: Texts = { forms: new Map(), awkward: new Set() };
/** The names of the tree being compared (set per seed). */
let currentNames: string[] = [];

/** Labels of a presentation name, escapes kept. */
function labelsOf(name: string): string[] {
  return name.replace(/\.$/, "").split(/(?<!\\)\./).filter((l) => l !== "");
}

const isWildcard = (label: string) => label === "*" || label === "any";

/**
 * Whether the key of `name` is the key of `qname` (lower-cased first, as
 * CoreDNS does) or below it, `*` and `any` in `qname` matching any label.
 */
function covers(qname: string, name: string): boolean {
  const q = labelsOf(qname.toLowerCase()), n = labelsOf(name);
  if (q.length > n.length) return false;
  for (let i = 1; i <= q.length; i++) {
    const label = q[q.length - i];
    if (!isWildcard(label) && label !== n[n.length - i]) return false;
  }
  return true;
}

/**
 * Whether the tree has the name as the etcd plugin reads it: a zone apex, or
 * a key at or below it; a wildcard cuts the name there (msg.PathWithWildcard
 * reads everything below the labels right of the rightmost wildcard).
 */
function exists(qname: string): boolean {
  if (ZONES.includes(qname.toLowerCase())) return true;
  const labels = labelsOf(qname.toLowerCase());
  let cut = labels.length;
  while (cut > 0 && !isWildcard(labels[cut - 1])) cut--;
  const base = cut > 0 ? labels.slice(cut).join(".") + "." : qname;
  return currentNames.some((n) => covers(base, n));
}

/**
 * TXT records CoreDNS sends differently from idetcd for the same text (see
 * "txt-split-utf8"): copies idetcd's form into CoreDNS's reply where each is
 * what its server makes of one text of the tree. Returns how many were patched.
 */
function patchTxt(core: Message, ours: Message): number {
  let patched = 0;
  for (const s of ["answer", "authority", "additional"] as const) {
    core[s].forEach((rr, i) => {
      const theirs = ours[s][i];
      if (rr.type !== Type.TXT || theirs?.type !== Type.TXT || rr.name !== theirs.name) return;
      const expected = currentTexts.forms.get(form(txtStrings(rr)));
      if (expected === undefined || expected !== form(txtStrings(theirs))) return;
      rr.data = theirs.data;
      patched++;
    });
  }
  return patched;
}

/** Whether a TXT record of idetcd's comes from a text CoreDNS splits or sizes differently. */
function txtDiffers(rr: RR | undefined): boolean {
  return rr?.type === Type.TXT && currentTexts.awkward.has(form(txtStrings(rr)));
}

/**
 * Every difference idetcd has from CoreDNS 1.14.7 that a client can see,
 * with its reason; all are listed in lib/plugins/etcd/README.md
 * ("Differences from CoreDNS") or lib/plugins/bufsize/README.md.
 */
const DOCUMENTED: Documented[] = [
  {
    id: "nodata-at-existing-name",
    reason: "RFC 8020: a name that exists (the apex; a name with keys below it, asked CNAME or " +
      "PTR, which CoreDNS reads as one exact key; the apex NS without dns/ns) is NODATA, not " +
      "NXDOMAIN; a resolver would otherwise cache NXDOMAIN for the zone's records",
    explains: (x) =>
      rcodeOf(x.core) === Rcode.NameError && rcodeOf(x.ours) === Rcode.Success &&
      onlyAuthoritySOA(x.ours!) && exists(lowerQ(x)) &&
      sameAfter(x, (m) => {
        m.rcode = Rcode.Success;
      }),
  },
  {
    id: "soa-only-at-apex",
    reason: "CoreDNS answers the apex SOA for a SOA question of any name in the zone, which BIND " +
      "rejects as a FORMERR; idetcd answers NODATA or NXDOMAIN with the SOA in the authority " +
      "section below the apex, as Knot does",
    explains: (x) =>
      x.query.question[0].type === Type.SOA && lowerQ(x) !== zoneOf(lowerQ(x)) &&
      x.core !== null && x.core.rcode === Rcode.Success && x.core.answer.length === 1 &&
      isSOA(x.core.answer[0]) && x.ours !== null && onlyAuthoritySOA(x.ours) &&
      x.ours.rcode === (exists(lowerQ(x)) ? Rcode.Success : Rcode.NameError) &&
      sameAfter(x, (m) => {
        m.authority = m.answer;
        m.answer = [];
        m.rcode = x.ours!.rcode;
      }),
  },
  {
    id: "tcp-oversize-servfail",
    reason: "an answer larger than 65,535 bytes (a 70 kB or 1 MB TXT): CoreDNS sends NOERROR " +
      "with TC and no answer even over TCP, which a client cannot act on; idetcd answers " +
      "SERVFAIL over TCP (with an RFC 8914 extended error when the query had EDNS); over UDP both " +
      "set TC",
    explains: (x) =>
      x.probe.transport === "tcp" && x.core !== null && x.core.truncated &&
      x.core.rcode === Rcode.Success && x.ours !== null && x.ours.rcode === Rcode.ServerFailure &&
      !x.ours.truncated && x.ours.answer.length === 0 && x.ours.authority.length === 0 &&
      (optOf(x.query) === undefined ||
        optOf(x.ours)?.options.map((o) => o.code).join() === String(EdnsOption.ExtendedError)),
  },
  {
    id: "unpackable-name-servfail",
    reason: "a target with an empty label or a label over 63 bytes (`a..b`): CoreDNS fails to " +
      "pack the reply and sends nothing (the client times out); idetcd answers SERVFAIL",
    explains: (x) =>
      x.core === null && x.ours !== null && x.ours.rcode === Rcode.ServerFailure &&
      UNPACKABLE.some((n) => covers(lowerQ(x), n)),
  },
  {
    id: "edns-options-not-echoed",
    reason: "CoreDNS echoes the query's NSID, COOKIE, EXPIRE, TCP-KEEPALIVE and PADDING options " +
      "unchanged; idetcd implements none of them and returns none (RFC 7873 section 5.2.1: a " +
      "server without cookies ignores the option; an echoed client cookie has no server cookie; " +
      "RFC 5001: an empty NSID says nothing; RFC 7828: no keepalive over UDP)",
    explains: (x) =>
      x.core !== null && x.ours !== null && (optOf(x.core)?.options.length ?? 0) > 0 &&
      optOf(x.ours)?.options.length === 0 &&
      sameAfter(x, (m) => {
        optOf(m)!.options = [];
      }),
  },
  {
    id: "tsig-badkey",
    reason: "RFC 8945 section 5.2.2: a query signed with a key the server does not know gets " +
      "NOTAUTH with TSIG error BADKEY (unsigned); CoreDNS without its tsig plugin ignores the " +
      "record and answers",
    explains: (x) =>
      x.query.additional.some((r) => r.type === Type.TSIG) && x.ours !== null &&
      x.ours.rcode === Rcode.NotAuth && x.ours.answer.length === 0 &&
      x.ours.additional.at(-1)?.type === Type.TSIG,
  },
  {
    id: "txt-split-utf8",
    reason: "TXT text is cut into strings of at most 255 bytes but never inside a UTF-8 " +
      "character (CoreDNS cuts at exactly 255 bytes and may send invalid UTF-8); both then read " +
      "backslash escapes in each string as miekg/dns does, so an escape at a cut can differ. " +
      "CoreDNS sizes its UDP truncation by the text before escapes are read, so it may fit " +
      "fewer records",
    // Records patched by patchTxt count here; so does where truncation stops.
    explains: (x) => {
      if (!x.core || !x.ours || x.probe.transport !== "udp") return false;
      const [short, long] = x.core.answer.length < x.ours.answer.length
        ? [x.core, x.ours]
        : [x.ours, x.core];
      // The reply that stopped short says so; the other may have fitted everything.
      if (short.answer.length === long.answer.length || !short.truncated) return false;
      const prefix = short.answer.every((r, i) => recordText(r) === recordText(long.answer[i]));
      const around = x.ours.answer.slice(0, short.answer.length + 1);
      return prefix && around.some(txtDiffers) &&
        sameAfter(x, (m) => {
          m.answer = x.ours!.answer;
          m.truncated = x.ours!.truncated;
        });
    },
  },
  {
    id: "upstream-truncated-inside",
    reason: "for a CNAME target outside the zone CoreDNS asks its own server, which truncates " +
      "the target's answer to the client's UDP size before it is added (and TXT drops that TC); " +
      "so over UDP CoreDNS may send an incomplete answer without TC, or later records in place " +
      "of the target's; idetcd adds the target's whole answer and truncates the reply once (TC)",
    explains: (x) => {
      if (x.probe.transport !== "udp" || !x.core || !x.ours || !x.ours.truncated) return false;
      const zone = zoneOf(lowerQ(x));
      const outside = new Set<string>();
      for (const r of x.core.answer) {
        const target = String(r.data).toLowerCase();
        if (r.type === Type.CNAME && zoneOf(target) !== zone) outside.add(target);
      }
      if (outside.size === 0) return false;
      // Apart from the targets' own records, idetcd's answer is where CoreDNS's starts.
      const rest = (m: Message) =>
        m.answer.filter((r) => !outside.has(r.name.toLowerCase())).map(recordText);
      const a = rest(x.core), b = rest(x.ours);
      return b.every((t, i) => t === a[i]) &&
        sameAfter(x, (m) => {
          m.truncated = true;
          m.answer = x.ours!.answer;
        });
    },
  },
  {
    id: "notimp-clears-cd",
    reason: "a NOTIMP reply (an opcode other than QUERY and NOTIFY) clears CD, as Knot does; " +
      "miekg/dns copies every flag of the query",
    explains: (x) =>
      x.core?.rcode === Rcode.NotImplemented && x.core.checkingDisabled &&
      sameAfter(x, (m) => {
        m.checkingDisabled = false;
      }),
  },
];

// ------------------------------------------------------------------ the test

function corefile(port: number, endpoint: string, bufsize: boolean): string {
  return `.:${port} {
${bufsize ? "    bufsize 1232\n" : ""}    etcd ${ZONES.join(" ")} {
        path /skydns
        endpoint ${endpoint}
    }
}
`;
}

corednsTest(
  "CoreDNS differential: random SkyDNS trees, every difference documented",
  async (bin, t) => {
    await using etcd = await startEtcd();
    const client = new Etcd3({ hosts: etcd.endpoint });
    try {
      const corePort = await freePort();
      const ourPort = await freePort();
      await using _core = await startCoreDNS(
        bin,
        corefile(corePort, etcd.endpoint, true),
        corePort,
      );
      await using _ours = await startServer(
        await writeCorefile(corefile(ourPort, etcd.endpoint, false)),
      );
      const coreUdp = new UdpClient("127.0.0.1", corePort);
      const ourUdp = new UdpClient("127.0.0.1", ourPort);
      try {
        const counts = new Map<string, number>();
        let compared = 0;
        for (const seed of SEEDS) {
          await t.step(`seed ${seed}`, async () => {
            // A fresh tree: the previous one and its leases go first.
            await client.delete().prefix("/skydns/");
            const leases = await Promise.all(LEASE_TTLS.map(async (ttl) => {
              const lease = client.lease(ttl, { autoKeepAlive: false });
              return { lease, id: await lease.grant() };
            }));
            const entries = tree(seed);
            currentTexts = textsOf(entries);
            currentNames = entries.map((e) => e.name);
            await mapLimit(entries, 16, (e) => {
              const put = client.put(keyOf(e.name)).value(e.value);
              return e.lease >= 0 ? put.lease(leases[e.lease].id).exec() : put.exec();
            });
            // Sentinels, one per lease, written last: once idetcd answers each
            // with its lease's TTL, its copy holds the whole tree and knows every lease.
            for (let i = 0; i < leases.length; i++) {
              await client.put(keyOf(`sentinel${seed}-${i}.${ZONE}`)).value(
                `{"host":"10.7.7.${i}"}`,
              )
                .lease(leases[i].id).exec();
            }
            await waitFor(async () => {
              for (let i = 0; i < leases.length; i++) {
                const got = await ourUdp.exchange(query(`sentinel${seed}-${i}.${ZONE}`, Type.A), {
                  timeoutMs: 500,
                });
                const m = got ? decodeMessage(got) : null;
                if (
                  !m || m.answer[0]?.ttl === undefined || !leaseLike(m.answer[0].ttl)
                ) return false;
              }
              return true;
            }, { timeoutMs: 15_000, what: `idetcd to load seed ${seed}` });

            const list = probes(seed, entries);
            const exchanges = await mapLimit(list, 24, async (probe) => {
              const started = performance.now();
              const [coreBytes, ourBytes] = await Promise.all(
                probe.transport === "udp"
                  ? [coreUdp.exchange(probe.packet), ourUdp.exchange(probe.packet)]
                  : [
                    exchangeTcp("127.0.0.1", corePort, probe.packet),
                    exchangeTcp("127.0.0.1", ourPort, probe.packet),
                  ],
              );
              const decode = (b: Uint8Array | null) => (b ? decodeMessage(b) : null);
              const x: Exchange = {
                probe,
                query: decodeMessage(probe.packet),
                core: decode(coreBytes),
                ours: decode(ourBytes),
                diffs: [],
                seconds: 1 + Math.ceil((performance.now() - started) / 1000),
              };
              x.diffs = differences(x.core, x.ours, x.seconds);
              return x;
            });
            const undocumented: string[] = [];
            for (const x of exchanges) {
              compared++;
              if (x.core && x.ours && patchTxt(x.core, x.ours) > 0) {
                counts.set("txt-split-utf8", (counts.get("txt-split-utf8") ?? 0) + 1);
                x.diffs = differences(x.core, x.ours, x.seconds);
              }
              if (x.diffs.length === 0) continue;
              const doc = DOCUMENTED.find((d) => d.explains(x));
              if (doc) {
                counts.set(doc.id, (counts.get(doc.id) ?? 0) + 1);
                continue;
              }
              undocumented.push(`${x.probe.label}:\n    ${x.diffs.join("\n    ")}`);
            }
            await Promise.all(leases.map((l) => l.lease.revoke().catch(() => {})));
            assert.ok(exchanges.length > 500, `only ${exchanges.length} exchanges`);
            assert.deepEqual(
              undocumented.slice(0, 25),
              [],
              `seed ${seed}: ${undocumented.length} of ${exchanges.length} exchanges differ in ` +
                `ways not documented`,
            );
          });
        }
        console.log(
          `compared ${compared} exchanges over seeds ${
            SEEDS.join(", ")
          }; documented differences: ` +
            [...counts].map(([id, n]) => `${id} ${n}`).join(", "),
        );
      } finally {
        await coreUdp.close();
        await ourUdp.close();
      }
    } finally {
      client.close();
    }
  },
);
