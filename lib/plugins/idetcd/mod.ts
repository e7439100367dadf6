/**
 * The `idetcd` plugin: claims this node's name in etcd at startup, holds it,
 * and answers for every node of the pattern's zone. See README.md.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { dirname } from "node:path";
import type { Etcd3 } from "etcd3";
import { createClient, describeEndpoints } from "../../etcd/client.ts";
import { acquireMirror, canonicalJson } from "../../etcd/pool.ts";
import type { Mirror } from "../../etcd/mirror.ts";
import type { KeyValue } from "../../etcd/types.ts";
import type { Logger } from "../../log.ts";
import type { Plugin, PluginDefinition } from "../../server/plugin.ts";
import { Buffer } from "node:buffer";
import { resolveAddresses } from "./addresses.ts";
import { type Claimed, Claimer } from "./claim.ts";
import { type MetricFamily, registerCollector } from "../../server/metrics.ts";
import { createIdetcdHandler } from "./handler.ts";
import { ClusterView, type Member, namePath } from "./records.ts";
import { DEFAULTS, type IdetcdConfig, parseIdetcd, PLUGIN } from "./setup.ts";

/** The parsed directive and its parser, for main.ts (whoami, tf-config). */
export { type IdetcdConfig, parseIdetcd } from "./setup.ts";

/** What the `file` directive writes on every claim. */
export interface ClaimFile {
  id: number;
  /** Fully qualified ("worker4.tf.local."). */
  name: string;
  zone: string;
  pattern: string;
  addresses: string[];
  port?: number;
  identity: string;
  claimedAt: string;
}

/** A short, non-reversible digest of /etc/machine-id (which must not be published as is). */
function machineDigest(): string | undefined {
  for (const path of ["/etc/machine-id", "/var/lib/dbus/machine-id"]) {
    try {
      const id = Deno.readTextFileSync(path).trim();
      if (id) return createHash("sha256").update(`idetcd:${id}`).digest("hex").slice(0, 16);
    } catch {
      // try the next
    }
  }
  return undefined;
}

/** This node's default identity: host name, machine-id digest and the advertised addresses. */
export function defaultIdentity(addresses: readonly string[]): string {
  let host = "";
  try {
    host = Deno.hostname();
  } catch {
    // no --allow-sys: the addresses still tell nodes apart
  }
  return `${host || "-"}/${machineDigest() ?? "-"}/${addresses.join(",")}`;
}

/** The identity `config` claims with, given the resolved addresses. */
export function identityOf(config: IdetcdConfig, addresses: readonly string[]): string {
  return config.identity ?? defaultIdentity(addresses);
}

/** The ID recorded in a state file written for the same pattern, if any. */
export function readClaimFile(path: string, pattern: string): ClaimFile | undefined {
  try {
    const data = JSON.parse(Deno.readTextFileSync(path)) as Partial<ClaimFile>;
    if (data.pattern === pattern && Number.isSafeInteger(data.id)) return data as ClaimFile;
  } catch {
    // missing or unreadable: no previous life
  }
  return undefined;
}

/** Writes the state file atomically (temporary file, then rename). */
export function writeClaimFile(path: string, data: ClaimFile): void {
  Deno.mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.tmp-${Deno.pid}`;
  Deno.writeTextFileSync(temporary, JSON.stringify(data, null, 2) + "\n");
  Deno.renameSync(temporary, path);
}

/**
 * One node's claim as a shared resource: created once per claim
 * configuration, kept across Corefile reloads (so the node keeps its ID),
 * closed (lease revoked) when no configuration uses it any more.
 */
export class IdetcdNode {
  readonly config: IdetcdConfig;
  readonly #log: Logger;
  #client?: Etcd3;
  #claimer?: Claimer;
  #addresses: string[] = [];
  #starting?: Promise<Claimed>;
  #closing?: Promise<void>;
  #unregisterMetrics?: () => void;

  constructor(config: IdetcdConfig, log: Logger) {
    this.config = config;
    this.#log = log;
  }

  /** The addresses this node advertises (empty before start). */
  get addresses(): readonly string[] {
    return this.#addresses;
  }

  /** The name held now, if any. */
  current(): Claimed | undefined {
    return this.#claimer?.current();
  }

  /** Resolves the addresses and claims a name (once); rejects with one clear line. */
  start(): Promise<Claimed> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<Claimed> {
    const { config } = this;
    this.#addresses = resolveAddresses(config.addressSpecs);
    const identity = identityOf(config, this.#addresses);
    const previous = config.file ? readClaimFile(config.file, config.pattern.source) : undefined;
    this.#client = createClient(config.etcd, config.configDir);
    const claimer = new Claimer(this.#client, {
      pattern: config.pattern,
      limit: config.limit,
      prefix: config.prefix,
      addresses: this.#addresses,
      port: config.port,
      identity,
      leaseSeconds: config.leaseSeconds,
      wait: config.wait,
      preferredId: previous?.id,
      endpoints: describeEndpoints(config.etcd),
    }, this.#log);
    this.#claimer = claimer;
    this.#unregisterMetrics = registerCollector(() => claimMetrics(config, claimer));
    if (config.file) {
      const file = config.file;
      claimer.onChange((claimed) => {
        if (!claimed) return;
        try {
          writeClaimFile(file, {
            id: claimed.id,
            name: claimed.name,
            zone: config.pattern.zone,
            pattern: config.pattern.source,
            addresses: claimed.addresses,
            port: claimed.port,
            identity: claimed.identity,
            claimedAt: claimed.claimedAt,
          });
        } catch (err) {
          this.#log.error(`writing ${file}: ${(err as Error).message}`);
        }
      });
    }
    return await claimer.claim();
  }

  /** Releases the name (the lease is revoked) and closes the etcd client. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#starting?.catch(() => {});
      this.#unregisterMetrics?.();
      await this.#claimer?.release();
      this.#client?.close();
    })();
    return this.#closing;
  }
}

/** idetcd_claimed_id, idetcd_lease_state and the claim counters of one node. */
export function claimMetrics(config: IdetcdConfig, claimer: Claimer): MetricFamily[] {
  const labels = { pattern: config.pattern.source };
  const held = claimer.current();
  const stats = claimer.stats;
  const family = (
    name: string,
    help: string,
    type: MetricFamily["type"],
    value: number,
  ): MetricFamily => ({ name, help, type, samples: [{ labels, value }] });
  return [
    family(
      "idetcd_claimed_id",
      "The ID this node holds (0 while it holds none).",
      "gauge",
      held?.id ?? 0,
    ),
    family(
      "idetcd_lease_state",
      "1 while this node holds its name under a live lease.",
      "gauge",
      held ? 1 : 0,
    ),
    family(
      "idetcd_claims_total",
      "Names claimed (the first claim and re-claims).",
      "counter",
      stats.claims,
    ),
    family(
      "idetcd_name_losses_total",
      "Times the held name was lost while running.",
      "counter",
      stats.losses,
    ),
    family(
      "idetcd_claim_lost_races_total",
      "Claim transactions that lost a race.",
      "counter",
      stats.lostRaces,
    ),
    family(
      "idetcd_etcd_requests_total",
      "etcd requests made by the claim.",
      "counter",
      stats.requests,
    ),
  ];
}

/** Resolves true once `condition` holds (checked after each mirror change), false after `timeoutMs`. */
function waitUntil(mirror: Mirror, condition: () => boolean, timeoutMs: number): Promise<boolean> {
  if (condition()) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      stop();
      resolve(false);
    }, timeoutMs);
    const stop = mirror.onChange(() => {
      if (!condition()) return;
      clearTimeout(timer);
      stop();
      resolve(true);
    });
  });
}

/** The resource key of a claim: everything that decides what is written to etcd. */
export function claimKey(config: IdetcdConfig): string {
  return `idetcd-claim ${
    canonicalJson({
      etcd: config.etcd,
      configDir: config.configDir,
      prefix: config.prefix,
      pattern: config.pattern.source,
      limit: config.limit,
      address: config.addressSpecs,
      identity: config.identity,
      lease: config.leaseSeconds,
      port: config.port,
      wait: config.wait,
      file: config.file,
    })
  }`;
}

/** The etcd path of the pattern's zone ("/skydns/local/tf"). */
export function zonePath(config: IdetcdConfig): string {
  return namePath(config.prefix, config.pattern.zone);
}

/** The `idetcd` directive. */
export const idetcdPlugin: PluginDefinition = {
  name: PLUGIN,
  setup(ctx) {
    const config = parseIdetcd(ctx.directives, ctx.configDir);
    const node = ctx.resources.acquire(claimKey(config), () => new IdetcdNode(config, ctx.log));
    const mirror = acquireMirror(
      ctx.resources,
      config.etcd,
      zonePath(config) + "/",
      ctx.configDir,
      ctx.log,
    );
    // Whether this node's copy of etcd shows its own claim: only then does it answer its own name.
    const seesOwnClaim = () => {
      const held = node.current();
      return held !== undefined && mirror.get(held.key)?.lease === held.leaseId;
    };
    ctx.onStartup(async () => {
      // The claim fails fast with one line (all names taken, etcd unreachable);
      // the mirror's first load follows once etcd answers.
      await node.start();
      await mirror.start();
      // Open the listeners only once the claim is in the copy too, so that from
      // the first answer on this node resolves its own name (the watch event
      // usually lands within milliseconds; under load it can take longer).
      if (!(await waitUntil(mirror, seesOwnClaim, 5_000))) {
        ctx.log.warning("the in-memory copy does not show this node's claim yet; serving anyway");
      }
    });
    const handler = createIdetcdHandler({
      pattern: config.pattern,
      prefix: config.prefix,
      ttl: config.ttl,
      port: config.port,
      fallthrough: config.fallthrough,
      source: mirror,
      selfAddresses: () => node.addresses,
    });
    const plugin: Plugin = {
      name: PLUGIN,
      serve: handler.serve,
      ready: () => mirror.isReady() && seesOwnClaim(),
    };
    return plugin;
  },
};

// ---------------------------------------------------------------------------
// For main.ts's subcommands.

/** This node as etcd records it. */
export interface WhoAmI {
  id: number;
  /** Fully qualified. */
  name: string;
  addresses: string[];
  port?: number;
  identity: string;
}

/** The TF_CONFIG of this node (TensorFlow's TFConfigClusterResolver format). */
export interface TfConfig {
  cluster: { worker: string[] };
  task: { type: "worker"; index: number };
}

async function readMembers(config: IdetcdConfig): Promise<{ view: ClusterView; identity: string }> {
  const identity = identityOf(config, config.identity ? [] : resolveAddresses(config.addressSpecs));
  const client = createClient(config.etcd, config.configDir);
  try {
    const base = zonePath(config) + "/";
    const end = Buffer.from(base);
    end[end.length - 1]++;
    const res = await client.kv.range({ key: Buffer.from(base), range_end: end });
    const kvs: KeyValue[] = res.kvs.map((kv) => ({
      key: kv.key.toString(),
      value: kv.value.toString(),
      lease: kv.lease,
      createRevision: Number(kv.create_revision),
      modRevision: Number(kv.mod_revision),
    }));
    return { view: ClusterView.fromKeys(kvs, zonePath(config), config.pattern), identity };
  } catch (err) {
    throw new Error(
      `idetcd: cannot read etcd at ${describeEndpoints(config.etcd)}: ${
        (err as Error).message.split("\n")[0]
      }`,
    );
  } finally {
    client.close();
  }
}

function self(view: ClusterView, identity: string, config: IdetcdConfig): Member {
  const member = view.byIdentity(identity);
  if (!member) {
    throw new Error(
      `idetcd: this node (identity ${identity}) holds no name of ${config.pattern.source} in etcd at ${
        describeEndpoints(config.etcd)
      }`,
    );
  }
  return member;
}

/** This node's ID and name, read from etcd by its identity; throws one line when it holds none. */
export async function whoami(config: IdetcdConfig): Promise<WhoAmI> {
  const { view, identity } = await readMembers(config);
  const m = self(view, identity, config);
  return {
    id: m.id,
    name: m.name,
    addresses: [...m.ipv4, ...m.ipv6],
    port: m.port,
    identity: m.identity,
  };
}

/**
 * TF_CONFIG for this node: every member as `name:port` ordered by ID (port
 * from the member's record, else `port`, else 2222) and this node's index in
 * that list.
 */
export async function tfConfig(config: IdetcdConfig): Promise<TfConfig> {
  const { view, identity } = await readMembers(config);
  const me = self(view, identity, config);
  const worker = view.members.map((m) =>
    `${m.name.slice(0, -1)}:${m.port ?? config.port ?? DEFAULTS.tfPort}`
  );
  return {
    cluster: { worker },
    task: { type: "worker", index: view.members.indexOf(me) },
  };
}
