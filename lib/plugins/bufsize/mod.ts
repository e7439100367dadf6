/**
 * bufsize: caps the EDNS0 UDP payload size a client offers, so that UDP
 * answers are truncated before they fragment (CoreDNS's plugin/bufsize).
 *
 * The cap itself is applied by the dispatcher before the chain runs (see
 * `lib/server/dispatch.ts`): it lowers the request's EDNS0 size, exactly as
 * CoreDNS's plugin rewrites the request's OPT record, so the reply's OPT
 * echoes the lowered size, `forward` asks upstreams with it, and UDP replies
 * are truncated at it. idetcd applies {@link DEFAULT_BUFSIZE} to every block
 * that has no `bufsize` line; the directive changes the cap.
 *
 * @module
 */

import { argError, type Token } from "../../corefile/types.ts";
import type { Plugin, PluginDefinition } from "../../server/plugin.ts";

/** The DNS Flag Day 2020 size: CoreDNS's default for `bufsize` and idetcd's cap without it. */
export const DEFAULT_BUFSIZE = 1232;
/** Smallest SIZE accepted (RFC 6891's floor for a UDP payload). */
export const MIN_BUFSIZE = 512;
/** Largest SIZE accepted, as CoreDNS. */
export const MAX_BUFSIZE = 4096;

/** The chain link: carries the block's cap for the dispatcher and passes every query on. */
export interface BufsizePlugin extends Plugin {
  readonly name: "bufsize";
  /** The largest EDNS0 UDP size a query of this block keeps. */
  readonly size: number;
}

/** Go's strconv.Atoi on decimal text: an optional sign, then digits only. */
function atoi(text: string): number | undefined {
  if (!/^[+-]?\d+$/.test(text)) return undefined;
  return Number(text);
}

/**
 * Reads `bufsize [SIZE]` (only the first line of a block counts, as in
 * CoreDNS); SIZE must be an integer in 512..4096. Errors are CoreDNS's
 * ArgErr, naming the token they follow.
 */
export function parseBufsize(first: { name: Token; args: Token[]; block: unknown }): number {
  const args = first.args;
  if (first.block) throw argError(args.at(-1) ?? first.name, "bufsize");
  if (args.length === 0) return DEFAULT_BUFSIZE;
  if (args.length > 1) throw argError(args.at(-1)!, "bufsize");
  const size = atoi(args[0].text);
  if (size === undefined || size < MIN_BUFSIZE || size > MAX_BUFSIZE) {
    throw argError(args[0], "bufsize");
  }
  return size;
}

/** Whether a chain link is the `bufsize` plugin. */
export function isBufsize(plugin: Plugin): plugin is BufsizePlugin {
  return plugin.name === "bufsize" && typeof (plugin as BufsizePlugin).size === "number";
}

/** The bufsize directive. */
export const bufsizePlugin: PluginDefinition = {
  name: "bufsize",
  setup(ctx) {
    const size = parseBufsize(ctx.directives[0]);
    const plugin: BufsizePlugin = {
      name: "bufsize",
      size,
      serve: (req, next) => next(req),
    };
    return plugin;
  },
};
