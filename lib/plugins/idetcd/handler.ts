/**
 * DNS answers for the pattern's zone, from the watch-fed mirror (no etcd
 * read per query).
 *
 * - `workerN.<zone>`: A / AAAA of the holder (exactly its own records, no
 *   SkyDNS subtree merge), SRV `0 100 PORT workerN.<zone>.` when a port is
 *   known, NXDOMAIN + SOA when nobody holds it, NODATA + SOA for other types;
 *   SERVFAIL for this node's own last name while it does not vouch for it
 *   (fenced: another node may hold it by now);
 * - a name whose lease just ended keeps answering for a few seconds
 *   (departed.ts); the whole zone answers SERVFAIL until the copy has loaded;
 * - `_nodes.<zone>`: SRV of every member ordered by ID (A/AAAA in the
 *   additional section); A / AAAA: every member's addresses;
 * - the apex: SOA and NS (`ns.dns.<zone>`, whose A/AAAA are this node's);
 * - PTR under in-addr.arpa / ip6.arpa for members' addresses;
 * - other names in the zone: NXDOMAIN (or the next plugin with `fallthrough`);
 *   names outside it: the next plugin.
 *
 * @module
 */

import { isSubdomain } from "../../dns/name.ts";
import { synthesizedSoa } from "../../dns/soa.ts";
import { Class, Rcode, type RR, Type } from "../../dns/types.ts";
import type { KeyValueSource } from "../../etcd/types.ts";
import { bareReply, type Handler, type Reply, type Request } from "../../server/plugin.ts";
import { isIPv4, isIPv6 } from "../../go/ip.ts";
import { canonicalIPv6 } from "./addresses.ts";
import type { DepartedMembers } from "./departed.ts";
import type { NamePattern } from "./pattern.ts";
import type { RoleMap } from "./roles.ts";
import { ClusterView, type Member, namePath } from "./records.ts";

/** Default TTL of negative answers, seconds (at most the answer TTL). */
export const DEFAULT_NEGATIVE_TTL = 5;

/** The name that lists every member. */
export const MEMBERS_LABEL = "_nodes";

/** What the handler needs. */
export interface IdetcdHandlerOptions {
  /**
   * The name pattern: its zone is what the handler answers for, its labels which names are
   * members'.
   */
  pattern: NamePattern;
  /** etcd key prefix ("/skydns"). */
  prefix: string;
  /** TTL of answers, seconds. */
  ttl: number;
  /** TTL of negative answers (the SOA's TTL and minimum), seconds; default min(ttl, 5). */
  negativeTtl?: number;
  /** The configured service port (SRV), used when a member stored none. */
  port?: number;
  /** Zones for which NXDOMAIN passes to the next plugin. */
  fallthrough: readonly string[];
  /** The mirror of the zone's keys. */
  source: KeyValueSource;
  /** This node's advertised addresses (for `ns.dns.<zone>`). */
  selfAddresses: () => readonly string[];
  /** This node's last claim while it does not vouch for it: its records are not answered. */
  unvouched?: () => { id: number; lease: string } | undefined;
  /** False until the copy has loaded: the zone then answers SERVFAIL. */
  loaded?: () => boolean;
  /** Names held down after their lease ended. */
  departed?: DepartedMembers;
  /** Changes whenever this node's held state may have changed: kept answers are dropped then. */
  selfEpoch?: () => number;
  /** The Corefile's roles: `_ROLE._nodes.<zone>` lists the members of each. */
  roles?: RoleMap;
  /** Unix time in seconds, for the SOA serial. */
  now?: () => number;
}

/** The answering side of the plugin. */
export interface IdetcdHandler {
  /**
   * Answers a query for the zone or for a member's PTR; hands anything else to `next`, and NXDOMAIN
   * too under `fallthrough`.
   */
  serve(req: Request, next: Handler): Promise<Reply>;
}

/** The address a reverse name stands for ("4.0.0.10.in-addr.arpa." -> "10.0.0.4"). */
export function addressFromReverseName(name: string): string | undefined {
  const n = name.toLowerCase();
  if (n.endsWith(".in-addr.arpa.")) {
    const labels = n.slice(0, -".in-addr.arpa.".length).split(".");
    if (labels.length !== 4) return undefined;
    const address = labels.reverse().join(".");
    return isIPv4(address) ? address : undefined;
  }
  if (n.endsWith(".ip6.arpa.")) {
    const labels = n.slice(0, -".ip6.arpa.".length).split(".");
    if (labels.length !== 32 || !labels.every((l) => /^[0-9a-f]$/.test(l))) return undefined;
    const hex = labels.reverse().join("");
    const text = hex.match(/.{4}/g)!.join(":");
    return isIPv6(text) ? canonicalIPv6(text) : undefined;
  }
  return undefined;
}

/** Creates the handler; the view of the members is rebuilt only when the mirror changes. */
export function createIdetcdHandler(options: IdetcdHandlerOptions): IdetcdHandler {
  const { pattern, ttl, source } = options;
  const zone = pattern.zone;
  const base = namePath(options.prefix, zone);
  const membersName = `${MEMBERS_LABEL}.${zone}`;
  const nsName = `ns.dns.${zone}`;
  const nsParent = `dns.${zone}`;
  // Negative answers are cached for min(SOA TTL, minimum): short, because peers poll for
  // names that are not claimed yet and a flash NXDOMAIN must not stick in caches.
  const negativeTtl = options.negativeTtl ?? Math.min(DEFAULT_NEGATIVE_TTL, ttl);
  const now = options.now ?? (() => Date.now() / 1000);

  let cached: { generation: number; view: ClusterView } | undefined;
  const liveView = (): ClusterView => {
    const generation = source.generation;
    if (!cached || cached.generation !== generation) {
      cached = { generation, view: ClusterView.fromSource(source, base, pattern) };
    }
    return cached.view;
  };
  /** The members to answer for: the copy's, plus held-down ones, less this node's unvouched records. */
  const view = (): { view: ClusterView; volatile: boolean } => {
    const live = liveView();
    const hidden = options.unvouched?.()?.lease;
    const departed = options.departed && !options.departed.empty
      ? options.departed.members().filter((m) => !live.member(m.id))
      : [];
    if (hidden === undefined && departed.length === 0) return { view: live, volatile: false };
    const members = [...live.members, ...departed].filter((m) => m.lease !== hidden);
    return { view: new ClusterView(members), volatile: true };
  };
  /**
   * Whether `id` is this node's own last name while it does not vouch for it
   * and no other holder shows in the copy.
   */
  const unvouched = (id: number): boolean => {
    const hidden = options.unvouched?.();
    if (hidden === undefined || hidden.id !== id) return false;
    const shown = liveView().member(id);
    return shown === undefined || shown.lease === hidden.lease;
  };
  // Kept answers die when the copy changes or this node's held state does
  // (its own name must not be answered from a kept reply after the fence).
  const selfEpoch = options.selfEpoch;
  const cacheGeneration = selfEpoch
    ? () => source.generation * 1024 + (selfEpoch() % 1024)
    : () => source.generation;

  const rr = (name: string, type: number, data: RR["data"], rrTtl = ttl): RR => ({
    name,
    type,
    class: Class.INET,
    ttl: rrTtl,
    data,
  });
  const soa = (): RR =>
    synthesizedSoa(zone, { nowSeconds: now(), ttl: negativeTtl, minimum: negativeTtl });
  // Answers that depend on the clock (held-down names) or on this node's fencing
  // state are not kept by the server's answer cache.
  let volatile = false;
  const reply = (
    rcode: number,
    answer: RR[],
    authority: RR[] = [],
    additional: RR[] = [],
  ): Reply => ({
    rcode,
    authoritative: true,
    answer,
    authority,
    additional,
    plugin: "idetcd",
    ...(volatile ? {} : { cacheGeneration }),
  });
  const answer = (records: RR[], additional: RR[] = []): Reply =>
    records.length > 0 ? reply(Rcode.Success, records, [], additional) : noData();
  const noData = (): Reply => reply(Rcode.Success, [], [soa()]);
  const nameError = (req: Request, next: Handler): Promise<Reply> | Reply => {
    if (options.fallthrough.some((z) => isSubdomain(z, req.qname))) return next(req);
    return reply(Rcode.NameError, [], [soa()]);
  };

  const addressRecords = (
    owner: string,
    ipv4: readonly string[],
    ipv6: readonly string[],
    qtype: number,
  ) => {
    const out: RR[] = [];
    if (qtype === Type.A || qtype === Type.ANY) {
      for (const a of ipv4) out.push(rr(owner, Type.A, a));
    }
    if (qtype === Type.AAAA || qtype === Type.ANY) {
      for (const a of ipv6) out.push(rr(owner, Type.AAAA, a));
    }
    return out;
  };
  const glue = (m: Member) => [
    ...m.ipv4.map((a) => rr(m.name, Type.A, a)),
    ...m.ipv6.map((a) => rr(m.name, Type.AAAA, a)),
  ];
  const srv = (owner: string, m: Member, port: number) =>
    rr(owner, Type.SRV, { priority: 0, weight: 100, port, target: m.name });

  /** The role of a `_ROLE._nodes.<zone>` name, when it is one of a declared role. */
  const roleList = (qname: string): string | undefined => {
    if (!options.roles || options.roles.empty || !qname.endsWith(`.${membersName}`)) {
      return undefined;
    }
    const label = qname.slice(0, -membersName.length - 1);
    if (!label.startsWith("_")) return undefined;
    return options.roles.get(label.slice(1)) ? label.slice(1) : undefined;
  };

  const serve = (req: Request, next: Handler): Promise<Reply> => {
    if (req.question.class !== Class.INET) return next(req);
    const qname = req.qname;
    const owner = req.question.name;
    const qtype = req.question.type;
    volatile = false;

    if (!isSubdomain(zone, qname)) {
      if (qtype !== Type.PTR) return next(req);
      const address = addressFromReverseName(qname);
      if (address === undefined) return next(req);
      const members = view();
      volatile = members.volatile;
      const holders = members.view.byAddress(address);
      if (holders.length === 0) return next(req);
      return Promise.resolve(answer(holders.map((m) => rr(owner, Type.PTR, m.name))));
    }

    if (options.loaded && !options.loaded()) {
      // No copy of etcd yet: what CoreDNS answers when it cannot read etcd.
      return Promise.resolve(bareReply(Rcode.ServerFailure, "idetcd", "etcd data not loaded yet"));
    }

    if (qname === zone) {
      if (qtype === Type.SOA) return Promise.resolve(answer([soa()]));
      if (qtype === Type.NS) {
        const self = options.selfAddresses();
        return Promise.resolve(answer(
          [rr(owner, Type.NS, nsName)],
          addressRecords(nsName, self.filter(isIPv4), self.filter(isIPv6), Type.ANY),
        ));
      }
      return Promise.resolve(noData());
    }
    if (qname === nsName) {
      const self = options.selfAddresses();
      return Promise.resolve(
        answer(addressRecords(owner, self.filter(isIPv4), self.filter(isIPv6), qtype)),
      );
    }
    if (qname === nsParent) return Promise.resolve(noData());

    const members = view();
    volatile = members.volatile;
    const current = members.view;
    const role = roleList(qname);
    if (qname === membersName || role !== undefined) {
      const members = role === undefined
        ? current.members
        : current.members.filter((m) => options.roles!.roleOf(m.id) === role);
      if (qtype === Type.SRV) {
        const records = members.map((m) => srv(owner, m, m.port ?? options.port ?? 0));
        return Promise.resolve(answer(records, members.flatMap(glue)));
      }
      const ipv4 = members.flatMap((m) => m.ipv4);
      const ipv6 = members.flatMap((m) => m.ipv6);
      return Promise.resolve(answer(addressRecords(owner, ipv4, ipv6, qtype)));
    }

    const id = pattern.parse(qname);
    if (id !== undefined && unvouched(id)) {
      // This node's own last name while it does not vouch for it: another node may
      // hold it by now, so neither its own address nor NXDOMAIN is the truth.
      return Promise.resolve(bareReply(Rcode.ServerFailure, "idetcd"));
    }
    const member = id === undefined ? undefined : current.member(id);
    if (!member) return Promise.resolve(nameError(req, next));
    if (qtype === Type.SRV) {
      const port = member.port ?? options.port;
      if (port === undefined) return Promise.resolve(noData());
      return Promise.resolve(answer([srv(owner, member, port)], glue(member)));
    }
    return Promise.resolve(answer(addressRecords(owner, member.ipv4, member.ipv6, qtype)));
  };

  return { serve };
}
