/**
 * The prometheus chain link: counts every query its chain answers in
 * CoreDNS's query metrics, on both paths. A full-path reply is counted
 * when it is encoded (so sizes are the bytes sent); the observer returned
 * for it counts each later answer the fast path sends from the kept copy,
 * with the same families and labels.
 *
 * @module
 */

import { matchZone } from "../../dns/name.ts";
import type { FastHit, FastObserver, Plugin } from "../../server/plugin.ts";
import {
  familyLabel,
  fastReporter,
  type FixedReport,
  type QueryMetrics,
  reportQuery,
  serverLabel,
} from "../../server/vars.ts";

/** What one block's counting link needs. */
export interface CountingOptions {
  /** The process's query metrics. */
  metrics: QueryMetrics;
  /** The block's zones (the `zone` label is the one that matched). */
  zones: readonly string[];
  /** The block's port (0: the port the query arrived on). */
  port: number;
  /** The block's `bind` addresses: with any, the `server` label names the local address. */
  bind: readonly string[];
}

/** The link that counts the queries of one block. */
export function countingPlugin(o: CountingOptions): Plugin {
  const m = o.metrics;
  const zones = o.zones as string[];
  return {
    name: "prometheus",
    async serve(req, next) {
      const started = performance.now();
      const zone = matchZone(zones, req.qname) ?? ".";
      req.observe((w): FastObserver => {
        const fixed: FixedReport = {
          server: serverLabel(o.bind.length ? req.localAddress : "", o.port || req.localPort),
          zone,
          view: "",
          proto: req.transport,
          qtype: req.question.type,
          dnssecOk: req.edns?.dnssecOk ?? false,
          rcode: w.rcode,
          plugin: w.plugin ?? "",
        };
        reportQuery(m, {
          ...fixed,
          family: familyLabel(req.remoteAddress),
          requestSize: req.size,
          responseSize: w.size,
          seconds: (performance.now() - started) / 1000,
        });
        // A kept reply's queries share every label but the client's family:
        // its series are bound on its first reuse.
        let report: ReturnType<typeof fastReporter> | undefined;
        return (hit: FastHit) => {
          report ??= fastReporter(m, fixed);
          report(familyLabel(hit.remoteAddress), hit.requestSize, hit.responseSize, hit.seconds);
        };
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
}
