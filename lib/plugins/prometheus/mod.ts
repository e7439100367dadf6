/**
 * prometheus: counts queries per server, zone and type and serves every
 * registered metric on `http://ADDRESS/metrics`, as CoreDNS's metrics plugin
 * (names and labels as CoreDNS 1.11+).
 *
 * The handler observes each reply through `req.observers` (after encoding,
 * so sizes are the bytes sent); queries that never enter a chain are counted
 * under the zone `dropped` through the Instance's `packetObservers`.
 *
 * @module
 */

import process from "node:process";
import { argError, CorefileError, type Directive } from "../../corefile/types.ts";
import { matchZone } from "../../dns/name.ts";
import { Rcode, rcodeToString } from "../../dns/types.ts";
import type { Peer, ServerRequest, Written } from "../../server/dispatch.ts";
import { currentConfigs, packetObservers } from "../../server/instance.ts";
import {
  CONTENT_TYPE,
  counter,
  gauge,
  histogram,
  type MetricFamily,
  registerCollector,
  render,
  TIME_BUCKETS,
} from "../../server/metrics.ts";
import type { Plugin, PluginDefinition } from "../../server/plugin.ts";
import { type HttpAddress, HttpEndpoint, parseHttpAddress } from "../health/http.ts";
import denoJson from "../../../deno.json" with { type: "json" };

/** CoreDNS's default metrics address. */
export const DEFAULT_METRICS_ADDRESS = "localhost:9153";

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
const MONITORED_TYPES = new Map<number, string>([
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

/** A parsed `prometheus` directive. */
export interface PrometheusConfig {
  address: HttpAddress;
  runtimeMetrics: boolean;
}

/** Reads `prometheus [ADDRESS] { runtime_metrics }` (once per block). */
export function parsePrometheus(directives: Directive[]): PrometheusConfig {
  if (directives.length > 1) {
    throw new CorefileError(
      "this plugin can only be used once per Server Block",
      directives[1].name,
      "prometheus",
    );
  }
  const d = directives[0];
  if (d.args.length > 1) throw argError(d.args[1], "prometheus");
  const address = parseHttpAddress(
    d.args[0]?.text ?? DEFAULT_METRICS_ADDRESS,
    d.args[0],
    "prometheus",
  );
  let runtimeMetrics = false;
  for (const line of d.block ?? []) {
    const option = line.name.text;
    if (option === "runtime_metrics") {
      if (line.args.length) throw argError(line.args[0], "prometheus");
      runtimeMetrics = true;
    } else if (option === "tls") {
      throw new CorefileError(
        "tls is not supported by idetcd; serve /metrics over plain HTTP",
        line.name,
        "prometheus",
      );
    } else {
      throw new CorefileError(`unknown option: ${option}`, line.name, "prometheus");
    }
  }
  return { address, runtimeMetrics };
}

/** CoreDNS's query metrics (plugin/metrics/vars), created on first use. */
function dnsMetrics() {
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

type DnsMetrics = ReturnType<typeof dnsMetrics>;
let metrics: DnsMetrics | undefined;

/** One answered query, as CoreDNS's vars.Report takes it. */
export interface QueryReport {
  server: string;
  zone: string;
  view: string;
  proto: "udp" | "tcp";
  /** "1" for IPv4 clients, "2" for IPv6. */
  family: "1" | "2";
  qtype: number | undefined;
  dnssecOk: boolean;
  rcode: number;
  /** The plugin that wrote the reply ("" when the server did). */
  plugin: string;
  /** Query size in bytes; undefined when unknown (not observed). */
  requestSize: number | undefined;
  responseSize: number;
  seconds: number;
}

/** Records one query in CoreDNS's metrics (vars.Report). */
export function reportQuery(r: QueryReport): void {
  metrics ??= dnsMetrics();
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

function familyOf(address: string): "1" | "2" {
  return address.includes(":") ? "2" : "1";
}

/** The listen host (bind address or "") that received a packet on `localAddress`:`port`. */
function listenHost(localAddress: string, port: number): string {
  for (const config of currentConfigs.values()) {
    for (const l of config.listeners) {
      if (l.port === port && l.host !== "" && l.host === localAddress) return l.host;
    }
  }
  return "";
}

/** The only listen address of the running configurations, for labelling without a peer. */
function soleListener(): { host: string; port: number } | undefined {
  const all = new Map<string, { host: string; port: number }>();
  for (const config of currentConfigs.values()) {
    for (const l of config.listeners) all.set(`[${l.host}]:${l.port}`, l);
  }
  return all.size === 1 ? [...all.values()][0] : undefined;
}

/**
 * Counts packets that never entered a chain (REFUSED for no zone or an
 * empty block, SERVFAIL) under zone "dropped", as CoreDNS's
 * errorAndMetricsFunc. `peer` and `requestSize` are used when the
 * dispatcher passes them; without a peer the labels fall back to the only
 * listener, "udp" and family "1".
 */
export function observeDropped(
  req: ServerRequest | undefined,
  written: Written,
  peer?: Peer,
  requestSize?: number,
): void {
  if (req) return;
  if (written.rcode !== Rcode.Refused && written.rcode !== Rcode.ServerFailure) return;
  let server: string;
  if (peer) {
    server = serverLabel(listenHost(peer.localAddress, peer.localPort), peer.localPort);
  } else {
    const sole = written.block
      ? { host: written.block.bind[0] ?? "", port: written.block.port }
      : soleListener();
    server = sole ? serverLabel(sole.host, sole.port) : serverLabel("", 0);
  }
  const optRR = written.message.additional.find((r) => r.type === 41);
  const dnssecOk = Boolean(optRR && (optRR.data as { dnssecOk?: boolean }).dnssecOk);
  reportQuery({
    server,
    zone: DROPPED_ZONE,
    view: "",
    proto: peer?.transport ?? "udp",
    family: peer ? familyOf(peer.remoteAddress) : "1",
    qtype: written.question?.type,
    dnssecOk,
    rcode: written.rcode,
    plugin: "",
    requestSize,
    responseSize: written.size,
    seconds: 0,
  });
}

/** coredns_plugin_enabled, computed at scrape time from the configurations that have prometheus. */
function pluginEnabled(): MetricFamily[] {
  const samples = new Map<string, Record<string, string>>();
  for (const config of currentConfigs.values()) {
    for (const block of config.blocks) {
      if (!block.plugins.some((p) => p.name === "prometheus")) continue;
      const hosts = block.bind.length ? block.bind : [""];
      for (const host of hosts) {
        for (const zone of block.zones) {
          for (const p of block.plugins) {
            const labels = { server: serverLabel(host, block.port), zone, view: "", name: p.name };
            samples.set(JSON.stringify(labels), labels);
          }
        }
      }
    }
  }
  return [{
    name: "coredns_plugin_enabled",
    help: "A metric that indicates whether a plugin is enabled on per server and zone basis.",
    type: "gauge",
    samples: [...samples.values()].map((labels) => ({ labels, value: 1 })),
  }];
}

const processStart = performance.timeOrigin / 1000;

/** `runtime_metrics`: process and Deno runtime figures (Go's client exports process_* and go_*). */
function runtimeMetrics(): MetricFamily[] {
  const mem = Deno.memoryUsage();
  const cpu = process.cpuUsage();
  const families: MetricFamily[] = [
    {
      name: "process_cpu_seconds_total",
      help: "Total user and system CPU time spent in seconds.",
      type: "counter",
      samples: [{ value: (cpu.user + cpu.system) / 1e6 }],
    },
    {
      name: "process_resident_memory_bytes",
      help: "Resident memory size in bytes.",
      type: "gauge",
      samples: [{ value: mem.rss }],
    },
    {
      name: "process_start_time_seconds",
      help: "Start time of the process since unix epoch in seconds.",
      type: "gauge",
      samples: [{ value: processStart }],
    },
    {
      name: "deno_memory_heap_used_bytes",
      help: "V8 heap bytes in use.",
      type: "gauge",
      samples: [{ value: mem.heapUsed }],
    },
    {
      name: "deno_memory_heap_total_bytes",
      help: "V8 heap bytes allocated.",
      type: "gauge",
      samples: [{ value: mem.heapTotal }],
    },
    {
      name: "deno_memory_external_bytes",
      help: "Bytes of memory held outside the V8 heap (buffers).",
      type: "gauge",
      samples: [{ value: mem.external }],
    },
  ];
  try {
    let fds = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) fds++;
    families.push({
      name: "process_open_fds",
      help: "Number of open file descriptors.",
      type: "gauge",
      samples: [{ value: fds }],
    });
  } catch {
    // No /proc (macOS) or no read permission: leave it out.
  }
  return families;
}

/** Registers a process-wide hook while a configuration holds it (resource pool entry). */
function hold(install: () => () => void): { close(): void } {
  const uninstall = install();
  return { close: uninstall };
}

/** The /metrics server of one address, shared by the blocks and configurations naming it. */
function metricsEndpoint(address: HttpAddress): HttpEndpoint {
  const endpoint = new HttpEndpoint(address, "prometheus");
  endpoint.route(
    "/metrics",
    () => new Response(render(), { headers: { "content-type": CONTENT_TYPE } }),
  );
  return endpoint;
}

/** The prometheus directive: `prometheus [ADDRESS] { runtime_metrics }`; counts queries. */
export const prometheusPlugin: PluginDefinition = {
  name: "prometheus",
  setup(ctx) {
    const config = parsePrometheus(ctx.directives);
    metrics ??= dnsMetrics();
    metrics.buildInfo.set(
      { version: denoJson.version, revision: "", goversion: `deno${Deno.version.deno}` },
      1,
    );
    ctx.resources.acquire(
      `prometheus:${config.address.text}`,
      () => metricsEndpoint(config.address),
    );
    ctx.resources.acquire("prometheus:dropped", () =>
      hold(() => {
        packetObservers.add(observeDropped);
        return () => packetObservers.delete(observeDropped);
      }));
    ctx.resources.acquire(
      "prometheus:plugin_enabled",
      () => hold(() => registerCollector(pluginEnabled)),
    );
    if (config.runtimeMetrics) {
      ctx.resources.acquire(
        "prometheus:runtime",
        () => hold(() => registerCollector(runtimeMetrics)),
      );
    }

    const zones = ctx.zones;
    const blockPort = ctx.port;
    const bind = ctx.serverOptions.bind;
    const m = metrics;
    const plugin: Plugin = {
      name: "prometheus",
      async serve(req, next) {
        const started = performance.now();
        const zone = matchZone(zones, req.qname) ?? ".";
        (req as Partial<ServerRequest>).observers?.push((w) => {
          const port = blockPort || req.localPort;
          reportQuery({
            server: serverLabel(bind.length ? req.localAddress : "", port),
            zone,
            view: "",
            proto: req.transport,
            family: familyOf(req.remoteAddress),
            qtype: req.question.type,
            dnssecOk: req.edns?.dnssecOk ?? false,
            rcode: w.rcode,
            plugin: w.plugin ?? "",
            requestSize: req.size,
            responseSize: w.size,
            seconds: (performance.now() - started) / 1000,
          });
        });
        try {
          return await next(req);
        } catch (err) {
          // The server turns this into SERVFAIL, as CoreDNS recovers a panic.
          m.panics.inc();
          throw err;
        }
      },
    };
    return plugin;
  },
};
