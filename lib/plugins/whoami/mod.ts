/**
 * whoami: answers every query with the client's address and port, as CoreDNS's whoami.
 *
 * @module
 */

import { Dispenser } from "../../corefile/dispenser.ts";
import { Rcode, type RR, Type } from "../../dns/types.ts";
import type { Plugin, PluginDefinition, Reply, Request } from "../../server/plugin.ts";

/** The reply: empty answer; A/AAAA of the client and `_udp.`/`_tcp.` SRV with its port, TTL 0. */
export function whoamiReply(req: Request): Reply {
  const owner = req.question.name;
  const isV4 = !req.remoteAddress.includes(":");
  const address: RR = {
    name: owner,
    type: isV4 ? Type.A : Type.AAAA,
    class: req.question.class,
    ttl: 0,
    data: req.remoteAddress,
  };
  const srv: RR = {
    name: `_${req.transport}.${owner === "." ? "" : owner}`,
    type: Type.SRV,
    class: req.question.class,
    ttl: 0,
    data: { priority: 0, weight: 0, port: req.remotePort, target: "." },
  };
  return {
    rcode: Rcode.Success,
    authoritative: true,
    answer: [],
    authority: [],
    additional: [address, srv],
    plugin: "whoami",
  };
}

/** The whoami directive: no arguments; terminal (never calls the next plugin). */
export const whoamiPlugin: PluginDefinition = {
  name: "whoami",
  perQuery: "pure-answer",
  setup(ctx) {
    const d = new Dispenser("whoami", ctx.directives[0]);
    if (d.nextArg() || d.hasBlock()) throw d.argErr();
    const plugin: Plugin = {
      name: "whoami",
      serve: (req) => Promise.resolve(whoamiReply(req)),
    };
    return plugin;
  },
};
