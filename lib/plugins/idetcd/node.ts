/**
 * One node's claim as a shared resource: created once per claim
 * configuration, kept across Corefile reloads (so the node keeps its ID),
 * closed (name released) when no configuration uses it any more. It feeds the
 * claim driver's held / not-held state to the state file and tells the DNS
 * handler which of the copy's records are this node's own unvouched ones.
 *
 * @module
 */

import type { Etcd3 } from "etcd3";
import { describeEndpoints } from "../../etcd/client.ts";
import type { ZoneCopy } from "../../etcd/mirror.ts";
import type { Logger } from "../../log.ts";
import { resolveAddresses } from "./addresses.ts";
import { type Claimed, Claimer, ClaimError, type ClaimState } from "./claim.ts";
import { previousId, writeClaimFile } from "./claim_file.ts";
import { HostIdentity } from "./host_identity.ts";
import { identityOf } from "./identity.ts";
import { defaultMarginMs } from "./lease.ts";
import { claimKey } from "./claim_key.ts";
import {
  liveHolder,
  processStart,
  removeRuntimeState,
  runtimePath,
  writeRuntimeState,
} from "./runtime.ts";
import type { IdetcdConfig } from "./setup.ts";

/**
 * The role this node claims in: the Corefile's `claim-role`, else the
 * IDETCD_ROLE environment variable, else any (undefined). Throws a
 * ClaimError naming the roles when the variable names none of them.
 */
export function claimRoleOf(config: IdetcdConfig): string | undefined {
  if (config.claimRole) return config.claimRole;
  let wanted: string | undefined;
  try {
    wanted = Deno.env.get("IDETCD_ROLE") || undefined;
  } catch {
    // no --allow-env: the Corefile decides
  }
  if (wanted === undefined) return undefined;
  if (!config.roles.get(wanted)) {
    const names = config.roles.roles.map((r) => r.name);
    throw new ClaimError(
      `idetcd: IDETCD_ROLE=${wanted} names no role of ${config.pattern.source}${
        names.length ? ` (roles: ${names.join(", ")})` : " (it declares none)"
      }`,
    );
  }
  return wanted;
}

/** The claim of this node, shared by every configuration that names the same claim settings. */
export class IdetcdNode {
  /**
   * The configuration the node was created with; later configurations sharing it name the same
   * claim settings.
   */
  readonly config: IdetcdConfig;
  readonly #log: Logger;
  readonly #client: Etcd3;
  readonly #zone: ZoneCopy;
  #claimer?: Claimer;
  #addresses: string[] = [];
  /** The last name this node held, vouched for or not. */
  #last?: Claimed;
  #starting?: Promise<Claimed>;
  #closing?: Promise<void>;
  #closed = false;
  /** The runtime state file (runtime.ts); undefined when it cannot be written. */
  #runtimeFile?: string;
  /** The `hostname` option: the system hostname and /etc/hosts follow the held name. */
  readonly #host?: HostIdentity;

  /** A node on a shared client and zone copy (both owned by the resource pool). */
  constructor(config: IdetcdConfig, client: Etcd3, zone: ZoneCopy, log: Logger) {
    this.config = config;
    this.#client = client;
    this.#zone = zone;
    this.#log = log;
    if (config.hostname) this.#host = new HostIdentity(log);
  }

  /** The addresses this node advertises (empty before start). */
  get addresses(): readonly string[] {
    return this.#addresses;
  }

  /** The claim driver (undefined before start). */
  get claimer(): Claimer | undefined {
    return this.#claimer;
  }

  /** The name held and vouched for now, if any. */
  current(): Claimed | undefined {
    return this.#claimer?.current();
  }

  /**
   * This node's last claim while it is not vouched for: its ID and lease.
   * The copy's records under that lease must not be answered as this node's
   * name, and the name itself gets no NXDOMAIN from this node either.
   */
  unvouched(): { id: number; lease: string } | undefined {
    const last = this.#last;
    if (!last || this.current()?.leaseId === last.leaseId) return undefined;
    return { id: last.id, lease: last.leaseId };
  }

  /** Changes whenever this node's held state may have changed (see Claimer.epoch). */
  epoch(): number {
    return this.#claimer?.epoch() ?? 0;
  }

  /** Resolves the addresses and starts claiming (once); resolves with the first claim. */
  start(): Promise<Claimed> {
    this.#starting ??= this.#start();
    return this.#starting;
  }

  async #start(): Promise<Claimed> {
    const { config } = this;
    this.#addresses = resolveAddresses(config.addressSpecs);
    await this.#waitForOtherHolder();
    if (this.#closed) throw new ClaimError("idetcd: released before a name was claimed");
    this.#writeRuntime({ state: "starting", held: false });
    this.#host?.update({ kind: "starting" }); // undoes what a killed earlier run left
    const identity = identityOf(config, this.#addresses);
    const claimer = new Claimer(
      this.#client,
      {
        pattern: config.pattern,
        limit: config.limit,
        prefix: config.prefix,
        addresses: this.#addresses,
        port: config.port,
        identity,
        leaseSeconds: config.leaseSeconds,
        marginMs: config.fenceMarginMs,
        wait: config.wait,
        preferredId: config.file ? previousId(config.file, config.pattern.source) : undefined,
        endpoints: describeEndpoints(config.etcd),
        roles: config.roles,
        role: claimRoleOf(config),
      },
      this.#log,
      { zone: this.#zone },
    );
    this.#claimer = claimer;
    claimer.onState((state) => this.#onState(state, identity));
    return await claimer.claim();
  }

  /**
   * Another live process holding this very claim on this node (a server
   * started while `idetcd exec` serves it, or the reverse) would be a second
   * claimer with the same identity: wait until it stops instead.
   */
  async #waitForOtherHolder(): Promise<void> {
    try {
      this.#runtimeFile = runtimePath(claimKey(this.config));
    } catch (err) {
      this.#log.warning(`no runtime state file: ${(err as Error).message}`);
      return;
    }
    let told = false;
    while (!this.#closed) {
      const other = liveHolder(this.#runtimeFile);
      if (!other || other.pid === Deno.pid) return;
      if (!told) {
        this.#log.warning(
          `another idetcd process (pid ${other.pid}) holds this node's claim of ${this.config.pattern.source}; waiting for it to stop`,
        );
        told = true;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  #writeRuntime(
    fields: { state: string; held: boolean; claimed?: Claimed; reason?: string },
  ): void {
    if (!this.#runtimeFile || this.#closed) return;
    const { config } = this;
    try {
      writeRuntimeState(this.#runtimeFile, {
        pid: Deno.pid,
        procStart: processStart(Deno.pid),
        state: fields.state,
        held: fields.held,
        id: fields.claimed?.id,
        name: fields.claimed?.name,
        fence: fields.claimed?.createRevision,
        reason: fields.reason,
        marginMs: config.fenceMarginMs ?? defaultMarginMs(config.leaseSeconds),
        updatedAt: new Date().toISOString(),
      });
    } catch (err) {
      this.#log.error(`writing ${this.#runtimeFile}: ${(err as Error).message}`);
    }
  }

  #onState(state: ClaimState, identity: string): void {
    if (state.kind === "held") this.#last = state.claimed;
    this.#host?.update(state);
    this.#writeRuntime({
      state: state.kind,
      held: state.kind === "held",
      claimed: state.kind === "held" || state.kind === "fenced" ? state.claimed : this.#last,
      reason: "reason" in state ? state.reason : undefined,
    });
    const file = this.config.file;
    if (!file || state.kind === "starting") return;
    const { pattern } = this.config;
    try {
      if (state.kind === "held") {
        const c = state.claimed;
        writeClaimFile(file, {
          held: true,
          id: c.id,
          name: c.name,
          zone: pattern.zone,
          pattern: pattern.source,
          addresses: c.addresses,
          port: c.port,
          identity: c.identity,
          claimedAt: c.claimedAt,
          fence: c.createRevision,
        });
      } else {
        writeClaimFile(file, {
          held: false,
          state: state.kind,
          reason: state.reason,
          lastId: this.#last?.id,
          lastName: this.#last?.name,
          zone: pattern.zone,
          pattern: pattern.source,
          identity,
          since: new Date().toISOString(),
        });
      }
    } catch (err) {
      this.#log.error(`writing ${file}: ${(err as Error).message}`);
    }
  }

  /** Releases the name (the lease is revoked). The client and copy belong to the pool. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#closed = true;
      await this.#claimer?.release();
      if (this.#claimer) this.#host?.withdraw("released");
      if (this.#runtimeFile) removeRuntimeState(this.#runtimeFile);
    })();
    return this.#closing;
  }
}
