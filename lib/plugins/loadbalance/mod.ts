/**
 * loadbalance: randomizes the order of A, AAAA, MX and NS records in
 * replies (CNAMEs first), as CoreDNS's loadbalance round_robin.
 *
 * @module
 */

import { dispensers } from "../../corefile/dispenser.ts";
import { Rcode, type RR, Type } from "../../dns/types.ts";
import type { Plugin, PluginDefinition, Reply } from "../../server/plugin.ts";

/** The plugin name, as errors and logs show it. */
export const PLUGIN = "loadbalance";

/** A uniform random integer in [0, n); Math.random suffices, the order is no secret. */
function randomBelow(n: number): number {
  return Math.floor(Math.random() * n);
}

/** Shuffles `records` in place (a Fisher-Yates shuffle: every order equally likely). */
export function shuffle<T>(records: T[], random: (n: number) => number = randomBelow): T[] {
  for (let i = records.length - 1; i > 0; i--) {
    const j = random(i + 1);
    [records[i], records[j]] = [records[j], records[i]];
  }
  return records;
}

/**
 * One section reordered as CoreDNS's roundRobin: CNAMEs first, then the
 * other records in their order, then the shuffled A/AAAA, MX and NS groups.
 */
export function roundRobin(section: RR[], random?: (n: number) => number): RR[] {
  const cname: RR[] = [], address: RR[] = [], mx: RR[] = [], ns: RR[] = [], rest: RR[] = [];
  for (const rr of section) {
    switch (rr.type) {
      case Type.CNAME:
        cname.push(rr);
        break;
      case Type.A:
      case Type.AAAA:
        address.push(rr);
        break;
      case Type.MX:
        mx.push(rr);
        break;
      case Type.NS:
        ns.push(rr);
        break;
      default:
        rest.push(rr);
    }
  }
  return [
    ...cname,
    ...rest,
    ...shuffle(address, random),
    ...shuffle(mx, random),
    ...shuffle(ns, random),
  ];
}

/** The reply with every section reordered; errors and zone transfers are left alone. */
export function balance(reply: Reply, qtype: number): Reply {
  if (reply.bare || reply.rcode !== Rcode.Success) return reply;
  if (qtype === Type.AXFR || qtype === Type.IXFR) return reply;
  // Without cacheGeneration: a server-side copy of the encoded reply would freeze the order.
  const { cacheGeneration: _frozen, ...rest } = reply;
  return {
    ...rest,
    answer: roundRobin(reply.answer),
    authority: roundRobin(reply.authority),
    additional: roundRobin(reply.additional),
  };
}

/** The loadbalance directive: `loadbalance [round_robin]`. */
export const loadbalancePlugin: PluginDefinition = {
  name: PLUGIN,
  setup(ctx) {
    for (const d of dispensers(PLUGIN, ctx.directives)) {
      if (d.nextArg()) {
        const policy = d.val();
        if (policy === "weighted") {
          throw d.err("the weighted policy is not supported by idetcd; use round_robin");
        }
        if (policy !== "round_robin") throw d.err(`unknown policy: ${policy}`);
        if (d.nextArg()) throw d.err(`unknown property for ${policy}`);
      }
      const [option] = d.blockLines();
      if (option) throw option.unknownProperty();
    }
    const plugin: Plugin = {
      name: PLUGIN,
      async serve(req, next) {
        return balance(await next(req), req.question.type);
      },
    };
    return plugin;
  },
};
