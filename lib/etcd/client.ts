/**
 * Builds the etcd3 client for a set of {@link EtcdOptions}: endpoint
 * normalisation (CoreDNS accepts `http://h:p`, `https://h:p` and bare `h:p`),
 * credentials, TLS, timeouts and fault handling.
 *
 * Fault handling, in short (figures are the constants below):
 *
 * - **Member failover.** Every call goes through an {@link EndpointHealth}
 *   policy for its host: a member that fails a call is avoided at once while
 *   another answers, checked with a cheap `Status` call, logged once when it
 *   is down and once when it answers again.
 * - **Back fast after a heal.** A connection attempt that has not finished
 *   within {@link CONNECT_TIMEOUT_MS} is abandoned and started afresh (a SYN
 *   lost in a partition is otherwise only retried by TCP after 1, 3, 7, 15 s),
 *   reconnect backoff is capped at {@link MAX_RECONNECT_BACKOFF_MS}, and each
 *   etcd3 service gets its own connection (`grpc.use_local_subchannel_pool`)
 *   so that etcd3 dropping a host's clients after a timeout really opens a new
 *   connection instead of reusing the dead one.
 * - **Keep-alive** pings every {@link KEEPALIVE_TIME_MS} while a call or
 *   stream is open (never without: grpc-js's default), which etcd accepts:
 *   etcd 3.4 sends GOAWAY `too_many_pings` for pings closer than
 *   `--grpc-keepalive-min-time` (5 s) with streams open, and for any ping
 *   without one unless it has just sent data.
 * - **Errors that say what is wrong**: connection failures without a cause
 *   get one from a probe of the endpoint (diagnose.ts).
 *
 * @module
 */

import type { Buffer } from "node:buffer";
import { isIP } from "node:net";
import tls from "node:tls";
import { castGrpcError, Etcd3, type IOptions, isRecoverableError } from "etcd3";
// The fault-handling policies etcd3 expects come from cockatiel (etcd3's own dependency, same version).
import * as cockatiel from "cockatiel";
import { type Logger, rootLog } from "../log.ts";
import { isEtcdAnswer, probeEndpoint, type ProbeTarget, probeTargets } from "./diagnose.ts";
import { parseEndpoint, readPem } from "./endpoint.ts";
import { EndpointHealth } from "./endpoint_health.ts";
import type { EtcdOptions } from "./options.ts";

export { type ParsedEndpoint, parseEndpoint, resolveTlsPaths } from "./endpoint.ts";
export { cleanEtcdError, describeEtcdError } from "./diagnose.ts";
export { EndpointHealth, type EndpointState, type EndpointStatus } from "./endpoint_health.ts";

/** Deadline for every unary call (CoreDNS uses 5 s per etcd read). */
export const CALL_TIMEOUT_MS = 5_000;

/**
 * gRPC keep-alive ping interval while calls are open: detects a silently dead
 * connection. etcd 3.4 closes connections that ping more often than every
 * 5 s (`--grpc-keepalive-min-time`); 6 s keeps a margin.
 */
export const KEEPALIVE_TIME_MS = 6_000;
/** How long an unanswered keep-alive ping may take before the connection counts as dead. */
export const KEEPALIVE_TIMEOUT_MS = 3_000;
/**
 * A connection attempt (TCP, TLS and HTTP/2 handshakes) not done by then is
 * started afresh. It doubles with each attempt to a host that timed out in a
 * row (up to {@link MAX_CONNECT_TIMEOUT_MS}) and falls back once one connects:
 * a busy machine (a hundred clients starting in one process) or a distant
 * etcd still connects, and a healed partition is still seen within seconds.
 */
export const CONNECT_TIMEOUT_MS = 800;
/** The longest a connection attempt is given after repeated timeouts. */
export const MAX_CONNECT_TIMEOUT_MS = 3_200;
/** Longest pause between reconnection attempts (gRPC's default is 2 min). */
export const MAX_RECONNECT_BACKOFF_MS = 1_000;
/** Longest pause before a watch is re-opened after it failed. */
export const MAX_WATCH_BACKOFF_MS = 1_000;
/** Deadline of the `Status` call that checks whether a suspect member answers. */
const MEMBER_CHECK_TIMEOUT_MS = 1_000;
/** How often connection attempts are checked against {@link CONNECT_TIMEOUT_MS}. */
const CONNECT_WATCH_INTERVAL_MS = 100;

/** The endpoints as one string for log lines, e.g. "http://127.0.0.1:2379, http://10.0.0.2:2379". */
export function describeEndpoints(options: EtcdOptions): string {
  return options.endpoints.join(", ");
}

/**
 * Translates {@link EtcdOptions} into etcd3 constructor options (exported for
 * tests). `health` supplies the per-host policies; a fresh, silent tracker
 * when absent.
 */
export function clientOptions(
  options: EtcdOptions,
  configDir: string,
  health?: EndpointHealth,
): IOptions {
  if (options.endpoints.length === 0) throw new Error("etcd: no endpoint configured");
  const parsed = options.endpoints.map(parseEndpoint);
  // etcd3 uses one credential set for every host, so one https endpoint (or
  // the `tls` option) turns TLS on for all of them.
  const useTls = options.tls !== undefined || parsed.some((e) => e.secure);
  const tracker = health ??
    new EndpointHealth(
      parsed.map((e, i) => ({ endpoint: options.endpoints[i], address: e.address })),
    );
  const result: IOptions = {
    hosts: parsed.map((e) => e.address),
    grpcOptions: {
      "grpc.keepalive_time_ms": KEEPALIVE_TIME_MS,
      "grpc.keepalive_timeout_ms": KEEPALIVE_TIMEOUT_MS,
      // Reconnect promptly when etcd comes back instead of gRPC's 2 min cap.
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": MAX_RECONNECT_BACKOFF_MS,
      // A connection per channel: closing a channel (etcd3 does after a
      // timeout) then really drops its connection, and the next call dials anew.
      "grpc.use_local_subchannel_pool": 1,
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
      // Per host: avoid members that do not answer while another does (see endpoint_health.ts).
      host: (address) => tracker.policy(address),
      // etcd3 reads `duration` off an already started backoff.
      watchBackoff: new cockatiel.ExponentialBackoff({
        initialDelay: 100,
        maxDelay: MAX_WATCH_BACKOFF_MS,
      }).next(),
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

/** Marks node:tls's `connect` as the one {@link allowIpServerNames} put in. */
const DROPS_IP_SERVER_NAMES = Symbol("idetcd: drops IP server names");

/**
 * grpc-js passes the endpoint host as TLS `servername` (SNI), also when it is
 * an IP address; Node ignores such a name (SNI carries only DNS names) but
 * Deno's node:tls rejects it, so no `https://127.0.0.1:2379` endpoint could
 * connect. Drops IP-literal server names; the certificate is still checked
 * against the IP (via `host`).
 *
 * node:tls is one module per process, so the patch is process-wide by
 * nature; whether it is in is read off `tls.connect` itself (a mark on the
 * patched function), not kept in a flag here.
 */
function allowIpServerNames(): void {
  const connect = tls.connect as typeof tls.connect & { [DROPS_IP_SERVER_NAMES]?: true };
  if (connect[DROPS_IP_SERVER_NAMES]) return;
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
  Object.defineProperty(patched, DROPS_IP_SERVER_NAMES, { value: true });
  (tls as { connect: unknown }).connect = patched;
}

// ---------------------------------------------------------------------------
// etcd3 internals the health checks use (etcd3 1.1.2, grpc-js 1.14).

/** A grpc-js channel, as far as its state goes. */
interface GrpcChannel {
  getConnectivityState(tryToConnect: boolean): number;
}

/** A grpc-js service client of one etcd3 host. */
interface GrpcServiceClient {
  getChannel(): GrpcChannel;
  close(): void;
  status?(
    request: Record<string, never>,
    options: { deadline: number; waitForReady: boolean },
    callback: (err: Error | null) => void,
  ): unknown;
}

/** The Auth service's client (authenticate). */
interface GrpcAuthClient {
  authenticate(
    request: { name: string; password: string },
    options: Record<string, unknown>,
    callback: (err: Error | null, res?: { token: string }) => void,
  ): unknown;
}

/** etcd3's Authenticator (the part that fetches a token from one host). */
interface Etcd3Authenticator {
  getCredentialsFromHost(
    address: string,
    name: string,
    password: string,
    callOptions: Record<string, unknown> | undefined,
    credentials: unknown,
  ): Promise<string>;
}

/** etcd3's `Host`: one member, with a gRPC client per service. */
interface Etcd3Host {
  readonly host: string;
  cachedServices: Record<string, GrpcServiceClient | undefined>;
  getServiceClient(name: string): GrpcServiceClient;
}

/** A call waiting in a grpc-js channel for a connection. */
interface QueuedCall {
  cancelWithStatus(code: number, details: string): void;
}

/** Ends the calls queued on `channel` with UNAVAILABLE and `details` (grpc-js 1.14 internals). */
function failQueuedCalls(channel: GrpcChannel, details: string): void {
  const queue = (channel as { internalChannel?: { pickQueue?: Set<QueuedCall> } })
    .internalChannel?.pickQueue;
  if (!(queue instanceof Set)) return;
  for (const call of [...queue]) {
    try {
      call.cancelWithStatus(UNAVAILABLE, details);
    } catch {
      // the channel's own close() ends it anyway
    }
  }
}

/** gRPC status UNAVAILABLE */
const UNAVAILABLE = 14;

/** grpc-js ConnectivityState.CONNECTING */
const CONNECTING = 1;
/** grpc-js ConnectivityState.READY */
const READY = 2;

/** The connection pool of an etcd3 client. */
interface Etcd3Pool {
  hosts?: Etcd3Host[];
  authenticator?: Etcd3Authenticator;
}

function poolOf(client: Etcd3): Etcd3Pool {
  return (client as unknown as { pool?: Etcd3Pool }).pool ?? {};
}

/**
 * Makes etcd3 fetch auth tokens like any other call: on the host's own
 * (supervised, reused) Auth client and through the host's health policy, so
 * that a dead first endpoint costs the connect timeout, not the call
 * deadline, and a known-dead one is skipped. etcd3's own way tries the hosts
 * in order on a new, never closed channel each time.
 */
function authenticateThroughPolicies(
  pool: Etcd3Pool,
  byAddress: Map<string, Etcd3Host>,
  health: EndpointHealth,
): void {
  const authenticator = pool.authenticator;
  if (!authenticator || typeof authenticator.getCredentialsFromHost !== "function") return;
  const first = pool.hosts?.[0]?.host;
  const policies = new Map([...byAddress.keys()].map((a) => [a, health.policy(a)]));
  // The last real failure of this round over the hosts: a skipped last host must not hide it.
  let lastFailure: unknown;
  authenticator.getCredentialsFromHost = async (address, name, password, callOptions) => {
    if (address === first) lastFailure = undefined;
    const host = byAddress.get(address);
    const policy = policies.get(address);
    if (!host || !policy) throw new Error(`etcd3: unknown host ${address}`);
    try {
      return await policy.execute(() =>
        new Promise<string>((resolve, reject) => {
          const auth = host.getServiceClient("Auth") as unknown as GrpcAuthClient;
          auth.authenticate({ name, password }, callOptions ?? {}, (err, res) => {
            if (err) reject(castGrpcError(err));
            else resolve(res!.token);
          });
        })
      );
    } catch (err) {
      if (cockatiel.isBrokenCircuitError(err) && lastFailure !== undefined) throw lastFailure;
      lastFailure = err;
      throw err;
    }
  };
}

/** Asks one member for its status; true when it answered (a refusal counts). */
function checkMember(host: Etcd3Host): Promise<boolean> {
  return new Promise((resolve) => {
    let service: GrpcServiceClient;
    try {
      service = host.getServiceClient("Maintenance");
    } catch {
      resolve(false); // closed
      return;
    }
    try {
      service.status!({}, {
        deadline: Date.now() + MEMBER_CHECK_TIMEOUT_MS,
        waitForReady: true,
      }, (err) => resolve(!err || isEtcdAnswer(err)));
    } catch {
      resolve(false);
    }
  });
}

/**
 * Abandons connection attempts that take longer than {@link CONNECT_TIMEOUT_MS}:
 * the host's stuck service client is closed (its queued calls fail at once
 * and go to another host) and the next call dials anew. Returns the stop function.
 */
function superviseConnects(hosts: Etcd3Host[], health: EndpointHealth): () => void {
  const connectingSince = new WeakMap<GrpcChannel, number>();
  /** Connection timeouts in a row, per host: each doubles the next attempt's allowance. */
  const timeouts = new Map<string, number>();
  const allowance = (host: string) =>
    Math.min(MAX_CONNECT_TIMEOUT_MS, CONNECT_TIMEOUT_MS * 2 ** (timeouts.get(host) ?? 0));
  const timer = setInterval(() => {
    const now = performance.now();
    for (const host of hosts) {
      for (const [name, service] of Object.entries(host.cachedServices)) {
        if (!service) continue;
        let channel: GrpcChannel;
        let state: number;
        try {
          channel = service.getChannel();
          state = channel.getConnectivityState(false);
        } catch {
          continue;
        }
        if (state !== CONNECTING) {
          connectingSince.delete(channel);
          if (state === READY) timeouts.delete(host.host);
          continue;
        }
        const since = connectingSince.get(channel);
        const limit = allowance(host.host);
        if (since === undefined) {
          connectingSince.set(channel, now);
        } else if (now - since >= limit) {
          connectingSince.delete(channel);
          timeouts.set(host.host, (timeouts.get(host.host) ?? 0) + 1);
          if (host.cachedServices[name] === service) delete host.cachedServices[name];
          const reason = health.noteConnectTimeout(host.host, limit);
          // Fail the calls and streams waiting for this connection with a
          // message that says why (closing alone says "Channel closed before
          // call started"); etcd3 retries unary calls on another host.
          failQueuedCalls(channel, reason);
          try {
            service.close();
          } catch {
            // already closed
          }
        }
      }
    }
  }, CONNECT_WATCH_INTERVAL_MS);
  Deno.unrefTimer(timer as unknown as number);
  return () => clearInterval(timer);
}

/** A client made by {@link createClient}: etcd3's, carrying its member health tracker. */
class TrackedClient extends Etcd3 {
  /** The tracker of this client's members. */
  readonly health: EndpointHealth;

  constructor(options: IOptions, health: EndpointHealth) {
    super(options);
    this.health = health;
  }
}

/** The member health tracker of a client made by {@link createClient}. */
export function endpointHealth(client: Etcd3): EndpointHealth | undefined {
  return client instanceof TrackedClient ? client.health : undefined;
}

/**
 * Creates a client for `options`; TLS files are read relative to `configDir`.
 * Connecting is lazy: etcd need not be reachable yet. Members that stop and
 * start answering are logged to `log` (once each way; only with several
 * endpoints), and connection errors name their cause (see the module doc).
 */
export function createClient(
  options: EtcdOptions,
  configDir: string,
  log: Logger = rootLog,
): Etcd3 {
  const parsed = options.endpoints.map(parseEndpoint);
  const health = new EndpointHealth(
    parsed.map((e, i) => ({ endpoint: options.endpoints[i], address: e.address })),
    { log },
  );
  const etcdOptions = clientOptions(options, configDir, health);
  if (etcdOptions.credentials) allowIpServerNames();
  const client = new TrackedClient(etcdOptions, health);

  const pool = poolOf(client);
  const hosts = pool.hosts ?? [];
  const byAddress = new Map(hosts.map((h) => [h.host, h]));
  if (etcdOptions.auth) authenticateThroughPolicies(pool, byAddress, health);
  health.setProbe((address) => {
    const host = byAddress.get(address);
    return host ? checkMember(host) : Promise.resolve(false);
  });
  let targets: Map<string, ProbeTarget> | undefined;
  health.setDiagnose(async (address) => {
    targets ??= new Map(probeTargets(options, configDir).map((t, i) => [parsed[i].address, t]));
    const target = targets.get(address)!;
    return await probeEndpoint(target);
  });
  const stopSupervising = superviseConnects(hosts, health);
  const close = client.close.bind(client);
  client.close = () => {
    stopSupervising();
    health.close();
    close();
  };
  return client;
}
