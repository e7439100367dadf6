/**
 * The subcommands' view of the cluster: the zone read once from etcd, and
 * this node found in it by its identity (`whoami`, `tf-config`).
 *
 * @module
 */

import { createClient, describeEndpoints } from "../../etcd/client.ts";
import { cleanEtcdError } from "../../etcd/diagnose.ts";
import { Etcd3Kv } from "../../etcd/kv.ts";
import { resolveAddresses } from "./addresses.ts";
import { readClaimFile } from "./claim_file.ts";
import { identityOf } from "./identity.ts";
import { type MemberInfo, type TfConfig, tfConfig as tfConfigOf } from "./presets.ts";
import { ClusterView, type Member, namePath } from "./records.ts";
import type { RoleMap } from "./roles.ts";
import { DEFAULTS, type IdetcdConfig } from "./setup.ts";

/** The members of a view as the workload sees them, with their roles. */
export function memberInfos(view: ClusterView, roles: RoleMap): MemberInfo[] {
  return view.members.map((m) => ({
    id: m.id,
    name: m.name,
    role: roles.roleOf(m.id),
    addresses: [...m.ipv4, ...m.ipv6],
    port: m.port,
  }));
}

/** This node as etcd records it. */
export interface WhoAmI {
  /** The ID this node holds, in 1..limit. */
  id: number;
  /** Fully qualified. */
  name: string;
  /** The addresses its records advertise: IPv4 first, then IPv6. */
  addresses: string[];
  /** The service port its record published; absent when none is configured. */
  port?: number;
  /** The identity its record was claimed with, which found it (see identity.ts). */
  identity: string;
}

/** The TF_CONFIG of this node (TensorFlow's TFConfigClusterResolver format). */
export type { TfConfig } from "./presets.ts";

/** The etcd path of the pattern's zone ("/skydns/local/tf"). */
export function zonePath(config: IdetcdConfig): string {
  return namePath(config.prefix, config.pattern.zone);
}

/**
 * One line for a failed read of the zone, naming the endpoints once (the
 * client's diagnosis may already start with "etcd at ENDPOINT: ...").
 */
export function etcdReadError(config: IdetcdConfig, err: unknown): Error {
  const text = cleanEtcdError(err);
  if (text.startsWith("etcd at ")) return new Error(`idetcd: cannot read ${text}`);
  return new Error(`idetcd: cannot read etcd at ${describeEndpoints(config.etcd)}: ${text}`);
}

/** Reads the zone from etcd once; throws one line naming the endpoints when it cannot. */
export async function readMembers(
  config: IdetcdConfig,
): Promise<{ view: ClusterView; identity: string }> {
  const identity = identityOf(config, config.identity ? [] : resolveAddresses(config.addressSpecs));
  const client = createClient(config.etcd, config.configDir);
  try {
    const kvs = await new Etcd3Kv(client).range(zonePath(config) + "/", { prefix: true });
    return { view: ClusterView.fromKeys(kvs, zonePath(config), config.pattern), identity };
  } catch (err) {
    throw etcdReadError(config, err);
  } finally {
    client.close();
  }
}

/**
 * This node's member record. Throws one line when etcd shows none for its
 * identity, or when the node's own state file says it holds no name now
 * (fenced or lost: etcd may still show the old claim until its lease ends).
 */
function self(view: ClusterView, identity: string, config: IdetcdConfig): Member {
  const where = `${config.pattern.source} in etcd at ${describeEndpoints(config.etcd)}`;
  const member = view.byIdentity(identity);
  if (!member) {
    throw new Error(`idetcd: this node (identity ${identity}) holds no name of ${where}`);
  }
  const file = config.file ? readClaimFile(config.file) : undefined;
  if (file && !file.held && file.identity === identity) {
    throw new Error(
      `idetcd: this node (identity ${identity}) holds no name of ${config.pattern.source} now (${file.state}: ${file.reason})`,
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
 * TF_CONFIG for this node: every member as `name:port` by role, ordered by
 * ID (port from the member's record, else `port`, else 2222; all `worker`
 * without roles) and this node's type and index within its role.
 */
export async function tfConfig(config: IdetcdConfig): Promise<TfConfig> {
  const { view, identity } = await readMembers(config);
  const me = self(view, identity, config);
  return tfConfigOf({
    members: memberInfos(view, config.roles),
    selfId: me.id,
    fence: me.createRevision,
    roles: config.roles,
  }, { tfPort: config.port ?? DEFAULTS.tfPort });
}
