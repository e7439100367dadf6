/**
 * The etcd plugin's chain link (CoreDNS `plugin/etcd/handler.go`): zone
 * match, the lookup, and BackendError-style replies, answered from the
 * in-memory mirror.
 *
 * @module
 */

import { matchZone } from "../../dns/name.ts";
import { Rcode } from "../../dns/types.ts";
import type { KeyValue, KeyValueSource } from "../../etcd/types.ts";
import type { Logger } from "../../log.ts";
import { bareReply, type Plugin, type Reply, type Request } from "../../server/plugin.ts";
import {
  type EtcdLookupConfig,
  lookup,
  type LookupEnv,
  type LookupOutcome,
  soaRecord,
  type UpstreamAnswer,
} from "./lookup.ts";
import { KeyNames } from "./path.ts";

/**
 * How long queries may wait for the very first load attempt, while it is
 * still in flight (CoreDNS's per-read etcd timeout). Once an attempt has
 * failed, or this has passed, nobody waits: the zone answers SERVFAIL until
 * the copy arrives.
 */
export const FIRST_LOAD_WAIT_MS = 5_000;

/**
 * How long the startup hook waits for the first load: listeners open after
 * startup hooks, so this is how long an unreachable etcd may hold back every
 * other zone of the server.
 */
export const STARTUP_WAIT_MS = 1_000;

/** How often the first attempt's outcome is looked at (the mirror has no failure event). */
const FIRST_ATTEMPT_POLL_MS = 20;

/** The mirror as the handler uses it: the data plus its loading state. */
export interface EtcdMirror extends KeyValueSource {
  /** Starts watching; resolves after the first full load (or when closed). */
  start(): Promise<void>;
  /** True once the first full load is done. */
  isReady(): boolean;
  /**
   * Failed load attempts and the last error (lib/etcd/mirror.ts's status()).
   * Without it a query waits up to FIRST_LOAD_WAIT_MS for the first load.
   */
  status?(): { errors: number; lastError?: string };
}

/** What the handler needs from the parsed directive. */
export interface EtcdHandlerConfig {
  /** Authoritative zones (lower-case, fully qualified). */
  readonly zones: readonly string[];
  /** Zones whose NXDOMAINs go to the next plugin instead. */
  readonly fallthrough: readonly string[];
  /** The settings the lookups themselves read (path, lease TTL bounds). */
  readonly lookup: EtcdLookupConfig;
}

/** The plugin plus its start hook. */
export interface EtcdHandler {
  /** Answers the zones' queries from the mirror; what the server chains. */
  readonly plugin: Plugin;
  /**
   * Starts the mirror (once) and waits at most STARTUP_WAIT_MS: until the copy
   * has loaded or a load attempt has failed, whichever comes first. The copy
   * keeps loading in the background after. Never rejects.
   */
  start(): Promise<void>;
}

/**
 * Bad values are logged once per key version; past this many bytes of
 * remembered versions (UTF-16 key text plus a set entry's own cost, so that
 * long keys count for what they hold), the memory is reset.
 */
const MAX_REMEMBERED_BAD_VALUE_BYTES = 1024 * 1024;

/** Builds the `etcd` chain link over `mirror`. */
export function createEtcdHandler(
  config: EtcdHandlerConfig,
  mirror: EtcdMirror,
  log: Logger,
): EtcdHandler {
  const loggedBadValues = new Set<string>();
  let loggedBytes = 0;
  const onBadValue = (kv: KeyValue, error: string) => {
    const id = `${kv.key}\u0000${kv.modRevision}`;
    if (loggedBadValues.has(id)) return;
    const bytes = 2 * id.length + 64;
    if (loggedBytes + bytes > MAX_REMEMBERED_BAD_VALUE_BYTES) {
      loggedBadValues.clear();
      loggedBytes = 0;
    }
    loggedBadValues.add(id);
    loggedBytes += bytes;
    log.warning(`invalid service JSON at ${error} (answering SERVFAIL for names that read it)`);
  };
  const env: LookupEnv = {
    source: mirror,
    config: config.lookup,
    onBadValue,
    keyNames: new KeyNames(),
  };

  let started: Promise<void> | undefined;
  const startMirror = () =>
    started ??= mirror.start().catch((err) => {
      log.error(`etcd mirror failed to start: ${(err as Error)?.message ?? err}`);
    });

  const failures = () => mirror.status?.().errors ?? 0;

  /**
   * Resolves once the first load attempt has an outcome: the copy loaded, an
   * attempt failed (etcd down, refused, TLS), the mirror closed, or
   * FIRST_LOAD_WAIT_MS passed. Shared by the startup hook and every query.
   */
  let firstAttempt: Promise<void> | undefined;
  /** True once {@link firstAttempt} resolved: from then on no query waits. */
  let firstAttemptOver = false;
  const awaitFirstAttempt = () =>
    firstAttempt ??= (async () => {
      let loadedOrClosed = false;
      void startMirror().then(() => (loadedOrClosed = true));
      const deadline = performance.now() + FIRST_LOAD_WAIT_MS;
      // A mirror shared with an earlier configuration may have failed already.
      while (!loadedOrClosed && !mirror.isReady() && failures() === 0) {
        if (performance.now() >= deadline) break;
        await new Promise((r) => setTimeout(r, FIRST_ATTEMPT_POLL_MS));
      }
      firstAttemptOver = true;
    })();

  const start = async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, STARTUP_WAIT_MS);
    });
    try {
      await Promise.race([awaitFirstAttempt(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  };

  /** True when the data is there, after waiting only while the first attempt is in flight. */
  const waitForData = async (): Promise<boolean> => {
    if (!firstAttemptOver) await awaitFirstAttempt();
    return mirror.isReady();
  };

  const resolveUpstream = (req: Request) => async (name: string, type: number) => {
    const reply = await req.lookup(name, type);
    return { answer: reply.answer, truncated: reply.truncated === true } as UpstreamAnswer;
  };

  const toReply = (outcome: LookupOutcome): Reply => {
    const reply: Reply = {
      rcode: outcome.rcode,
      authoritative: true,
      answer: outcome.answer,
      authority: outcome.authority,
      additional: outcome.additional,
      plugin: "etcd",
    };
    if (outcome.truncated) reply.truncated = true;
    if (outcome.error !== undefined) reply.error = outcome.error;
    // Answers that depend on the mirror alone may be kept encoded by the server
    // per generation. Lease TTLs and the SOA serial move with the clock, but
    // the server keeps a copy for at most a second, which is their resolution.
    // Upstream content and errors (logged per query) are never kept.
    if (!outcome.usedUpstream && outcome.error === undefined) {
      reply.cacheGeneration = () => mirror.generation;
    }
    return reply;
  };

  type Next = Parameters<Plugin["serve"]>[1];

  const finish = (req: Request, next: Next, outcome: LookupOutcome): Promise<Reply> => {
    // Fallthrough applies to NXDOMAIN only, never to NODATA or SERVFAIL.
    if (outcome.nameError && matchZone(config.fallthrough, req.qname) !== undefined) {
      return next(req);
    }
    return Promise.resolve(toReply(outcome));
  };

  const answer = (req: Request, zone: string, next: Next): Promise<Reply> => {
    let outcome: LookupOutcome | Promise<LookupOutcome>;
    try {
      outcome = lookup(
        env,
        zone,
        req.qname,
        req.question.name,
        req.question.type,
        resolveUpstream(req),
      );
    } catch (err) {
      return Promise.resolve(panicReply(err));
    }
    if (outcome instanceof Promise) return outcome.then((o) => finish(req, next, o), panicReply);
    return finish(req, next, outcome);
  };

  const answerOnceLoaded = async (req: Request, zone: string, next: Next): Promise<Reply> => {
    if (await waitForData()) return answer(req, zone, next);
    const cause = mirror.status?.().lastError;
    // What CoreDNS answers when it cannot read etcd; other zones are not affected.
    return {
      rcode: Rcode.ServerFailure,
      authoritative: true,
      answer: [],
      authority: [soaRecord(zone, Date.now() / 1000)],
      additional: [],
      plugin: "etcd",
      error: cause === undefined
        ? "etcd data not loaded yet (is etcd reachable?)"
        : `etcd data not loaded yet: ${cause}`,
    };
  };

  const plugin: Plugin = {
    name: "etcd",
    serve(req, next) {
      const zone = matchZone(config.zones, req.qname);
      if (zone === undefined) return next(req);
      if (!mirror.isReady()) return answerOnceLoaded(req, zone, next);
      return answer(req, zone, next);
    },
    ready: () => mirror.isReady(),
  };
  return { plugin, start };
}

/** What CoreDNS's server answers when a plugin panics: a bare SERVFAIL. */
function panicReply(err: unknown): Reply {
  return bareReply(
    Rcode.ServerFailure,
    "etcd",
    `plugin/etcd: ${(err as Error)?.message ?? String(err)}`,
  );
}
