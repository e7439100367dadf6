/**
 * etcd endpoints and TLS files as the Corefile names them: endpoint parsing
 * (CoreDNS accepts `http://h:p`, `https://h:p` and bare `h:p`) and PEM files
 * relative to the Corefile. Shared by the client and the endpoint probe.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { isAbsolute, join } from "node:path";
import type { EtcdOptions } from "./options.ts";

/** One endpoint as gRPC dials it. */
export interface ParsedEndpoint {
  /** `host:port` (IPv6 hosts keep their brackets). */
  address: string;
  /** True for `https://`. */
  secure: boolean;
}

/**
 * Parses `http://h:p`, `https://h:p` or bare `h:p` (a missing port means
 * 2379); throws on other schemes or junk.
 */
export function parseEndpoint(endpoint: string): ParsedEndpoint {
  const trimmed = endpoint.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(trimmed);
  let secure = false;
  let rest = trimmed;
  if (scheme) {
    const name = scheme[1].toLowerCase();
    if (name !== "http" && name !== "https") {
      throw new Error(
        `unsupported etcd endpoint '${endpoint}': only http://, https:// and host:port are supported`,
      );
    }
    secure = name === "https";
    rest = trimmed.slice(scheme[0].length);
  }
  // Drop a path ("http://h:2379/") as etcd's client does.
  rest = rest.replace(/\/.*$/, "");
  if (rest === "") throw new Error(`invalid etcd endpoint '${endpoint}': no host`);
  let host: string;
  let port: string | undefined;
  if (rest.startsWith("[")) {
    const close = rest.indexOf("]");
    if (close < 0) throw new Error(`invalid etcd endpoint '${endpoint}': unclosed '['`);
    host = rest.slice(0, close + 1);
    const after = rest.slice(close + 1);
    if (after !== "" && !after.startsWith(":")) {
      throw new Error(`invalid etcd endpoint '${endpoint}'`);
    }
    port = after ? after.slice(1) : undefined;
  } else {
    const colon = rest.lastIndexOf(":");
    if (colon >= 0 && rest.indexOf(":") !== colon) {
      // A bare IPv6 address without brackets.
      host = `[${rest}]`;
    } else if (colon >= 0) {
      host = rest.slice(0, colon);
      port = rest.slice(colon + 1);
    } else {
      host = rest;
    }
  }
  if (port !== undefined && !/^\d{1,5}$/.test(port)) {
    throw new Error(`invalid etcd endpoint '${endpoint}': bad port '${port}'`);
  }
  return { address: `${host}:${port ?? "2379"}`, secure };
}

/** Reads a PEM file named in the Corefile (relative to its folder); throws a clear error. */
export function readPem(path: string, what: string, configDir: string): Buffer {
  const full = isAbsolute(path) ? path : join(configDir, path);
  try {
    return Buffer.from(Deno.readFileSync(full));
  } catch (err) {
    throw new Error(`etcd tls: cannot read ${what} ${full}: ${(err as Error).message}`);
  }
}

/** Resolves TLS file paths against `configDir` (for pool keys and loading). */
export function resolveTlsPaths(options: EtcdOptions, configDir: string): EtcdOptions {
  if (!options.tls) return options;
  const resolve = (p?: string) => (p === undefined || isAbsolute(p) ? p : join(configDir, p));
  return {
    ...options,
    tls: {
      cert: resolve(options.tls.cert),
      key: resolve(options.tls.key),
      ca: resolve(options.tls.ca),
    },
  };
}
