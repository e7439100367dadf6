/**
 * The `idetcd` plugin: claims this node's name in etcd in the background,
 * holds it, and answers for every node of the pattern's zone. See README.md.
 *
 * This module is what the composition root (plugins.ts) imports, so it stays
 * light: everything that reaches the etcd client (npm:etcd3, which pulls in
 * grpc-js and protobufjs, tens of MB resident) is imported when a Corefile
 * names the directive (plugin.ts) or a subcommand asks etcd (members.ts).
 *
 * @module
 */

import type { Plugin, PluginDefinition, SetupContext } from "../../server/plugin.ts";
import type { TfConfig, WhoAmI } from "./members.ts";
import { type IdetcdConfig, PLUGIN } from "./setup.ts";

/** The parsed directive and its parser, for main.ts (whoami, tf-config). */
export { type IdetcdConfig, parseIdetcd } from "./setup.ts";
export type { TfConfig, WhoAmI } from "./members.ts";

/** This node's ID and name as etcd records them (see members.ts). */
export async function whoami(config: IdetcdConfig): Promise<WhoAmI> {
  return (await import("./members.ts")).whoami(config);
}

/** TF_CONFIG for this node, from etcd (see members.ts). */
export async function tfConfig(config: IdetcdConfig): Promise<TfConfig> {
  return (await import("./members.ts")).tfConfig(config);
}

/** The `idetcd` directive. */
export const idetcdPlugin: PluginDefinition = {
  name: PLUGIN,
  perQuery: "pure-answer",
  async setup(ctx: SetupContext): Promise<Plugin> {
    return (await import("./plugin.ts")).setupIdetcd(ctx);
  },
};
