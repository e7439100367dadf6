/**
 * The etcd plugin's answers: CoreDNS `plugin/backend_lookup.go` and the
 * record reading of `plugin/etcd/etcd.go`, as synchronous functions over a
 * {@link KeyValueSource} (the watch-fed mirror) instead of etcd reads.
 *
 * Where CoreDNS re-enters its server for a CNAME/SRV/MX target outside the
 * zone, a lookup here asks `env.upstream` for the answer. When that answer
 * is not known yet, the lookup notes the question in `pendingUpstream` and
 * {@link lookup} resolves the questions and runs the (pure, cheap) lookup
 * again; queries without such targets never await anything.
 *
 * @module
 */

import { fqdn, isSubdomain, joinLabels, presentationName } from "../../dns/name.ts";
import { synthesizedSoa } from "../../dns/soa.ts";
import { Class, Rcode, type RR, Type } from "../../dns/types.ts";
import type { KeyValue, KeyValueSource } from "../../etcd/types.ts";
import { etcdPath, KeyNames, pathWithWildcard } from "./path.ts";
import { group, type Service, serviceOf, targetStrip, txtStrings } from "./service.ts";

/** CNAME chains stop growing past this many links (CoreDNS `maxCnameChainLength`). */
export const MAX_CNAME_CHAIN_LENGTH = 10;

/** The plugin settings lookups depend on. */
export interface EtcdLookupConfig {
  /** `path`: "skydns" by default (leading/trailing slashes do not matter). */
  readonly pathPrefix: string;
  /** `min-lease-ttl` in seconds; 0 means 30. */
  readonly minLeaseTTL: number;
  /** `max-lease-ttl` in seconds; 0 means 86400. */
  readonly maxLeaseTTL: number;
}

/** The part of an upstream reply the chasing code uses. */
export interface UpstreamAnswer {
  /** The upstream records: appended after the CNAME, or a target's addresses. */
  readonly answer: readonly RR[];
  /** TC of the upstream reply; passed on for the qtypes CoreDNS passes it on for. */
  readonly truncated: boolean;
}

/** A question for the upstream (the server's own routing and chains). */
export interface UpstreamQuestion {
  /** A name outside the zone (a CNAME or SRV/MX target), fully qualified. */
  readonly name: string;
  /** The type asked for it (the question's for a CNAME, A and AAAA for a target). */
  readonly type: number;
}

/**
 * Known upstream results: the answer; null when the lookup failed (CoreDNS
 * drops the link); undefined when not asked yet.
 */
export type UpstreamResults = (name: string, type: number) => UpstreamAnswer | null | undefined;

/** Everything a lookup reads besides the question. */
export interface LookupEnv {
  /** The key space read (a mirror in the server, a MemorySource in tests). */
  readonly source: KeyValueSource;
  /** The plugin's path and lease-TTL bounds. */
  readonly config: EtcdLookupConfig;
  /**
   * Upstream results; without it every upstream lookup fails, as in CoreDNS
   * when no full server is running (its unit tests).
   */
  readonly upstream?: UpstreamResults;
  /** Told about each value that is not valid service JSON (`error` is `"<key>: <err>"`). */
  readonly onBadValue?: (kv: KeyValue, error: string) => void;
  /** Unix time in seconds, for the SOA serial; defaults to the clock. */
  readonly now?: () => number;
  /**
   * The plugin instance's memory of key names (SRV/MX/NS answers for IP
   * hosts name every key); without it each lookup remembers for itself.
   */
  readonly keyNames?: KeyNames;
}

/** What the handler turns into a reply. */
export interface LookupOutcome {
  /** NOERROR (answer or NODATA), NXDOMAIN or SERVFAIL. */
  rcode: number;
  /** The records for the question, CNAME chains included. */
  answer: RR[];
  /** The zone SOA on NXDOMAIN, NODATA and SERVFAIL; empty on answers. */
  authority: RR[];
  /** Addresses of SRV/MX/NS targets, from the zone or upstream. */
  additional: RR[];
  /** TC from a truncated upstream answer or internal chase. */
  truncated: boolean;
  /** The backend error behind a SERVFAIL (for the errors plugin). */
  error?: string;
  /** True for NXDOMAIN from a missing name: the only case fallthrough applies to. */
  nameError: boolean;
  /** Upstream questions this pass needed but had no result for; empty when complete. */
  pendingUpstream: UpstreamQuestion[];
  /** True when part of the answer came from the server's chain (CNAME targets outside the zone). */
  usedUpstream: boolean;
}

/** errKeyNotFound: the name has no key at all (an NXDOMAIN unless swallowed). */
const NOT_FOUND = Symbol("key not found");
type NotFound = typeof NOT_FOUND;
/** A failed read: not found, or a backend error text (SERVFAIL). */
type Failure = NotFound | string;

function failed<T>(result: T | Failure): result is Failure {
  return result === NOT_FOUND || typeof result === "string";
}

/** Records found for a name, with what goes into the additional section. */
interface Found {
  records: RR[];
  extra: RR[];
  truncated: boolean;
}

/** Per-query state: the zone and what the lookup learnt along the way. */
class Walk {
  readonly prefix: string;
  pending: UpstreamQuestion[] | undefined;
  /** Whether an answer came through the server's chain (so it depends on more than the mirror). */
  usedUpstream = false;
  #keyNames: KeyNames | undefined;

  /** `known` answers upstream questions for this pass (the env's, or the first pass's none). */
  constructor(
    readonly env: LookupEnv,
    readonly zone: string,
    readonly known: UpstreamResults | undefined = env.upstream,
  ) {
    this.prefix = env.config.pathPrefix;
  }

  /** The env's key names, or this lookup's own when it has none. */
  get keyNames(): KeyNames {
    return this.env.keyNames ?? (this.#keyNames ??= new KeyNames());
  }

  /** Upstream answer, or null when it failed or is not known yet (then noted as pending). */
  upstream(name: string, type: number): UpstreamAnswer | null {
    this.usedUpstream = true;
    const known = this.known;
    if (!known) return null;
    const result = known(name, type);
    if (result !== undefined) return result;
    (this.pending ??= []).push({ name, type });
    return null;
  }
}

/** The lower-cased presentation form of a host, as CoreDNS's `state.Name()` of a new question. */
function lookupName(host: string): string {
  const name = presentationName(fqdn(host));
  return name.toLowerCase();
}

/**
 * Go's `uint16(x)` of an integral float64 on amd64: converted through int32
 * (CVTTSD2SL), whose out-of-range result 0x80000000 truncates to 0. Only
 * negative weights ever leave 0..100 here.
 */
function floatToUint16(x: number): number {
  if (x >= 0 && x < 65536) return x;
  if (!(x >= -(2 ** 31) && x < 2 ** 31)) return 0;
  return x & 0xffff;
}

function rr(name: string, type: number, ttl: number, data: RR["data"]): RR {
  return { name, type, class: Class.INET, ttl, data };
}

/** An A/AAAA record for an IP-host service. */
function addressRecord(owner: string, service: Service): RR {
  return rr(owner, service.kind, service.ttl, service.address);
}

/**
 * e.Records + e.Services: the services stored under `name` (lower-cased).
 * Non-exact reads take the whole subtree below `name/`, falling back to the
 * exact key only when the subtree is empty; wildcard labels widen the read and
 * filter the keys; then the per-record steps of loopNodes and msg.Group.
 */
function records(walk: Walk, name: string, exact: boolean, qtype: number): Service[] | Failure {
  const { source, config } = walk.env;
  const { path, wildcard } = pathWithWildcard(name, walk.prefix);
  let kvs: readonly KeyValue[];
  if (exact) {
    const kv = source.get(path);
    if (kv === undefined) return NOT_FOUND;
    kvs = [kv];
  } else {
    const dir = path.endsWith("/") ? path : path + "/";
    kvs = source.range(dir);
    if (kvs.length === 0) {
      const kv = source.get(dir.slice(0, -1));
      if (kv === undefined) return NOT_FOUND;
      kvs = [kv];
    }
  }
  const nameParts = wildcard ? etcdPath(name, walk.prefix).split("/") : undefined;
  const services: Service[] = [];
  for (const kv of kvs) {
    if (nameParts !== undefined && !matchesWildcard(nameParts, kv.key)) continue;
    const service = serviceOf(kv, source, config.minLeaseTTL, config.maxLeaseTTL);
    if (typeof service === "string") {
      walk.env.onBadValue?.(kv, service);
      return service;
    }
    // shouldInclude: only TXT queries keep host-less (text-only) records.
    if (service.host !== "" || (qtype === Type.TXT && service.text !== "")) {
      services.push(service);
    }
  }
  return group(services);
}

/**
 * Whether `name` exists in the zone: the apex always does (it has the SOA),
 * and any other name when a non-exact read finds a key for it, at it or below
 * it (an empty non-terminal exists too, RFC 8020). CoreDNS's CNAME and PTR
 * read only the exact key and answer NXDOMAIN for such names; idetcd answers
 * NODATA, so a resolver does not cache "no such name" for a name that has
 * records below it, or for the zone itself.
 */
function nameExists(walk: Walk, name: string): boolean {
  if (name === walk.zone) return true;
  const { source } = walk.env;
  const { path } = pathWithWildcard(name, walk.prefix);
  const dir = path.endsWith("/") ? path : path + "/";
  return source.range(dir).length > 0 || source.get(dir.slice(0, -1)) !== undefined;
}

/** loopNodes' wildcard filter: every non-wildcard part of the name must match the key's. */
function matchesWildcard(nameParts: readonly string[], key: string): boolean {
  const keyParts = key.split("/");
  for (let i = 0; i < nameParts.length; i++) {
    if (i > keyParts.length - 1) return false;
    const part = nameParts[i];
    if (part === "*" || part === "any") continue;
    if (keyParts[i] !== part) return false;
  }
  return true;
}

/** checkForApex: at the zone apex, `apex.dns.<zone>` first, the whole zone only if that is missing. */
function servicesForAddress(walk: Walk, name: string, qtype: number): Service[] | Failure {
  if (name !== walk.zone) return records(walk, name, false, qtype);
  const apex = records(walk, joinLabels(["apex.dns", walk.zone]), false, qtype);
  if (apex !== NOT_FOUND) return apex;
  return records(walk, name, false, qtype);
}

/** dnsutil.DuplicateCNAME: a CNAME to the same target is already in the chain. */
function duplicateCNAME(target: string, chain: readonly RR[]): boolean {
  for (const record of chain) {
    if (record.type === Type.CNAME && record.data === target) return true;
  }
  return false;
}

/**
 * The CNAME step shared by A, AAAA and TXT: skips loops, long chains and
 * repeated targets; chases in-zone targets with `chase` and others upstream.
 * Returns whether TC should be set.
 */
function followCNAME(
  walk: Walk,
  service: Service,
  name: string,
  owner: string,
  upstreamType: number,
  propagateUpstreamTC: boolean,
  chain: readonly RR[],
  out: RR[],
  chase: (target: string, chain: readonly RR[]) => Found | Failure,
): boolean {
  const target = fqdn(service.host);
  // x CNAME x, and x CNAME anything below x (whose records are part of x's subtree).
  if (isSubdomain(name, target)) return false;
  const cname = rr(owner, Type.CNAME, service.ttl, target);
  if (chain.length > MAX_CNAME_CHAIN_LENGTH) return false;
  if (duplicateCNAME(target, chain)) return false;
  if (isSubdomain(walk.zone, target)) {
    const next = chase(target, [...chain, cname]);
    if (failed(next)) return false;
    if (next.records.length > 0) out.push(cname, ...next.records);
    return next.truncated;
  }
  const answer = walk.upstream(target, upstreamType);
  if (answer === null) return false;
  out.push(cname, ...answer.answer);
  return propagateUpstreamTC && answer.truncated;
}

/**
 * plugin.A / plugin.AAAA: addresses of `name` and its whole subtree, CNAMEs
 * chased. `qtype` is the question's type as CoreDNS carries it through
 * (it decides shouldInclude and the upstream question).
 */
function addresses(
  walk: Walk,
  family: number,
  name: string,
  owner: string,
  qtype: number,
  chain: readonly RR[],
): Found | Failure {
  const services = servicesForAddress(walk, name, qtype);
  if (failed(services)) return services;
  const found: Found = { records: [], extra: [], truncated: false };
  let seenHosts: Set<string> | undefined;
  for (const service of services) {
    if (service.kind === Type.CNAME) {
      const tc = followCNAME(
        walk,
        service,
        name,
        owner,
        qtype,
        true,
        chain,
        found.records,
        (target, longer) => addresses(walk, family, lookupName(target), target, qtype, longer),
      );
      if (tc) found.truncated = true;
    } else if (service.kind === family) {
      seenHosts ??= new Set();
      if (seenHosts.has(service.host)) continue;
      seenHosts.add(service.host);
      found.records.push(addressRecord(owner, service));
    }
  }
  return found;
}

/** plugin.TXT: text records of `name` and its subtree, CNAMEs chased (no apex special case). */
function texts(
  walk: Walk,
  name: string,
  owner: string,
  chain: readonly RR[],
): Found | Failure {
  const services = records(walk, name, false, Type.TXT);
  if (failed(services)) return services;
  const found: Found = { records: [], extra: [], truncated: false };
  let seenTexts: Set<string> | undefined;
  for (const service of services) {
    if (service.kind === Type.CNAME) {
      const tc = followCNAME(
        walk,
        service,
        name,
        owner,
        Type.TXT,
        false,
        chain,
        found.records,
        (target, longer) => texts(walk, lookupName(target), target, longer),
      );
      if (tc) found.truncated = true;
    } else if (service.kind === Type.TXT) {
      seenTexts ??= new Set();
      if (seenTexts.has(service.text)) continue;
      seenTexts.add(service.text);
      found.records.push(rr(owner, Type.TXT, service.ttl, txtStrings(service.text)));
    }
  }
  return found;
}

/** Additional records for an SRV/MX target that is a name: upstream A+AAAA, or the internal A chase. */
function targetAddresses(walk: Walk, target: string, extra: RR[]): void {
  if (!isSubdomain(walk.zone, target)) {
    const a = walk.upstream(target, Type.A);
    if (a !== null) extra.push(...a.answer);
    const aaaa = walk.upstream(target, Type.AAAA);
    // CNAMEs came with the A answer already.
    if (aaaa !== null) { for (const r of aaaa.answer) if (r.type !== Type.CNAME) extra.push(r); }
    return;
  }
  // Internal targets get A records only (CoreDNS has a TODO for AAAA).
  const internal = addresses(walk, Type.A, lookupName(target), target, Type.A, []);
  if (!failed(internal)) extra.push(...internal.records);
}

/** msg.Domain of a service's key, from the plugin's memory of key names. */
function keyNameOf(walk: Walk, service: Service): string {
  return walk.keyNames.of(service.key);
}

/** isDuplicate over (name, port) and (name, address) pairs. */
function firstTime(seen: Set<string>, name: string, address: string, port: number): boolean {
  const key = address !== "" ? `a ${name} ${address}` : `p ${name} ${port}`;
  if (seen.has(key)) return false;
  seen.add(key);
  return true;
}

/** The stripped target of a service whose host is a name. */
function strippedHost(service: Service): string {
  const target = fqdn(service.host);
  return service.targetStrip > 0 ? targetStrip(target, service.targetStrip) : target;
}

/** plugin.SRV: weights per priority, names as targets, IP hosts under their key's name. */
function srv(walk: Walk, name: string, owner: string): Found | Failure {
  const services = records(walk, name, false, Type.SRV);
  if (failed(services)) return services;
  // Totals count every service, even those skipped below (port -1, TXT-type).
  const totals = new Map<number, number>();
  for (const s of services) {
    const weight = s.weight !== 0 ? s.weight : 100;
    totals.set(s.priority, (totals.get(s.priority) ?? 0) + weight);
  }
  const found: Found = { records: [], extra: [], truncated: false };
  const seen = new Set<string>();
  const looked = new Set<string>();
  for (const s of services) {
    if (s.port === -1) continue;
    // float64 arithmetic in Go's order, so the floor lands where CoreDNS's does.
    let share = 100.0 / totals.get(s.priority)!;
    share *= s.weight === 0 ? 100 : s.weight;
    const weight = floatToUint16(Math.floor(share)) || 1;
    if (s.kind === Type.CNAME) {
      const target = strippedHost(s);
      found.records.push(
        rr(owner, Type.SRV, s.ttl, { priority: s.priority16, weight, port: s.port16, target }),
      );
      if (looked.has(target)) continue;
      looked.add(target);
      targetAddresses(walk, target, found.extra);
    } else if (s.kind === Type.A || s.kind === Type.AAAA) {
      const keyName = keyNameOf(walk, s);
      const target = s.targetStrip > 0 ? targetStrip(keyName, s.targetStrip) : keyName;
      if (firstTime(seen, target, "", s.port16)) {
        found.records.push(
          rr(owner, Type.SRV, s.ttl, { priority: s.priority16, weight, port: s.port16, target }),
        );
      }
      if (firstTime(seen, target, s.host, 0)) found.extra.push(addressRecord(target, s));
    }
  }
  return found;
}

/** plugin.MX: `mail:true` services only; preference is the priority. */
function mx(walk: Walk, name: string, owner: string): Found | Failure {
  const services = records(walk, name, false, Type.MX);
  if (failed(services)) return services;
  const found: Found = { records: [], extra: [], truncated: false };
  const seen = new Set<string>();
  const looked = new Set<string>();
  for (const s of services) {
    if (!s.mail) continue;
    if (s.kind === Type.CNAME) {
      const exchange = strippedHost(s);
      found.records.push(rr(owner, Type.MX, s.ttl, { preference: s.priority16, exchange }));
      if (looked.has(exchange)) continue;
      looked.add(exchange);
      targetAddresses(walk, exchange, found.extra);
    } else if (s.kind === Type.A || s.kind === Type.AAAA) {
      const keyName = keyNameOf(walk, s);
      const exchange = s.targetStrip > 0 ? targetStrip(keyName, s.targetStrip) : keyName;
      if (firstTime(seen, exchange, "", s.priority16)) {
        found.records.push(rr(owner, Type.MX, s.ttl, { preference: s.priority16, exchange }));
      }
      // The address keeps the unstripped name (a CoreDNS quirk with targetstrip).
      if (firstTime(seen, keyName, s.host, 0)) found.extra.push(addressRecord(keyName, s));
    }
  }
  return found;
}

/** plugin.CNAME: the exact key only, its first service, if the host is a name. */
function cname(walk: Walk, name: string, owner: string): Found | Failure {
  const services = records(walk, name, true, Type.CNAME);
  if (failed(services)) return services;
  const found: Found = { records: [], extra: [], truncated: false };
  const first = services[0];
  if (first !== undefined && first.kind !== Type.A && first.kind !== Type.AAAA) {
    found.records.push(rr(owner, Type.CNAME, first.ttl, fqdn(first.host)));
  }
  return found;
}

/** plugin.PTR: the exact key's name hosts. */
function ptr(walk: Walk, name: string, owner: string): Found | Failure {
  const services = records(walk, name, true, Type.PTR);
  if (failed(services)) return services;
  const found: Found = { records: [], extra: [], truncated: false };
  const seenHosts = new Set<string>();
  for (const s of services) {
    if (s.kind === Type.A || s.kind === Type.AAAA || seenHosts.has(s.host)) continue;
    seenHosts.add(s.host);
    found.records.push(rr(owner, Type.PTR, s.ttl, fqdn(s.host)));
  }
  return found;
}

/** plugin.NS at the apex: IP hosts under `ns.dns.<zone>`, named after their keys. */
function ns(walk: Walk, owner: string): Found | Failure {
  const services = records(walk, joinLabels(["ns.dns", walk.zone]), false, Type.NS);
  if (failed(services)) return services;
  const found: Found = { records: [], extra: [], truncated: false };
  const seen = new Set<string>();
  for (const s of services) {
    if (s.kind === Type.CNAME) return `NS record must be an IP address: ${s.host}`;
    if (s.kind !== Type.A && s.kind !== Type.AAAA) continue;
    const keyName = keyNameOf(walk, s);
    const nsName = s.targetStrip > 0 ? targetStrip(keyName, s.targetStrip) : keyName;
    // The address goes in every time, even for a name already listed.
    found.extra.push(addressRecord(nsName, s));
    if (seen.has(nsName)) continue;
    seen.add(nsName);
    found.records.push(rr(owner, Type.NS, s.ttl, nsName));
  }
  return found;
}

/**
 * The etcd zone's SOA (never read from etcd): serial = unix time; TTL and
 * minimum 30, CoreDNS's min(MinTTL, 300) with etcd's MinTTL of 30.
 */
export function soaRecord(zone: string, nowSeconds: number): RR {
  return synthesizedSoa(zone, { nowSeconds, ttl: 30, minimum: 30 });
}

/**
 * One synchronous pass of the handler's switch for a question in `zone`.
 * `qname` is lower-cased (what keys derive from); `owner` is the question name
 * as sent (answers keep its case). When `pendingUpstream` is non-empty the
 * outcome is incomplete: resolve those questions and run again ({@link lookup}).
 */
export function lookupSync(
  env: LookupEnv,
  zone: string,
  qname: string,
  owner: string,
  qtype: number,
): LookupOutcome {
  return lookupPass(new Walk(env, zone), qname, owner, qtype);
}

/** {@link lookupSync} on a walk whose upstream results are chosen by the caller. */
function lookupPass(walk: Walk, qname: string, owner: string, qtype: number): LookupOutcome {
  const zone = walk.zone;
  let result: Found | Failure;
  // The default branch's "fake" A lookup: it tells NODATA from NXDOMAIN; its
  // records are not used (so neither are the upstream lookups it would make).
  const existence = (): Found | Failure => {
    const services = servicesForAddress(walk, qname, qtype);
    return failed(services) ? services : { records: [], extra: [], truncated: false };
  };
  switch (qtype) {
    case Type.A:
    case Type.AAAA:
      result = addresses(walk, qtype, qname, owner, qtype, []);
      break;
    case Type.TXT:
      result = texts(walk, qname, owner, []);
      break;
    case Type.CNAME:
      result = cname(walk, qname, owner);
      break;
    case Type.PTR:
      result = ptr(walk, qname, owner);
      break;
    case Type.MX:
      result = mx(walk, qname, owner);
      break;
    case Type.SRV:
      result = srv(walk, qname, owner);
      break;
    case Type.SOA:
      // Only the apex has the SOA. CoreDNS puts it in the answer for any name
      // of the zone, which validating resolvers (BIND) reject as a FORMERR;
      // below the apex this is a normal NODATA/NXDOMAIN, as Knot answers.
      // Whether the name exists is read from the keys alone: no record can
      // answer, so a bad value below the name is no reason for a SERVFAIL.
      if (qname === zone) {
        result = { records: [soa(walk)], extra: [], truncated: false };
      } else {
        result = nameExists(walk, qname) ? { records: [], extra: [], truncated: false } : NOT_FOUND;
      }
      break;
    default:
      if (qtype === Type.NS && qname === zone) {
        result = ns(walk, owner);
        break;
      }
      result = existence();
  }
  // A name that exists is never NXDOMAIN (RFC 8020): the apex whatever the
  // data (apex NS without dns/ns, an empty zone), and names with keys below
  // them for CNAME and PTR, which CoreDNS reads as one exact key.
  if (result === NOT_FOUND && nameExists(walk, qname)) {
    result = { records: [], extra: [], truncated: false };
  }
  const outcome: LookupOutcome = {
    rcode: Rcode.Success,
    answer: [],
    authority: [],
    additional: [],
    truncated: false,
    nameError: false,
    pendingUpstream: walk.pending ?? [],
    usedUpstream: walk.usedUpstream,
  };
  if (result === NOT_FOUND) {
    outcome.rcode = Rcode.NameError;
    outcome.nameError = true;
  } else if (typeof result === "string") {
    outcome.rcode = Rcode.ServerFailure;
    outcome.error = result;
  } else if (result.records.length > 0) {
    outcome.answer = result.records;
    outcome.additional = result.extra;
    outcome.truncated = result.truncated;
    return outcome;
  }
  // NXDOMAIN, SERVFAIL and NODATA all carry the zone SOA (BackendError).
  outcome.authority = [soa(walk)];
  return outcome;
}

function soa(walk: Walk): RR {
  const now = walk.env.now ? walk.env.now() : Date.now() / 1000;
  return soaRecord(walk.zone, now);
}

/** How many times {@link lookup} re-runs for upstream answers before giving up on the rest. */
const MAX_UPSTREAM_ROUNDS = 4;

// The first pass of every query runs with "nothing known upstream yet".
const notYetKnown: UpstreamResults = () => undefined;

/**
 * The full lookup: synchronous unless CNAME/SRV/MX targets outside the zone
 * need `resolve` (the server's own routing, CoreDNS's upstream). A rejected
 * resolve counts as a failed upstream lookup. The result equals what
 * CoreDNS's sequential lookups produce, since no lookup depends on an
 * upstream answer's content. Without `resolve`, every upstream lookup fails
 * (CoreDNS without a running server).
 */
export function lookup(
  env: LookupEnv,
  zone: string,
  qname: string,
  owner: string,
  qtype: number,
  resolve?: (name: string, type: number) => Promise<UpstreamAnswer>,
): LookupOutcome | Promise<LookupOutcome> {
  if (!resolve) return lookupSync(env, zone, qname, owner, qtype);
  const first = lookupPass(new Walk(env, zone, notYetKnown), qname, owner, qtype);
  if (first.pendingUpstream.length === 0) return first;
  return withUpstreamAnswers(env, zone, qname, owner, qtype, resolve, first);
}

/** Resolves the upstream questions a pass needed and runs the lookup again until complete. */
async function withUpstreamAnswers(
  env: LookupEnv,
  zone: string,
  qname: string,
  owner: string,
  qtype: number,
  resolve: (name: string, type: number) => Promise<UpstreamAnswer>,
  first: LookupOutcome,
): Promise<LookupOutcome> {
  const known = new Map<string, UpstreamAnswer | null>();
  const key = (name: string, type: number) => `${type} ${name}`;
  const knownEnv: LookupEnv = { ...env, upstream: (name, type) => known.get(key(name, type)) };
  let outcome = first;
  for (let round = 1; outcome.pendingUpstream.length > 0; round++) {
    await Promise.all(outcome.pendingUpstream.map(async ({ name, type }) => {
      const k = key(name, type);
      if (known.has(k)) return;
      known.set(k, null); // asked once per question, even if listed twice
      try {
        known.set(k, await resolve(name, type));
      } catch {
        known.set(k, null);
      }
    }));
    if (round >= MAX_UPSTREAM_ROUNDS) {
      // Whatever is still unknown (the data changed under us each time) counts as failed.
      const settled: LookupEnv = {
        ...env,
        upstream: (name, type) => known.get(key(name, type)) ?? null,
      };
      return lookupSync(settled, zone, qname, owner, qtype);
    }
    outcome = lookupSync(knownEnv, zone, qname, owner, qtype);
  }
  return outcome;
}
