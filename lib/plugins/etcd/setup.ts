/**
 * Corefile syntax of the `etcd` directive (CoreDNS `plugin/etcd/setup.go`):
 *
 * ```
 * etcd [ZONES...] {
 *     fallthrough [ZONES...]
 *     path PATH
 *     endpoint ENDPOINT...
 *     credentials USERNAME PASSWORD
 *     tls [CERT KEY [CACERT]] | [CACERT]
 *     min-lease-ttl DURATION
 *     max-lease-ttl DURATION
 *     stubzones | debug | upstream [...]   (accepted, ignored)
 * }
 * ```
 *
 * The block is read the way Caddy's Dispenser reads it (NextBlock, NextArg,
 * RemainingArgs over the tokens: the shared {@link TokenStream}), so stray tokens fail the same way they do
 * in CoreDNS (`path /a b` -> `unknown property 'b'`).
 *
 * @module
 */

import { normalizeZones } from "../../corefile/keys.ts";
import { parseTTL } from "../../corefile/duration.ts";
import { Dispenser, TokenStream } from "../../corefile/dispenser.ts";
import type { Directive } from "../../corefile/types.ts";
import { DEFAULT_ENDPOINT, type EtcdOptions } from "../../etcd/options.ts";
import { acquireMirror } from "../../etcd/pool.ts";
import type { Plugin, SetupContext } from "../../server/plugin.ts";
import { createEtcdHandler } from "./handler.ts";
import { checkEtcdTLSFiles, parseEtcdConnectionOption } from "./options.ts";
import { etcdPath, pathWithWildcard } from "./path.ts";

const PLUGIN = "etcd";

/** Everything the `etcd` directive configures. */
export interface EtcdConfig {
  /** Authoritative zones: lower-case, fully qualified. */
  zones: string[];
  /** `path`, default "skydns". */
  pathPrefix: string;
  /** Zones to fall through for on NXDOMAIN; empty: never. */
  fallthrough: string[];
  /** Seconds; 0 means the default (30). */
  minLeaseTTL: number;
  /** Seconds; 0 means the default (86400). */
  maxLeaseTTL: number;
  /** How to reach etcd. */
  etcd: EtcdOptions;
}

/**
 * Parses the first `etcd` directive of a block (CoreDNS ignores later ones).
 * `blockZones` are the server block's zones, used when the line names none.
 * Throws CorefileError with CoreDNS's texts.
 */
export function parseEtcdConfig(
  directive: Directive,
  blockZones: readonly string[],
  configDir: string,
): EtcdConfig {
  const config: EtcdConfig = {
    zones: [],
    pathPrefix: "skydns",
    fallthrough: [],
    minLeaseTTL: 0,
    maxLeaseTTL: 0,
    etcd: { endpoints: [DEFAULT_ENDPOINT] },
  };
  const d = new TokenStream(PLUGIN, directive);
  d.next();
  const zoneArgs = d.remainingArgs().map((t) => t.text);
  config.zones = zoneArgs.length > 0 ? normalizeZones(zoneArgs) : [...blockZones];
  while (d.nextBlock()) {
    const property = d.token();
    switch (property.text) {
      case "stubzones":
      case "debug":
        break; // legacy no-ops; they take no arguments
      case "fallthrough": {
        const args = d.remainingArgs().map((t) => t.text);
        config.fallthrough = args.length === 0 ? ["."] : normalizeZones(args);
        break;
      }
      case "path":
        if (!d.nextArg()) throw d.argErr();
        config.pathPrefix = d.val();
        break;
      case "endpoint":
      case "credentials":
      case "tls": {
        const line = new Dispenser(PLUGIN, {
          name: property,
          args: d.remainingArgs(),
          block: null,
        });
        parseEtcdConnectionOption(line, config.etcd);
        if (property.text === "tls") {
          const problem = checkEtcdTLSFiles(config.etcd.tls!, configDir);
          if (problem !== undefined) throw line.err(problem, property);
        }
        break;
      }
      case "upstream":
        d.remainingArgs(); // legacy: arguments swallowed
        break;
      case "min-lease-ttl":
      case "max-lease-ttl": {
        if (!d.nextArg()) throw d.argErr();
        let seconds: number;
        try {
          seconds = parseTTL(d.val());
        } catch (err) {
          throw d.err(`invalid ${property.text} value: ${(err as Error).message}`);
        }
        if (property.text === "min-lease-ttl") config.minLeaseTTL = seconds;
        else config.maxLeaseTTL = seconds;
        break;
      }
      default:
        if (property.text !== "}") throw d.err(`unknown property '${property.text}'`);
    }
  }
  return config;
}

/**
 * The etcd key prefix that holds every key lookups in `zones` can read: the
 * common path of the zones' keys (cut at a wildcard label, which widens reads).
 */
export function mirrorPrefix(zones: readonly string[], pathPrefix: string): string {
  const paths = zones.map((zone) => pathWithWildcard(zone, pathPrefix).path);
  if (paths.length === 0) return etcdPath(".", pathPrefix);
  let common = paths[0].split("/");
  for (const p of paths.slice(1)) {
    const parts = p.split("/");
    let i = 0;
    while (i < common.length && i < parts.length && common[i] === parts[i]) i++;
    common = common.slice(0, i);
  }
  const joined = common.join("/") || "/";
  // A zone's own key (`/skydns/test/skydns`) is read too, so no trailing slash
  // when the common path is a zone's; otherwise everything below it.
  if (paths.includes(joined)) return joined;
  return joined.endsWith("/") ? joined : joined + "/";
}

/** The `etcd` setup: parse, share a mirror of the zones' keys, build the handler. */
export function setupEtcd(ctx: SetupContext): Plugin {
  const config = parseEtcdConfig(ctx.directives[0], ctx.zones, ctx.configDir);
  const mirror = acquireMirror(
    ctx.resources,
    config.etcd,
    mirrorPrefix(config.zones, config.pathPrefix),
    ctx.configDir,
    ctx.log,
  );
  const handler = createEtcdHandler(
    {
      zones: config.zones,
      fallthrough: config.fallthrough,
      lookup: {
        pathPrefix: config.pathPrefix,
        minLeaseTTL: config.minLeaseTTL,
        maxLeaseTTL: config.maxLeaseTTL,
      },
    },
    mirror,
    ctx.log,
  );
  // Loading starts with the server. The hook waits at most a second (until the
  // copy loaded or an attempt failed), so an unreachable etcd never keeps the
  // listeners closed: the zone answers SERVFAIL until its copy arrives, and the
  // server's other zones answer as usual.
  ctx.onStartup(() => handler.start());
  return handler.plugin;
}
