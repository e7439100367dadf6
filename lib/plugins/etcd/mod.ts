/**
 * The `etcd` plugin: CoreDNS's SkyDNS-format etcd backend, answered from a
 * watch-fed in-memory mirror instead of etcd reads per query.
 *
 * This module is what the composition root (plugins.ts) imports, so it stays
 * light: the setup, and with it the etcd client (npm:etcd3, which pulls in
 * grpc-js and protobufjs, tens of MB resident), is imported only when a
 * Corefile names the directive. A `whoami`-only server never loads them.
 *
 * @module
 */

import type { Plugin, PluginDefinition, SetupContext } from "../../server/plugin.ts";

/** The `etcd` directive. */
export const etcdPlugin: PluginDefinition = {
  name: "etcd",
  perQuery: "pure-answer",
  async setup(ctx: SetupContext): Promise<Plugin> {
    const { setupEtcd } = await import("./setup.ts");
    return setupEtcd(ctx);
  },
};
