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
import { type Claimed, Claimer, type ClaimState } from "./claim.ts";
import { previousId, writeClaimFile } from "./claim_file.ts";
import { identityOf } from "./identity.ts";
import type { IdetcdConfig } from "./setup.ts";

/** The claim of this node, shared by every configuration that names the same claim settings. */
export class IdetcdNode {
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

  /** A node on a shared client and zone copy (both owned by the resource pool). */
  constructor(config: IdetcdConfig, client: Etcd3, zone: ZoneCopy, log: Logger) {
    this.config = config;
    this.#client = client;
    this.#zone = zone;
    this.#log = log;
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
      },
      this.#log,
      { zone: this.#zone },
    );
    this.#claimer = claimer;
    claimer.onState((state) => this.#onState(state, identity));
    return await claimer.claim();
  }

  #onState(state: ClaimState, identity: string): void {
    if (state.kind === "held") this.#last = state.claimed;
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
      await this.#claimer?.release();
    })();
    return this.#closing;
  }
}
