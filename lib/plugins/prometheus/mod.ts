/**
 * prometheus: counts queries per server, zone and type and serves every
 * registered metric on `http://ADDRESS/metrics`, as CoreDNS's metrics plugin
 * (names and labels as CoreDNS 1.11+).
 *
 * The handler observes each reply through `req.observe` (after encoding,
 * so sizes are the bytes sent). Queries that never enter a chain are
 * counted by the server itself, under the zone `dropped`, in the same
 * families (lib/server/vars.ts, CoreDNS's plugin/metrics/vars).
 * coredns_plugin_enabled comes from the configuration the startup hook
 * receives.
 *
 * @module
 */

import process from "node:process";
import { argError, CorefileError, type Directive } from "../../corefile/types.ts";
import { matchZone } from "../../dns/name.ts";
import {
  CONTENT_TYPE,
  type MetricFamily,
  registerCollector,
  render,
} from "../../server/metrics.ts";
import type { ConfigView, Plugin, PluginDefinition } from "../../server/plugin.ts";
import { familyLabel, queryMetrics, reportQuery, serverLabel } from "../../server/vars.ts";
import { type HttpAddress, HttpEndpoint, parseHttpAddress } from "../health/http.ts";
import denoJson from "../../../deno.json" with { type: "json" };

/** CoreDNS's default metrics address. */
export const DEFAULT_METRICS_ADDRESS = "localhost:9153";

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

/** coredns_plugin_enabled of one configuration: every plugin of each block that has prometheus. */
export function pluginEnabled(config: ConfigView): MetricFamily {
  const samples = new Map<string, Record<string, string>>();
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
  return {
    name: "coredns_plugin_enabled",
    help: "A metric that indicates whether a plugin is enabled on per server and zone basis.",
    type: "gauge",
    samples: [...samples.values()].map((labels) => ({ labels, value: 1 })),
  };
}

/**
 * The scrape-time source of coredns_plugin_enabled for one server, shared
 * by its configurations: the newest one started and not yet shut down
 * counts (a reload's from its startup on; the old one again when the new
 * one fails).
 */
class PluginEnabled {
  #configs: ConfigView[] = [];
  #unregister: () => void;

  constructor() {
    // A collector of its own per server: two servers in one process report their own blocks.
    this.#unregister = registerCollector(() => {
      const config = this.#configs.at(-1);
      return config ? [pluginEnabled(config)] : [];
    });
  }

  started(config: ConfigView): void {
    if (!this.#configs.includes(config)) this.#configs.push(config);
  }

  stopped(config: ConfigView | undefined): void {
    this.#configs = this.#configs.filter((c) => c !== config);
  }

  close(): void {
    this.#unregister();
  }
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
    const m = queryMetrics();
    m.buildInfo.set(
      { version: denoJson.version, revision: "", goversion: `deno${Deno.version.deno}` },
      1,
    );
    ctx.resources.acquire(
      `prometheus:${config.address.text}`,
      () => metricsEndpoint(config.address),
    );
    const enabled = ctx.resources.acquire("prometheus:plugin_enabled", () => new PluginEnabled());
    let mine: ConfigView | undefined;
    ctx.onStartup((starting) => {
      mine = starting;
      enabled.started(starting);
    });
    ctx.onShutdown(() => enabled.stopped(mine));
    if (config.runtimeMetrics) {
      ctx.resources.acquire(
        "prometheus:runtime",
        () => hold(() => registerCollector(runtimeMetrics)),
      );
    }

    const zones = ctx.zones;
    const blockPort = ctx.port;
    const bind = ctx.serverOptions.bind;
    const plugin: Plugin = {
      name: "prometheus",
      async serve(req, next) {
        const started = performance.now();
        const zone = matchZone(zones, req.qname) ?? ".";
        req.observe((w) => {
          const port = blockPort || req.localPort;
          reportQuery(m, {
            server: serverLabel(bind.length ? req.localAddress : "", port),
            zone,
            view: "",
            proto: req.transport,
            family: familyLabel(req.remoteAddress),
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
