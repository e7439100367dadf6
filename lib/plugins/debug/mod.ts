/**
 * debug: turns on DEBUG log lines, as CoreDNS's debug plugin.
 *
 * @module
 */

import { argError } from "../../corefile/types.ts";
import { setDebug } from "../../log.ts";
import type { PluginDefinition } from "../../server/plugin.ts";

/** The debug directive; no arguments, no handler. */
export const debugPlugin: PluginDefinition = {
  name: "debug",
  setup(ctx) {
    const d = ctx.directives[0];
    if (d.args.length) throw argError(d.args[0], "debug");
    setDebug(true);
    return null;
  },
};
