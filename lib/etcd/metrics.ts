/**
 * idetcd's own metrics about etcd: every live mirror's watch revision, lag
 * and errors, reported at scrape time.
 *
 * @module
 */

import { type MetricFamily, registerCollector } from "../server/metrics.ts";
import type { Mirror } from "./mirror.ts";

const liveMirrors = new Set<Mirror>();
let unregister: (() => void) | undefined;

/** Reports `mirror` in the metrics until `forget` is called (the pool calls it on close). */
export function trackMirror(mirror: Mirror): () => void {
  liveMirrors.add(mirror);
  unregister ??= registerCollector(collectMirrors);
  return () => {
    liveMirrors.delete(mirror);
    if (liveMirrors.size === 0) {
      unregister?.();
      unregister = undefined;
    }
  };
}

/** The metric families of every live mirror. */
export function collectMirrors(): MetricFamily[] {
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
  for (const mirror of liveMirrors) {
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
