/**
 * The `etcd` plugin: CoreDNS's SkyDNS-format etcd backend, answered from a
 * watch-fed in-memory mirror instead of etcd reads per query.
 *
 * @module
 */

import type { PluginDefinition } from "../../server/plugin.ts";
import { setupEtcd } from "./setup.ts";

/** The `etcd` directive. */
export const etcdPlugin: PluginDefinition = {
  name: "etcd",
  setup: setupEtcd,
};
