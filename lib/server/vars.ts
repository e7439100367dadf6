/**
 * CoreDNS's query metrics (plugin/metrics/vars): the families, their
 * labels, and Report, in a leaf module both sides can import without
 * importing each other. The dispatcher reports here the queries it answers
 * before any plugin runs (zone "dropped", as CoreDNS's errorAndMetricsFunc);
 * the `prometheus` plugin reports every query its chain answers and serves
 * the process-wide registry (lib/server/metrics.ts) these families live in.
 *
 * As in CoreDNS, counting does not depend on the plugin being configured;
 * only /metrics, which exists when it is, shows the numbers.
 *
 * @module
 */

import { rcodeToString } from "../dns/types.ts";
import {
  type Counter,
  counter,
  type Gauge,
  gauge,
  type Histogram,
  histogram,
  TIME_BUCKETS,
} from "./metrics.ts";

/** The fake zone of queries that never entered a plugin chain (no closing dot: never a real zone). */
export const DROPPED_ZONE = "dropped";

/** CoreDNS's request/response size buckets. */
export const SIZE_BUCKETS: readonly number[] = [
  0,
  100,
  200,
  300,
  400,
  511,
  1023,
  2047,
  4095,
  8291,
  16e3,
  32e3,
  48e3,
  64e3,
];

/** The qtypes CoreDNS labels by name (vars/monitor.go); the rest are "other". */
const MONITORED_TYPES: ReadonlyMap<number, string> = new Map<number, string>([
  [1, "A"],
  [2, "NS"],
  [5, "CNAME"],
  [6, "SOA"],
  [12, "PTR"],
  [15, "MX"],
  [16, "TXT"],
  [28, "AAAA"],
  [33, "SRV"],
  [43, "DS"],
  [46, "RRSIG"],
  [47, "NSEC"],
  [48, "DNSKEY"],
  [50, "NSEC3"],
  [65, "HTTPS"],
  [251, "IXFR"],
  [252, "AXFR"],
  [255, "ANY"],
]);

/** The `type` label of a qtype: its name when CoreDNS monitors it, else "other". */
export function qtypeLabel(qtype: number | undefined): string {
  return (qtype !== undefined && MONITORED_TYPES.get(qtype)) || "other";
}

/** The `server` label: `dns://` + Go's JoinHostPort(host, port), e.g. "dns://:53", "dns://[::1]:53". */
export function serverLabel(host: string, port: number): string {
  return `dns://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** The `family` label of a client address: "1" for IPv4, "2" for IPv6. */
export function familyLabel(address: string): "1" | "2" {
  return address.includes(":") ? "2" : "1";
}

/**
 * The families of CoreDNS's query metrics in the process registry, created
 * on first use (so they appear once something reports, as in CoreDNS).
 * Callers keep the result: looking the families up again per query would
 * cost more than counting.
 */
export function queryMetrics(): QueryMetrics {
  return {
    requests: counter({
      name: "coredns_dns_requests_total",
      help: "Counter of DNS requests made per zone, protocol and family.",
      labelNames: ["server", "zone", "view", "proto", "family", "type"],
    }),
    duration: histogram({
      name: "coredns_dns_request_duration_seconds",
      help: "Histogram of the time (in seconds) each request took per zone.",
      labelNames: ["server", "zone", "view", "type"],
      buckets: TIME_BUCKETS,
    }),
    requestSize: histogram({
      name: "coredns_dns_request_size_bytes",
      help: "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
      labelNames: ["server", "zone", "view", "proto"],
      buckets: SIZE_BUCKETS,
    }),
    doRequests: counter({
      name: "coredns_dns_do_requests_total",
      help: "Counter of DNS requests with DO bit set per zone.",
      labelNames: ["server", "zone", "view"],
    }),
    responseSize: histogram({
      name: "coredns_dns_response_size_bytes",
      help: "Size of the returned response in bytes.",
      labelNames: ["server", "zone", "view", "proto"],
      buckets: SIZE_BUCKETS,
    }),
    responses: counter({
      name: "coredns_dns_responses_total",
      help: "Counter of response status codes.",
      labelNames: ["server", "zone", "view", "rcode", "plugin"],
    }),
    panics: counter({
      name: "coredns_panics_total",
      help: "A metrics that counts the number of panics.",
    }),
    buildInfo: gauge({
      name: "coredns_build_info",
      help:
        "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.",
      labelNames: ["version", "revision", "goversion"],
    }),
  };
}

/** The families {@link queryMetrics} returns, under CoreDNS's names and labels. */
export interface QueryMetrics {
  /** `coredns_dns_requests_total`: every query, by zone, transport, family and qtype. */
  requests: Counter<"server" | "zone" | "view" | "proto" | "family" | "type">;
  /** `coredns_dns_request_duration_seconds`: time from entering the chain to the encoded reply. */
  duration: Histogram<"server" | "zone" | "view" | "type">;
  /** `coredns_dns_request_size_bytes`: the query's size in bytes. */
  requestSize: Histogram<"server" | "zone" | "view" | "proto">;
  /** `coredns_dns_do_requests_total`: queries with the DNSSEC OK bit. */
  doRequests: Counter<"server" | "zone" | "view">;
  /** `coredns_dns_response_size_bytes`: the reply's size on the wire. */
  responseSize: Histogram<"server" | "zone" | "view" | "proto">;
  /** `coredns_dns_responses_total`: replies by rcode and the plugin that wrote them. */
  responses: Counter<"server" | "zone" | "view" | "rcode" | "plugin">;
  /** `coredns_panics_total`: plugins that threw (answered SERVFAIL, as after a Go panic). */
  panics: Counter;
  /** `coredns_build_info`: a constant 1 labelled with the version the server reports. */
  buildInfo: Gauge<"version" | "revision" | "goversion">;
}

/** One answered query, as CoreDNS's vars.Report takes it. */
export interface QueryReport {
  /** The `server` label ({@link serverLabel}). */
  server: string;
  /** The zone that served it, or {@link DROPPED_ZONE}. */
  zone: string;
  /** The view label (always "": idetcd has no views). */
  view: string;
  /** The transport. */
  proto: "udp" | "tcp";
  /** "1" for IPv4 clients, "2" for IPv6. */
  family: "1" | "2";
  /** The question's type, undefined without a question. */
  qtype: number | undefined;
  /** The query's DO bit. */
  dnssecOk: boolean;
  /** The reply's rcode. */
  rcode: number;
  /** The plugin that wrote the reply ("" when the server did). */
  plugin: string;
  /** Query size in bytes; undefined when unknown (not observed). */
  requestSize: number | undefined;
  /** Reply size in bytes. */
  responseSize: number;
  /** Time from the query entering the chain to the reply being encoded. */
  seconds: number;
}

/** Records one query in CoreDNS's metrics (vars.Report). */
export function reportQuery(metrics: QueryMetrics, r: QueryReport): void {
  const type = qtypeLabel(r.qtype);
  const base = { server: r.server, zone: r.zone, view: r.view };
  if (r.dnssecOk) metrics.doRequests.inc(base);
  metrics.requests.inc({ ...base, proto: r.proto, family: r.family, type });
  metrics.duration.observe({ ...base, type }, r.seconds);
  metrics.responseSize.observe({ ...base, proto: r.proto }, r.responseSize);
  if (r.requestSize !== undefined) {
    metrics.requestSize.observe({ ...base, proto: r.proto }, r.requestSize);
  }
  metrics.responses.inc({ ...base, rcode: rcodeToString(r.rcode), plugin: r.plugin });
}

/** What a kept reply's queries share: everything of a {@link QueryReport} but the per-query parts. */
export type FixedReport = Omit<QueryReport, "family" | "requestSize" | "responseSize" | "seconds">;

/** The series one family of clients adds to: bound once, so a fast-path count is a few additions. */
interface BoundSeries {
  doRequests?: { inc(): void };
  requests: { inc(): void };
  duration: { observe(value: number): void };
  responseSize: { observe(value: number): void };
  requestSize: { observe(value: number): void };
  responses: { inc(): void };
}

/**
 * {@link reportQuery} for the queries of one kept reply: the same families
 * and labels, with the series resolved on first use per client family, so
 * counting a fast-path answer costs no label work.
 */
export function fastReporter(
  metrics: QueryMetrics,
  r: FixedReport,
): (family: "1" | "2", requestSize: number, responseSize: number, seconds: number) => void {
  const type = qtypeLabel(r.qtype);
  const base = { server: r.server, zone: r.zone, view: r.view };
  const byFamily: (BoundSeries | undefined)[] = [];
  const bind = (family: "1" | "2"): BoundSeries => ({
    doRequests: r.dnssecOk ? metrics.doRequests.bind(base) : undefined,
    requests: metrics.requests.bind({ ...base, proto: r.proto, family, type }),
    duration: metrics.duration.bind({ ...base, type }),
    responseSize: metrics.responseSize.bind({ ...base, proto: r.proto }),
    requestSize: metrics.requestSize.bind({ ...base, proto: r.proto }),
    responses: metrics.responses.bind({ ...base, rcode: rcodeToString(r.rcode), plugin: r.plugin }),
  });
  return (family, requestSize, responseSize, seconds) => {
    const i = family === "1" ? 0 : 1;
    const s = byFamily[i] ??= bind(family);
    s.doRequests?.inc();
    s.requests.inc();
    s.duration.observe(seconds);
    s.responseSize.observe(responseSize);
    s.requestSize.observe(requestSize);
    s.responses.inc();
  };
}
