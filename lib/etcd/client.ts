/**
 * Builds the etcd3 client for a set of {@link EtcdOptions}: endpoint
 * normalisation (CoreDNS accepts `http://h:p`, `https://h:p` and bare `h:p`),
 * credentials, TLS, timeouts and fault handling.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { isIP } from "node:net";
import { isAbsolute, join } from "node:path";
import tls from "node:tls";
import { Etcd3, type IOptions, isRecoverableError } from "etcd3";
// The fault-handling policies etcd3 expects come from cockatiel (etcd3's own dependency, same version).
import * as cockatiel from "cockatiel";
import type { EtcdOptions } from "./options.ts";

/** Deadline for every unary call (CoreDNS uses 5 s per etcd read). */
export const CALL_TIMEOUT_MS = 5_000;

/** gRPC keep-alive ping interval: detects a silently dead connection (CoreDNS dials with 5 s). */
const KEEPALIVE_TIME_MS = 10_000; // etcd rejects pings more often than every 5 s
/** How long an unanswered keep-alive ping may take before the connection counts as dead. */
const KEEPALIVE_TIMEOUT_MS = 5_000;

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

/** The endpoints as one string for log lines, e.g. "http://127.0.0.1:2379, http://10.0.0.2:2379". */
export function describeEndpoints(options: EtcdOptions): string {
  return options.endpoints.join(", ");
}

/** Reads a PEM file named in the Corefile (relative to its folder). */
function readPem(path: string, what: string, configDir: string): Buffer {
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

/** Translates {@link EtcdOptions} into etcd3 constructor options (exported for tests). */
export function clientOptions(options: EtcdOptions, configDir: string): IOptions {
  if (options.endpoints.length === 0) throw new Error("etcd: no endpoint configured");
  const parsed = options.endpoints.map(parseEndpoint);
  // etcd3 uses one credential set for every host, so one https endpoint (or
  // the `tls` option) turns TLS on for all of them.
  const useTls = options.tls !== undefined || parsed.some((e) => e.secure);
  const result: IOptions = {
    hosts: parsed.map((e) => e.address),
    grpcOptions: {
      "grpc.keepalive_time_ms": KEEPALIVE_TIME_MS,
      "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
      // Reconnect promptly when etcd comes back instead of gRPC's 2 min cap.
      "grpc.initial_reconnect_backoff_ms": 200,
      "grpc.max_reconnect_backoff_ms": 5_000,
      // Range pages and watch batches can be large; pages are bounded by key count instead.
      "grpc.max_receive_message_length": -1,
    },
    // Unary calls get a deadline so nothing waits forever; streams (watch,
    // lease keep-alive) live until cancelled.
    defaultCallOptions: (context) =>
      context.isStream ? {} : { deadline: Date.now() + CALL_TIMEOUT_MS },
    faultHandling: {
      // Retry a failed call on the next host (at least once, after a short pause).
      global: cockatiel.retry(cockatiel.handleWhen(isRecoverableError), {
        maxAttempts: Math.max(1, parsed.length - 1),
        backoff: new cockatiel.ExponentialBackoff({ initialDelay: 50, maxDelay: 500 }),
      }),
      // A breaker only helps when there is another host to use meanwhile; with a
      // single host it would just delay recovery after etcd restarts.
      host: () =>
        parsed.length > 1
          ? cockatiel.circuitBreaker(cockatiel.handleWhen(isRecoverableError), {
            halfOpenAfter: 2_000,
            breaker: new cockatiel.ConsecutiveBreaker(3),
          })
          : cockatiel.noop,
      // etcd3 reads `duration` off an already started backoff.
      watchBackoff: new cockatiel.ExponentialBackoff({ initialDelay: 100, maxDelay: 5_000 }).next(),
    },
  };
  if (options.username && options.password) {
    result.auth = {
      username: options.username,
      password: options.password,
      callOptions: () => ({ deadline: Date.now() + CALL_TIMEOUT_MS }),
    };
  }
  if (useTls) {
    const tls = options.tls ?? {};
    if ((tls.cert === undefined) !== (tls.key === undefined)) {
      throw new Error("etcd tls: a client certificate needs both a cert and a key file");
    }
    result.credentials = {
      // grpc-js falls back to the system roots when no CA is given.
      rootCertificate: (tls.ca ? readPem(tls.ca, "CA file", configDir) : null) as Buffer,
      privateKey: tls.key ? readPem(tls.key, "key file", configDir) : undefined,
      certChain: tls.cert ? readPem(tls.cert, "cert file", configDir) : undefined,
    };
  }
  return result;
}

let ipServerNamesAllowed = false;

/**
 * grpc-js passes the endpoint host as TLS `servername` (SNI), also when it is
 * an IP address; Node ignores such a name (SNI carries only DNS names) but
 * Deno's node:tls rejects it, so no `https://127.0.0.1:2379` endpoint could
 * connect. Drops IP-literal server names; the certificate is still checked
 * against the IP (via `host`).
 */
function allowIpServerNames(): void {
  if (ipServerNamesAllowed) return;
  ipServerNamesAllowed = true;
  const connect = tls.connect;
  const patched = function (this: unknown, ...args: unknown[]) {
    const first = args[0] as { servername?: unknown } | undefined;
    if (
      first && typeof first === "object" && typeof first.servername === "string" &&
      isIP(first.servername)
    ) {
      const { servername: _dropped, ...rest } = first;
      args[0] = rest;
    }
    return (connect as (...a: unknown[]) => tls.TLSSocket).apply(this, args);
  };
  (tls as { connect: unknown }).connect = patched;
}

/**
 * Creates a client for `options`; TLS files are read relative to `configDir`.
 * Connecting is lazy: etcd need not be reachable yet.
 */
export function createClient(options: EtcdOptions, configDir: string): Etcd3 {
  const etcdOptions = clientOptions(options, configDir);
  if (etcdOptions.credentials) allowIpServerNames();
  return new Etcd3(etcdOptions);
}
