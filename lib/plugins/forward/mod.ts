/**
 * forward: proxies queries to upstream resolvers over UDP and TCP, with
 * health checks and failover, as CoreDNS's forward plugin (see README.md).
 *
 * @module
 */

import type { Handler, Plugin, PluginDefinition } from "../../server/plugin.ts";
import { Forward } from "./forward.ts";
import { parseStanza } from "./setup.ts";

export { Forward } from "./forward.ts";
export { type ForwardConfig, parseStanza, parseUpstreams } from "./setup.ts";

/**
 * Chains several stanzas of one block, as CoreDNS does: each stanza's next
 * handler is the following stanza, the last one's is the chain's next.
 */
export function chainForwards(forwards: Forward[]): Plugin {
  forwards.forEach((f, i) => f.nextIsForward = i < forwards.length - 1);
  return {
    name: "forward",
    serve(req, next) {
      if (forwards.length === 1) return forwards[0].serve(req, next);
      let handler: Handler = next;
      for (let i = forwards.length - 1; i >= 0; i--) {
        const f = forwards[i];
        const after = handler;
        handler = (r) => f.serve(r, after);
      }
      return handler(req);
    },
  };
}

/** The forward directive: `forward FROM TO... { except; force_tcp; prefer_udp; expire; max_fails; health_check; policy; max_concurrent; next; failover }`. */
export const forwardPlugin: PluginDefinition = {
  name: "forward",
  setup(ctx) {
    const listen = { port: ctx.port, bind: ctx.serverOptions.bind };
    const forwards = ctx.directives.map((d) =>
      new Forward(parseStanza(d, ctx.configDir, ctx.log, listen))
    );
    ctx.onShutdown(async () => {
      await Promise.allSettled(forwards.map((f) => f.stop()));
    });
    return chainForwards(forwards);
  },
};
