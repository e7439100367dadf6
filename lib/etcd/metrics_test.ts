/** The etcd mirror metrics: one series per tracked mirror, gone when forgotten. */

import assert from "node:assert/strict";
import { Registry } from "../server/metrics.ts";
import type { Mirror, MirrorStatus } from "./mirror.ts";
import { trackMirror } from "./metrics.ts";

/** A stand-in with only what the metrics read: its status. */
function fakeMirror(prefix: string, revision: number): Mirror {
  const status: MirrorStatus = {
    prefix,
    ready: true,
    connected: true,
    revision,
    clusterRevision: revision + 2,
    keys: 3,
    leases: 0,
    generation: 1,
    errors: 1,
    leaseErrors: 1,
    relists: 0,
    reconnects: 0,
    skippedKeys: 0,
  };
  return { status: () => status } as unknown as Mirror;
}

Deno.test("etcd metrics: each tracked mirror reports its series until it is forgotten", () => {
  const registry = new Registry();
  const forgetA = trackMirror(fakeMirror("/a/", 10), registry);
  const forgetB = trackMirror(fakeMirror("/b/", 20), registry);
  const text = registry.render();
  assert.match(text, /^idetcd_etcd_watch_revision\{prefix="\/a\/"\} 10$/m);
  assert.match(text, /^idetcd_etcd_watch_revision\{prefix="\/b\/"\} 20$/m);
  assert.match(text, /^idetcd_etcd_watch_lag_revisions\{prefix="\/a\/"\} 2$/m);
  assert.match(text, /^idetcd_etcd_errors_total\{prefix="\/b\/"\} 2$/m);
  // One HELP/TYPE per family although two collectors report it.
  assert.equal(text.split("# TYPE idetcd_etcd_watch_revision gauge").length - 1, 1);
  forgetA();
  assert.doesNotMatch(registry.render(), /prefix="\/a\/"/);
  assert.match(registry.render(), /prefix="\/b\/"/);
  forgetB();
  assert.doesNotMatch(registry.render(), /idetcd_etcd_/);
});
