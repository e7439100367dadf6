/**
 * The forwarding logic of one `forward` stanza: upstream selection,
 * retries within CoreDNS's 5 s budget, health-check kicks, reply checks
 * (plugin/forward/forward.go ServeDNS).
 *
 * @module
 */

import { decodeMessage, encodeMessage, type Message } from "../../dns/wire.ts";
import { isSubdomain, lowerName } from "../../dns/name.ts";
import { Rcode, type RR, Type } from "../../dns/types.ts";
import { bareReply, type Handler, type Reply, type Request } from "../../server/plugin.ts";
import { ExchangeError, HEALTH_CHECK_TIMEOUT_MS, Proxy, READ_TIMEOUT_MS } from "./proxy.ts";
import type { ForwardConfig, Policy } from "./setup.ts";

/** Time budget of one forwarded query (CoreDNS's defaultTimeout). */
export const TOTAL_TIMEOUT_MS = 5_000;

/** Pause before another pass over the upstream list (ms). */
const RETRY_PAUSE_MS = 25;

/** CoreDNS's ErrNoHealthy text. */
export const ERR_NO_HEALTHY = "no healthy proxies";

/** Timing knobs; tests shorten them, the Corefile cannot. */
export interface ForwardTimeouts {
  /** Per-try read timeout (ms). */
  readTimeoutMs: number;
  /** Budget for the whole query (ms). */
  totalTimeoutMs: number;
  /** Timeout of one health-check exchange (ms). */
  healthCheckTimeoutMs: number;
}

/** The default timeouts: 2 s per try, 5 s in total, 1 s per health check. */
export const DEFAULT_TIMEOUTS: ForwardTimeouts = {
  readTimeoutMs: READ_TIMEOUT_MS,
  totalTimeoutMs: TOTAL_TIMEOUT_MS,
  healthCheckTimeoutMs: HEALTH_CHECK_TIMEOUT_MS,
};

/** Orders upstreams for one query, as CoreDNS's policies do. */
export function orderProxies<T>(policy: Policy, proxies: readonly T[], robin: number): T[] {
  const list = proxies.slice();
  if (policy === "sequential" || list.length < 2) return list;
  if (policy === "round_robin") {
    const start = robin % list.length;
    return [...list.slice(start), ...list.slice(0, start)];
  }
  // random: a Fisher-Yates shuffle (CoreDNS uses rand.Perm).
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [list[i], list[j]] = [list[j], list[i]];
  }
  return list;
}

/** Whether `reply` answers `req`'s question (request.Match): one question, QR set, same name and type. */
export function replyMatches(req: Request, reply: Message): boolean {
  if (reply.question.length !== 1 || !reply.response) return false;
  const q = reply.question[0];
  return lowerName(q.name) === req.qname && q.type === req.question.type;
}

/** The upstream reply as a chain Reply: rcode, flags and records kept (OPT is hop-by-hop). */
export function messageToReply(msg: Message): Reply {
  return {
    rcode: msg.rcode,
    authoritative: msg.authoritative,
    truncated: msg.truncated,
    recursionAvailable: msg.recursionAvailable,
    authenticData: msg.authenticData,
    answer: msg.answer,
    authority: msg.authority,
    additional: msg.additional.filter((r) => r.type !== Type.OPT),
    plugin: "forward",
  };
}

function bare(rcode: number, error?: string): Reply {
  return bareReply(rcode, "forward", error);
}

/** The query as the client sent it (question case, RD/AD/CD, EDNS0), to be re-IDed per try. */
function queryBuilder(req: Request): (id: number) => Uint8Array {
  const additional: RR[] = req.edns
    ? [{
      name: ".",
      type: Type.OPT,
      class: req.edns.udpSize,
      ttl: 0,
      data: { ...req.edns, extendedRcode: 0 },
    }]
    : [];
  const bytes = encodeMessage({
    id: 0,
    response: false,
    opcode: req.opcode,
    authoritative: false,
    truncated: false,
    recursionDesired: req.rd,
    recursionAvailable: false,
    zero: false,
    authenticData: req.ad,
    checkingDisabled: req.cd,
    rcode: 0,
    question: [req.question],
    answer: [],
    authority: [],
    additional,
  });
  return (id) => {
    const copy = bytes.slice();
    copy[0] = id >> 8;
    copy[1] = id & 0xff;
    return copy;
  };
}

/** One `forward` stanza at run time. */
export class Forward {
  /** The stanza's parsed configuration. */
  readonly config: ForwardConfig;
  /** One proxy per upstream, in configuration order. */
  readonly proxies: Proxy[];
  /** Set when the next handler is another forward stanza (only then does `next RCODE` apply). */
  nextIsForward = false;
  #timeouts: ForwardTimeouts;
  #robin = 0;
  #concurrent = 0;

  /** `timeouts` overrides CoreDNS's per-exchange timeouts (tests shorten them). */
  constructor(config: ForwardConfig, timeouts: Partial<ForwardTimeouts> = {}) {
    this.config = config;
    this.#timeouts = { ...DEFAULT_TIMEOUTS, ...timeouts };
    this.proxies = config.upstreams.map((address) =>
      new Proxy(address, {
        expireMs: config.expireSeconds * 1000,
        healthCheckIntervalMs: config.healthCheckSeconds * 1000,
        healthCheckTcp: config.forceTcp,
        healthCheckRecursion: config.healthCheckRecursion,
        healthCheckDomain: config.healthCheckDomain,
        healthCheckTimeoutMs: this.#timeouts.healthCheckTimeoutMs,
      })
    );
  }

  /** Whether `qname` is forwarded: under FROM and not under an `except` zone (FROM itself always is). */
  matches(qname: string): boolean {
    const { from, except } = this.config;
    if (!isSubdomain(from, qname)) return false;
    if (qname === from) return true;
    return !except.some((zone) => isSubdomain(zone, qname));
  }

  /** Forwards `req`, or passes it to `next` when it is not ours. */
  async serve(req: Request, next: Handler): Promise<Reply> {
    if (!this.matches(req.qname)) return next(req);
    const max = this.config.maxConcurrent;
    if (max > 0 && this.#concurrent >= max) {
      return bare(Rcode.Refused, `concurrent queries exceeded maximum ${max}`);
    }
    this.#concurrent++;
    try {
      return await this.#forward(req, next);
    } finally {
      this.#concurrent--;
    }
  }

  async #forward(req: Request, next: Handler): Promise<Reply> {
    const cfg = this.config;
    const proxies = this.proxies;
    const list = orderProxies(cfg.policy, proxies, this.#robin++);
    const build = queryBuilder(req);
    const deadline = performance.now() + this.#timeouts.totalTimeoutMs;
    let fails = 0;
    let failovers = 0;
    let i = 0;
    let upstreamError: string | undefined;

    while (performance.now() < deadline) {
      if (i >= list.length) {
        // End of the list: start over, after a short pause so upstreams that fail at once
        // (TCP refused) are not hammered in a busy loop for the whole budget.
        i = 0;
        fails = 0;
        await new Promise((resolve) =>
          setTimeout(resolve, Math.max(0, Math.min(RETRY_PAUSE_MS, deadline - performance.now())))
        );
        if (performance.now() >= deadline) break;
      }
      let proxy = list[i++];
      if (proxy.down(cfg.maxFails)) {
        fails++;
        if (fails < proxies.length) continue;
        if (cfg.failfast) break;
        // Every upstream is down: assume health checking is broken and pick one at random.
        proxy = proxies[Math.floor(Math.random() * proxies.length)];
      }

      let transport: "udp" | "tcp" = cfg.forceTcp ? "tcp" : cfg.preferUdp ? "udp" : req.transport;
      let msg: Message | undefined;
      let error: string | undefined;
      while (true) {
        const remaining = deadline - performance.now();
        if (remaining <= 0) {
          error ??= `read ${transport} ${proxy.name}: i/o timeout`;
          break;
        }
        try {
          const raw = await proxy.exchange(
            build,
            transport,
            Math.min(this.#timeouts.readTimeoutMs, remaining),
          );
          msg = decodeMessage(raw);
          error = undefined;
        } catch (err) {
          msg = undefined;
          error = err instanceof ExchangeError
            ? err.message
            : `dns: ${(err as Error).message} from ${proxy.name}`;
        }
        // prefer_udp: a truncated UDP answer is retried over TCP by forward itself.
        if (msg?.truncated && transport === "udp" && !cfg.forceTcp && cfg.preferUdp) {
          transport = "tcp";
          continue;
        }
        break;
      }

      upstreamError = error;
      if (!msg) {
        // Kick off health checking to see if our upstream is broken.
        if (cfg.maxFails !== 0) proxy.healthcheck();
        if (fails < proxies.length) continue;
        break;
      }

      if (!replyMatches(req, msg)) return bare(Rcode.FormatError);

      // Each upstream gets one chance per query; CoreDNS's counter resets with every pass
      // over the list, which re-asks a lone upstream until the budget runs out.
      if (cfg.failover.includes(msg.rcode) && failovers < proxies.length - 1) {
        failovers++;
        fails++;
        continue;
      }
      if (cfg.next.includes(msg.rcode) && this.nextIsForward) return next(req);
      return messageToReply(msg);
    }
    return bare(Rcode.ServerFailure, upstreamError ?? ERR_NO_HEALTHY);
  }

  /** Stops health checks and closes every upstream socket. */
  async stop(): Promise<void> {
    await Promise.allSettled(this.proxies.map((p) => p.stop()));
  }
}
