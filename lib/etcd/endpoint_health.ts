/**
 * Which etcd members answer, for one client. etcd3 picks a host per call;
 * {@link EndpointHealth} gives it a fault-handling policy per host (see
 * `faultHandling.host` in client.ts) that sees every call's outcome:
 *
 * - a host whose call failed for a connection reason becomes **suspect** and
 *   is probed at once; calls avoid it while another host is up;
 * - a failed probe makes it **down**: logged once, with the reason; it is
 *   probed every second and calls keep avoiding it;
 * - an answer (from a probe or a real call) makes it **up** again: logged once.
 *
 * Streams count as answered when etcd's response headers arrive, not when
 * they are opened, and a stream's later failure reaches the policy through
 * etcd3's `markFailed`. When no host is up, calls go everywhere, so nothing
 * waits on this tracker to recover. Member lines are logged only with two or
 * more endpoints; with one, the callers' own "cannot reach etcd" lines say it.
 *
 * The policy also makes connection errors say what is wrong: a gRPC
 * `UNAVAILABLE` without a cause gets the endpoint probe's diagnosis as its
 * message (see diagnose.ts).
 *
 * @module
 */

import * as cockatiel from "cockatiel";
import type { Logger } from "../log.ts";
import {
  cleanEtcdError,
  type EndpointDiagnosis,
  formatDiagnosis,
  isEtcdAnswer,
  needsProbe,
} from "./diagnose.ts";

/** Up: used. Suspect: a call failed, being checked. Down: a check failed too. */
export type EndpointState = "up" | "suspect" | "down";

/** One endpoint as the tracker sees it. */
export interface EndpointStatus {
  /** The endpoint as configured, e.g. "https://10.0.0.5:2379". */
  readonly endpoint: string;
  /** `host:port` as etcd3 dials it. */
  readonly address: string;
  /** See {@link EndpointState}. */
  readonly state: EndpointState;
  /** Date.now() of the last state change. */
  readonly since: number;
  /** The last failure, one line. */
  readonly lastError?: string;
}

/** Options for {@link EndpointHealth}. */
export interface EndpointHealthOptions {
  /** Where member lines go; nothing is logged without it. */
  log?: Logger;
  /**
   * Asks one member whether it answers (any answer from etcd counts, also a
   * refusal); resolves false when it does not. Without it a suspect host
   * counts as down at once and comes back with the next successful call.
   */
  probe?: (address: string) => Promise<boolean>;
  /** Diagnoses a connection failure of one endpoint (see diagnose.ts probeEndpoint). */
  diagnose?: (address: string) => Promise<EndpointDiagnosis>;
  /** Interval between checks of a down member, ms (default 1000). */
  probeIntervalMs?: number;
  /** Failed checks in a row before a suspect member counts as down (default 2). */
  failuresToDown?: number;
}

interface HostEntry {
  readonly endpoint: string;
  readonly address: string;
  state: EndpointState;
  since: number;
  lastError?: string;
  /** Changes on every state change, so a late probe result can tell it is stale. */
  epoch: number;
  failedProbes: number;
  probing: boolean;
  timer?: ReturnType<typeof setTimeout>;
  /** Logged as down (and so owes an "answers again" line). */
  announced: boolean;
  /** performance.now() of the last call let through to a down host (without a probe). */
  triedAt?: number;
  /** True once any call or probe got an answer from it. */
  answeredOnce: boolean;
  /** performance.now() of the last connection attempt cut by the connect timeout. */
  cutAt?: number;
  /** The message given to calls cut then. */
  cutMessage?: string;
  diagnosis?: { at: number; result: Promise<EndpointDiagnosis>; value?: EndpointDiagnosis };
}

/** A call or stream without an answer for this long makes its host suspect, ms. */
const SILENCE_MS = 1_000;
/** How long a diagnosis is reused, ms. */
const DIAGNOSIS_TTL_MS = 3_000;
/** How long a connection failure of a host that answered before waits for its diagnosis, ms. */
const DIAGNOSIS_WAIT_MS = 300;

/**
 * Members announced as down in this process, by address, with the trackers
 * that hold them down: a process with several clients on one cluster (one
 * per plugin) logs each member once each way, not once per client.
 *
 * Process-wide by nature, as the log it keeps quiet is: the clients come
 * from places that share nothing but the process (the server's pool, a
 * subcommand's own client, `idetcd exec`'s command and its server), and
 * every one of them writes to the one process log. An entry lives only
 * while a tracker holds it; {@link EndpointHealth.close} lets go of its own.
 */
const announcedDown = new Map<string, Set<EndpointHealth>>();

/** The stream shape etcd3 hands out (grpc-js ClientDuplexStream). */
interface StreamLike {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  once(event: string, listener: (...args: unknown[]) => void): unknown;
  prependListener?(event: string, listener: (...args: unknown[]) => void): unknown;
  write(chunk: unknown): unknown;
}

function isStream(value: unknown): value is StreamLike {
  return typeof value === "object" && value !== null &&
    typeof (value as StreamLike).once === "function" &&
    typeof (value as StreamLike).write === "function";
}

/** True for the client's own cancellation (ending a watch), which says nothing about the host. */
function isClientCancel(err: unknown): boolean {
  return /Cancelled on client|CANCELLED/i.test(err instanceof Error ? err.message : String(err));
}

/** True for failures that mean the host did not answer (as opposed to answering with an error). */
function isHostFailure(err: unknown): boolean {
  if (!(err instanceof Error) || isEtcdAnswer(err) || isClientCancel(err)) return false;
  if (cockatiel.isBrokenCircuitError(err)) return false;
  return /UNAVAILABLE|DEADLINE_EXCEEDED|Deadline exceeded|No connection|Connection dropped|Channel closed|INTERNAL|UNKNOWN|RESOURCE_EXHAUSTED|ABORTED|keepalive|GOAWAY|ECONN|EPIPE/i
    .test(err.message) ||
    (err as { code?: unknown }).code === 14 ||
    (err as { code?: unknown }).code === 4;
}

/** The per-host policy etcd3 runs every call to that host through. */
class HostPolicy implements cockatiel.IPolicy {
  declare readonly _altReturn: never;
  readonly #success = new cockatiel.EventEmitter<cockatiel.ISuccessEvent>();
  readonly #failure = new cockatiel.EventEmitter<cockatiel.IFailureEvent>();
  /** @inheritdoc */
  readonly onSuccess = this.#success.addListener;
  /** @inheritdoc */
  readonly onFailure = this.#failure.addListener;

  constructor(readonly health: EndpointHealth, readonly address: string) {}

  /** Runs one call on this host (or refuses at once while it is not up and another host is). */
  async execute<T>(
    fn: (context: cockatiel.IDefaultPolicyContext) => PromiseLike<T> | T,
    signal: AbortSignal = new AbortController().signal,
  ): Promise<T> {
    this.health.gate(this.address);
    const started = performance.now();
    // A call or stream that gets no answer for a while makes the host suspect
    // (the call itself goes on): other calls avoid it while it is checked.
    let answered = false;
    const silence = setTimeout(() => {
      if (!answered) this.health.suspect(this.address, "no answer within 1 s");
    }, SILENCE_MS);
    Deno.unrefTimer(silence as unknown as number);
    try {
      const result = await fn({ signal });
      if (isStream(result)) {
        // Runs before the owner's listeners: the error it sees names its cause.
        result.prependListener?.(
          "error",
          (err: unknown) => this.health.explainNow(this.address, err),
        );
        // Opening a stream proves nothing; etcd's response headers do.
        result.once("metadata", () => {
          answered = true;
          clearTimeout(silence);
          this.health.report(this.address);
        });
      } else {
        answered = true;
        clearTimeout(silence);
        this.health.report(this.address);
      }
      this.#success.emit({ duration: performance.now() - started });
      return result;
    } catch (err) {
      answered = true;
      clearTimeout(silence);
      await this.health.explain(this.address, err);
      this.health.report(this.address, err);
      this.#failure.emit({
        duration: performance.now() - started,
        handled: isHostFailure(err),
        reason: { error: err as Error },
      });
      throw err;
    }
  }
}

/** Tracks which members of one etcd cluster answer; see the module doc. */
export class EndpointHealth {
  readonly #hosts = new Map<string, HostEntry>();
  readonly #log?: Logger;
  #probe?: (address: string) => Promise<boolean>;
  #diagnose?: (address: string) => Promise<EndpointDiagnosis>;
  readonly #probeIntervalMs: number;
  readonly #failuresToDown: number;
  readonly #listeners = new Set<(status: EndpointStatus) => void>();
  #closed = false;

  /** `endpoints`: each endpoint as configured and the `host:port` etcd3 dials for it. */
  constructor(
    endpoints: readonly { endpoint: string; address: string }[],
    options: EndpointHealthOptions = {},
  ) {
    for (const { endpoint, address } of endpoints) {
      if (this.#hosts.has(address)) continue;
      this.#hosts.set(address, {
        endpoint,
        address,
        state: "up",
        since: Date.now(),
        epoch: 0,
        failedProbes: 0,
        probing: false,
        announced: false,
        answeredOnce: false,
      });
    }
    this.#log = options.log;
    this.#probe = options.probe;
    this.#diagnose = options.diagnose;
    this.#probeIntervalMs = options.probeIntervalMs ?? 1_000;
    this.#failuresToDown = Math.max(1, options.failuresToDown ?? 2);
  }

  /** The fault-handling policy for one host (etcd3's `faultHandling.host`). */
  policy(address: string): cockatiel.IPolicy {
    return new HostPolicy(this, address);
  }

  /** Sets the member check (the client is built after the policies). */
  setProbe(probe: (address: string) => Promise<boolean>): void {
    this.#probe = probe;
  }

  /** Sets the connection-failure diagnosis. */
  setDiagnose(diagnose: (address: string) => Promise<EndpointDiagnosis>): void {
    this.#diagnose = diagnose;
  }

  /** Every endpoint's state. */
  status(): EndpointStatus[] {
    return [...this.#hosts.values()].map((h) => ({
      endpoint: h.endpoint,
      address: h.address,
      state: h.state,
      since: h.since,
      lastError: h.lastError,
    }));
  }

  /** True when calls may go to `address` now. */
  usable(address: string): boolean {
    const host = this.#hosts.get(address);
    if (!host || host.state === "up") return true;
    return !this.#anotherUp(host);
  }

  /** Calls `listener` on every state change; returns the unsubscribe function. */
  onChange(listener: (status: EndpointStatus) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Throws cockatiel's BrokenCircuitError when `address` is not up and
   * another host is, so etcd3 moves on to the next host without a call.
   */
  gate(address: string): void {
    const host = this.#hosts.get(address);
    if (!host || host.state === "up" || !this.#anotherUp(host)) return;
    if (!this.#probe) {
      // Nothing checks it in the background: let one call through now and then.
      const now = performance.now();
      if (now - (host.triedAt ?? 0) >= this.#probeIntervalMs) {
        host.triedAt = now;
        return;
      }
    }
    throw new cockatiel.BrokenCircuitError(
      `etcd at ${host.endpoint} is not answering; another endpoint is used`,
    );
  }

  /**
   * Records the outcome of a call to `address`: no error (or an error etcd
   * answered with) means it answers; a connection failure makes it suspect.
   * The client reports every call itself; others may report more.
   */
  report(address: string, err?: unknown): void {
    const host = this.#hosts.get(address);
    if (!host || this.#closed) return;
    if (err === undefined || (err instanceof Error && isEtcdAnswer(err))) {
      this.#answered(host);
      return;
    }
    if (!isHostFailure(err)) return;
    host.lastError = shortReason(host, cleanEtcdError(err));
    if (host.state === "up") {
      this.#change(host, "suspect");
      this.#schedule(host, 0);
    }
  }

  /**
   * Marks `address` suspect without a failure (a call is taking long): calls
   * avoid it while a check runs; nothing is logged unless the check fails.
   */
  suspect(address: string, reason: string): void {
    const host = this.#hosts.get(address);
    if (!host || this.#closed || host.state !== "up") return;
    host.lastError = reason;
    this.#change(host, "suspect");
    this.#schedule(host, 0);
  }

  /**
   * Notes that a connection attempt to `address` was abandoned after
   * `afterMs` (the client's connect timeout): the host becomes suspect.
   * Returns the message for the calls that were waiting on it.
   */
  noteConnectTimeout(address: string, afterMs: number): string {
    const host = this.#hosts.get(address);
    const message = formatDiagnosis({
      endpoint: host?.endpoint ?? address,
      ok: false,
      cause: `no answer: connecting took longer than ${(afterMs / 1000).toFixed(1)} s`,
      check: "that etcd runs there and that no firewall drops the traffic",
    });
    if (!host) return message;
    host.cutAt = performance.now();
    host.cutMessage = message;
    this.suspect(address, `connecting took longer than ${(afterMs / 1000).toFixed(1)} s`);
    return message;
  }

  /**
   * Rewrites a connection error of `address` that names no cause into one
   * that does (`etcd at E: cause; check X`), from the endpoint probe. Waits
   * for the probe in full on a host that never answered (a configuration
   * mistake shows there) and at most {@link DIAGNOSIS_WAIT_MS} on one that
   * did (an outage: failing over matters more).
   */
  async explain(address: string, err: unknown): Promise<void> {
    const host = this.#hosts.get(address);
    if (!host || !(err instanceof Error) || this.explainNow(address, err)) return;
    if (!this.#diagnose || !needsProbe(err)) return;
    const pending = this.#diagnosis(host);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const found = host.answeredOnce
      ? await Promise.race([
        pending,
        new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), DIAGNOSIS_WAIT_MS))),
      ])
      : await pending;
    clearTimeout(timer);
    if (found && !found.ok) setMessage(err, formatDiagnosis(found));
  }

  /**
   * The synchronous part of {@link EndpointHealth.explain}, for stream errors
   * (rewritten before the stream's owner sees them): a connect timeout's
   * message, a diagnosis already at hand, or at least the member's name when
   * there are several. True when the message now names its cause.
   */
  explainNow(address: string, err: unknown): boolean {
    const host = this.#hosts.get(address);
    if (!host || !(err instanceof Error) || isClientCancel(err)) return true;
    if (/(^|: )etcd at /.test(err.message)) return true;
    if (!isHostFailure(err)) return true;
    if (
      /Channel closed before call started/i.test(err.message) && host.cutMessage &&
      performance.now() - (host.cutAt ?? 0) < 2_000
    ) {
      setMessage(err, host.cutMessage);
      return true;
    }
    const known = host.diagnosis && performance.now() - host.diagnosis.at <= DIAGNOSIS_TTL_MS
      ? host.diagnosis.value
      : undefined;
    if (known && !known.ok) {
      setMessage(err, formatDiagnosis(known));
      return true;
    }
    if (this.#hosts.size > 1) {
      // Say which member; a probe may still find more.
      setMessage(err, `etcd at ${host.endpoint}: ${cleanEtcdError(err)}`);
    }
    return false;
  }

  /** The endpoint probe's diagnosis of `host`, reused for a few seconds. */
  #diagnosis(host: HostEntry): Promise<EndpointDiagnosis> {
    const now = performance.now();
    if (!host.diagnosis || now - host.diagnosis.at > DIAGNOSIS_TTL_MS) {
      const record: NonNullable<HostEntry["diagnosis"]> = {
        at: now,
        result: this.#diagnose!(host.address),
      };
      record.result.then((value) => (record.value = value), () => {});
      host.diagnosis = record;
    }
    return host.diagnosis.result;
  }

  /** Stops the checks. */
  close(): void {
    this.#closed = true;
    for (const host of this.#hosts.values()) {
      const holders = announcedDown.get(host.address);
      holders?.delete(this);
      if (holders?.size === 0) announcedDown.delete(host.address);
      if (host.timer !== undefined) clearTimeout(host.timer);
      host.timer = undefined;
    }
    this.#listeners.clear();
  }

  #anotherUp(host: HostEntry): boolean {
    for (const other of this.#hosts.values()) {
      if (other !== host && other.state === "up") return true;
    }
    return false;
  }

  #answered(host: HostEntry): void {
    host.answeredOnce = true;
    host.failedProbes = 0;
    if (host.state === "up") return;
    const announced = host.announced;
    const downFor = ((Date.now() - host.since) / 1000).toFixed(1);
    host.announced = false;
    this.#change(host, "up");
    if (!announced) return;
    const holders = announcedDown.get(host.address);
    holders?.delete(this);
    if (holders && holders.size > 0) return; // another client still sees it down
    announcedDown.delete(host.address);
    this.#log?.info(`etcd member ${host.endpoint} answers again (not answering for ${downFor}s)`);
  }

  /** Logs a member as down, unless another client of this process already did. */
  #announceDown(host: HostEntry): void {
    host.announced = true;
    let holders = announcedDown.get(host.address);
    if (!holders) announcedDown.set(host.address, holders = new Set());
    holders.add(this);
    if (holders.size > 1) return;
    const others = this.#anotherUp(host)
      ? "calls go to the other endpoints until it is back"
      : "no other endpoint answers either";
    this.#log?.warning(
      `etcd member ${host.endpoint} is not answering (${host.lastError ?? "no answer"}); ${others}`,
    );
  }

  #change(host: HostEntry, state: EndpointState): void {
    // "since" marks when the trouble began: suspect -> down keeps it.
    if (!(host.state === "suspect" && state === "down")) host.since = Date.now();
    host.state = state;
    host.epoch++;
    if (state === "up" && host.timer !== undefined) {
      clearTimeout(host.timer);
      host.timer = undefined;
    }
    const status = this.status().find((s) => s.address === host.address)!;
    for (const listener of this.#listeners) {
      try {
        listener(status);
      } catch {
        // a listener's problem is not the tracker's
      }
    }
  }

  #schedule(host: HostEntry, delayMs: number): void {
    if (this.#closed || host.timer !== undefined || host.probing) return;
    host.timer = setTimeout(() => {
      host.timer = undefined;
      this.#check(host);
    }, delayMs);
    Deno.unrefTimer(host.timer as unknown as number);
  }

  async #check(host: HostEntry): Promise<void> {
    if (this.#closed || host.state === "up") return;
    const epoch = host.epoch;
    let ok = false;
    if (this.#probe) {
      host.probing = true;
      try {
        ok = await this.#probe(host.address);
      } catch {
        ok = false;
      } finally {
        host.probing = false;
      }
    }
    // A real call may have found it answering meanwhile (that changes the epoch).
    if (this.#closed || host.epoch !== epoch) return;
    if (ok) {
      this.#answered(host);
      return;
    }
    host.failedProbes++;
    if (host.state === "suspect" && (host.failedProbes >= this.#failuresToDown || !this.#probe)) {
      this.#change(host, "down");
      if (this.#hosts.size > 1) {
        host.announced = true;
        const others = this.#anotherUp(host)
          ? "calls go to the other endpoints until it is back"
          : "no other endpoint answers either";
        this.#log?.warning(
          `etcd member ${host.endpoint} is not answering (${
            host.lastError ?? "no answer"
          }); ${others}`,
        );
      }
    }
    if (this.#probe) {
      this.#schedule(host, host.state === "suspect" ? 0 : this.#probeIntervalMs);
    }
  }
}

/** A failure as the member line shows it: without "etcd at E: " and "; check ...". */
function shortReason(host: HostEntry, text: string): string {
  const prefix = `etcd at ${host.endpoint}: `;
  const own = text.startsWith(prefix) ? text.slice(prefix.length) : text;
  return own.replace(/; check .*$/, "");
}

/** Replaces an error's message, and its stack's first line with it. */
function setMessage(err: Error, message: string): void {
  const old = err.message;
  err.message = message;
  if (typeof err.stack === "string" && old && err.stack.includes(old)) {
    err.stack = err.stack.replace(old, message);
  }
}
