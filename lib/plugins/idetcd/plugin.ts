/**
 * The `idetcd` plugin as one server block runs it: the shared etcd client
 * and zone copy, this node's claim, the startup wait for it and the handler.
 * mod.ts imports this module only when a Corefile names the directive, since
 * it reaches the etcd client (npm:etcd3, grpc-js, protobufjs).
 *
 * @module
 */

import { acquireClient, acquireMirror } from "../../etcd/pool.ts";
import type { Plugin, SetupContext } from "../../server/plugin.ts";
import { registerCollector } from "../../server/metrics.ts";
import { ClaimError } from "./claim.ts";
import { DepartedMembers } from "./departed.ts";
import { createIdetcdHandler } from "./handler.ts";
import { claimMetrics } from "./metrics.ts";
import { zonePath } from "./members.ts";
import { claimKey } from "./claim_key.ts";
import { IdetcdNode } from "./node.ts";
import { parseIdetcd, PLUGIN } from "./setup.ts";

/** How long startup waits for a claim etcd is answering to show in the copy, ms at most. */
export const STARTUP_WAIT_MS = 5_000;
/** How long startup waits for etcd to answer at all before the listeners open anyway, ms. */
export const ETCD_SIGN_OF_LIFE_MS = 2_000;

/** The `idetcd` setup for one server block: the shared client and copy, the node's claim, the handler. */
export function setupIdetcd(ctx: SetupContext): Plugin {
  const config = parseIdetcd(ctx.directives, ctx.configDir);
  // One connection per node: the claim and the zone's copy share the pool's client.
  const client = acquireClient(ctx.resources, config.etcd, ctx.configDir);
  const mirror = acquireMirror(
    ctx.resources,
    config.etcd,
    zonePath(config) + "/",
    ctx.configDir,
    ctx.log,
  );
  const node = ctx.resources.acquire(claimKey(config), () => {
    const created = new IdetcdNode(config, client, mirror, ctx.log);
    let unregister: (() => void) | undefined;
    const close = created.close.bind(created);
    created.close = async () => {
      unregister?.();
      await close();
    };
    created.start().then(
      () => {
        unregister = registerCollector(() => claimMetrics(config, created.claimer!));
      },
      () => {}, // reported by the startup hook below
    );
    return created;
  });
  // Whether this node's copy of etcd shows its own claim: only then does it answer its own name.
  const seesOwnClaim = () => {
    const held = node.current();
    return held !== undefined && mirror.get(held.key)?.lease === held.leaseId;
  };
  ctx.onStartup(async () => {
    mirror.start();
    const claimed = node.start();
    let failure: unknown;
    const released = (err: unknown) =>
      err instanceof ClaimError && /released before/.test(err.message);
    claimed.catch((err) => (failure = err));
    // Listeners open at once, except that while etcd answers, the claim is
    // waited for (so that from the first answer on this node resolves its
    // own name); a claim that fails that fast fails the start.
    const started = performance.now();
    while (failure === undefined && !seesOwnClaim()) {
      const elapsed = performance.now() - started;
      const status = mirror.status();
      const answering = status.ready || node.current() !== undefined;
      if (!status.connected && status.lastError !== undefined) break; // etcd refused or is away
      if (!answering && elapsed >= ETCD_SIGN_OF_LIFE_MS) break;
      if (elapsed >= STARTUP_WAIT_MS) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    if (failure !== undefined && !released(failure)) throw failure;
    // A claim that gives up later (etcd unreachable for 15 s, `wait` timed out) ends the program.
    claimed.catch((err) => {
      if (!released(err)) ctx.fatal(err instanceof Error ? err : new Error(String(err)));
    });
  });
  const departed = new DepartedMembers(mirror, config.prefix, config.pattern);
  ctx.onShutdown(() => departed.close());
  const handler = createIdetcdHandler({
    pattern: config.pattern,
    prefix: config.prefix,
    ttl: config.ttl,
    negativeTtl: config.negativeTtl,
    port: config.port,
    fallthrough: config.fallthrough,
    source: mirror,
    selfAddresses: () => node.addresses,
    unvouched: () => node.unvouched(),
    selfEpoch: () => node.epoch(),
    roles: config.roles,
    loaded: () => mirror.isReady(),
    departed,
  });
  const plugin: Plugin = {
    name: PLUGIN,
    serve: handler.serve,
    ready: () => mirror.isReady() && seesOwnClaim(),
  };
  return plugin;
}
