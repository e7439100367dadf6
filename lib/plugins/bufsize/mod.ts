/**
 * bufsize: caps the EDNS0 UDP payload size a client offers, so that UDP
 * answers are truncated before they fragment (CoreDNS's plugin/bufsize).
 *
 * The cap itself is a server option (`ServerOptions.udpSize`) the
 * dispatcher applies before the chain runs (see `lib/server/dispatch.ts`):
 * it lowers the request's EDNS0 size, exactly as CoreDNS's plugin rewrites
 * the request's OPT record, so the reply's OPT echoes the lowered size,
 * `forward` asks upstreams with it, and UDP replies are truncated at it.
 * idetcd applies {@link DEFAULT_BUFSIZE} to every block that has no
 * `bufsize` line; the directive changes the cap. The chain link it adds
 * only passes queries on (so it is listed, as in CoreDNS, in
 * coredns_plugin_enabled).
 *
 * @module
 */

import { Dispenser } from "../../corefile/dispenser.ts";
import type { Directive } from "../../corefile/types.ts";
import { atoi } from "../../go/strconv.ts";
import { DEFAULT_UDP_SIZE, type Plugin, type PluginDefinition } from "../../server/plugin.ts";

/** The DNS Flag Day 2020 size: CoreDNS's default for `bufsize` and idetcd's cap without it. */
export const DEFAULT_BUFSIZE: number = DEFAULT_UDP_SIZE;
/** Smallest SIZE accepted (RFC 6891's floor for a UDP payload). */
export const MIN_BUFSIZE = 512;
/** Largest SIZE accepted, as CoreDNS. */
export const MAX_BUFSIZE = 4096;

/**
 * Reads `bufsize [SIZE]` (only the first line of a block counts, as in
 * CoreDNS); SIZE must be an integer in 512..4096. Errors are CoreDNS's
 * ArgErr, naming the token they follow.
 */
export function parseBufsize(first: Directive): number {
  const d = new Dispenser("bufsize", first);
  const args = d.remainingArgs();
  if (d.hasBlock()) throw d.argErr();
  if (args.length === 0) return DEFAULT_BUFSIZE;
  if (args.length > 1) throw d.argErr();
  let size: number;
  try {
    size = atoi(args[0].text);
  } catch {
    throw d.argErr();
  }
  if (size < MIN_BUFSIZE || size > MAX_BUFSIZE) throw d.argErr();
  return size;
}

/** The bufsize directive: sets the block's UDP cap; its chain link passes every query on. */
export const bufsizePlugin: PluginDefinition = {
  name: "bufsize",
  perQuery: "passes-through",
  setup(ctx) {
    ctx.serverOptions.udpSize = parseBufsize(ctx.directives[0]);
    const plugin: Plugin = { name: "bufsize", serve: (req, next) => next(req) };
    return plugin;
  },
};
