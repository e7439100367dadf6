/**
 * idetcd's own metrics about etcd: every live mirror's watch revision, lag
 * and errors, reported at scrape time.
 *
 * Each tracked mirror is its own collector in the process's registry (which
 * merges families of one name), so this module keeps no list of mirrors.
 *
 * @module
 */

import {
  type MetricFamily,
  type Registry,
  registry as processRegistry,
} from "../server/metrics.ts";
import type { Mirror } from "./mirror.ts";

/**
 * Reports `mirror` in `registry` (the process's by default) until the
 * returned function is called (the pool calls it on close).
 */
export function trackMirror(
  mirror: Mirror,
  registry: Pick<Registry, "registerCollector"> = processRegistry,
): () => void {
  return registry.registerCollector(() => collectMirrors([mirror]));
}

/** The metric families of `mirrors`, one series of each per mirror. */
export function collectMirrors(mirrors: Iterable<Mirror>): MetricFamily[] {
  const revision: MetricFamily = {
    name: "idetcd_etcd_watch_revision",
    help: "The etcd revision the in-memory copy of a prefix has applied.",
    type: "gauge",
    samples: [],
  };
  const behind: MetricFamily = {
    name: "idetcd_etcd_watch_lag_revisions",
    help: "How many revisions the copy is behind the newest revision etcd reported.",
    type: "gauge",
    samples: [],
  };
  const lag: MetricFamily = {
    name: "idetcd_etcd_watch_lag_seconds",
    help: "Seconds since etcd last answered the watch (0 while connected and current).",
    type: "gauge",
    samples: [],
  };
  const connected: MetricFamily = {
    name: "idetcd_etcd_connected",
    help: "1 while the watch of the prefix is connected to etcd.",
    type: "gauge",
    samples: [],
  };
  const keys: MetricFamily = {
    name: "idetcd_etcd_keys",
    help: "Keys in the in-memory copy of the prefix.",
    type: "gauge",
    samples: [],
  };
  const errors: MetricFamily = {
    name: "idetcd_etcd_errors_total",
    help: "etcd errors met by the copy of the prefix (watch, list and lease lookups).",
    type: "counter",
    samples: [],
  };
  const relists: MetricFamily = {
    name: "idetcd_etcd_relists_total",
    help: "Full re-reads of the prefix (after compaction or a replaced cluster).",
    type: "counter",
    samples: [],
  };
  const now = Date.now();
  for (const mirror of mirrors) {
    const s = mirror.status();
    const labels = { prefix: s.prefix };
    revision.samples.push({ labels, value: s.revision });
    behind.samples.push({ labels, value: Math.max(0, s.clusterRevision - s.revision) });
    const since = s.disconnectedSince ?? (s.connected ? undefined : s.lastResponseAt);
    lag.samples.push({ labels, value: since ? Math.max(0, (now - since) / 1000) : 0 });
    connected.samples.push({ labels, value: s.connected ? 1 : 0 });
    keys.samples.push({ labels, value: s.keys });
    errors.samples.push({ labels, value: s.errors + s.leaseErrors });
    relists.samples.push({ labels, value: s.relists });
  }
  return [revision, behind, lag, connected, keys, errors, relists];
}
