/**
 * Shared etcd clients and mirrors: two plugins or server blocks on the same
 * etcd and prefix share one client and one watch, and a reload re-uses them.
 *
 * @module
 */

import type { Etcd3 } from "etcd3";
import type { Logger } from "../log.ts";
import type { ResourcePool } from "../server/plugin.ts";
import { createClient, describeEndpoints, resolveTlsPaths } from "./client.ts";
import { startMallocTrimmer } from "./malloc_trim.ts";
import { Mirror } from "./mirror.ts";
import { trackMirror } from "./metrics.ts";
import type { EtcdOptions } from "./options.ts";

/** JSON with object keys sorted and undefined members dropped, so equal options give equal text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const members = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`);
    return `{${members.join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/** The pool key of the client for `options` (TLS paths resolved, so equal files share). */
export function clientKey(options: EtcdOptions, configDir: string): string {
  const resolved = resolveTlsPaths(options, configDir);
  return `etcd-client ${
    canonicalJson({
      endpoints: resolved.endpoints,
      username: resolved.username,
      password: resolved.password,
      tls: resolved.tls,
    })
  }`;
}

/** The shared client for `options`, taking a reference in the pool's current scope. */
export function acquireClient(
  resources: ResourcePool,
  options: EtcdOptions,
  configDir: string,
): Etcd3 {
  return resources.acquire(clientKey(options, configDir), () => {
    const client = createClient(options, configDir);
    // While the client lives, the gRPC buffers it frees go back to the system (malloc_trim.ts).
    const trimmer = startMallocTrimmer();
    const close = client.close.bind(client);
    client.close = () => {
      trimmer.close();
      close();
    };
    return client;
  });
}

/**
 * The shared mirror of `prefix` on the etcd of `options` (not yet started:
 * call `start()`, which is idempotent).
 */
export function acquireMirror(
  resources: ResourcePool,
  options: EtcdOptions,
  prefix: string,
  configDir: string,
  log: Logger,
): Mirror {
  // Taken on every call, also when the mirror already exists: the client must
  // live as long as any scope holds the mirror. The pool closes the mirror
  // first (newest first), then the client.
  const client = acquireClient(resources, options, configDir);
  const key = `etcd-mirror ${canonicalJson({ client: clientKey(options, configDir), prefix })}`;
  return resources.acquire(key, () => {
    const mirror = new Mirror(client, prefix, log, { endpoints: describeEndpoints(options) });
    const forget = trackMirror(mirror);
    const close = mirror.close.bind(mirror);
    mirror.close = () => {
      forget();
      return close();
    };
    return mirror;
  });
}
