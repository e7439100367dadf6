/**
 * debug: turns on DEBUG log lines, as CoreDNS's debug plugin.
 *
 * @module
 */

import { Dispenser } from "../../corefile/dispenser.ts";
import { setDebug } from "../../log.ts";
import type { PluginDefinition } from "../../server/plugin.ts";

/** The debug directive; no arguments, no handler. */
export const debugPlugin: PluginDefinition = {
  name: "debug",
  setup(ctx) {
    const d = new Dispenser("debug", ctx.directives[0]);
    if (d.nextArg()) throw d.argErr();
    setDebug(true);
    return null;
  },
};
