/**
 * What a workload is told about the cluster: the `IDETCD_*` environment that
 * `idetcd exec` always sets, the framework presets (torch, jax, tf, mpi,
 * deepspeed), TF_CONFIG, and the host lists of `idetcd hosts`. Pure
 * functions over one frozen membership, so every node computes the same
 * answer from the same members; golden-tested in presets_test.ts.
 *
 * Names, never IP addresses: the nodes resolve each other through idetcd.
 *
 * @module
 */

import type { RoleMap } from "./roles.ts";

/** One member as the workload sees it. */
export interface MemberInfo {
  /** Its claimed ID; members are ordered by it, and index and rank follow that order. */
  id: number;
  /** Fully qualified, with the trailing dot ("worker4.tf.local."). */
  name: string;
  /** Its role ("" without roles). */
  role: string;
  /**
   * The addresses it advertises: the `hosts` format lists them, and exec finds this node's
   * interface by them.
   */
  addresses: readonly string[];
  /** The port it published (`port`), if any. */
  port?: number;
}

/** The membership a workload starts with, and who this node is in it. */
export interface Cluster {
  /** Members in ID order. */
  members: readonly MemberInfo[];
  /** This node's ID. */
  selfId: number;
  /** The claim's fencing token (its lock's create_revision). */
  fence: number;
  /** The Corefile's roles (each member's `role` already names its own). */
  roles: RoleMap;
  /** The role whose first member coordinates; undefined: the lowest ID. */
  coordinatorRole?: string;
}

/** Settings of the presets. */
export interface PresetOptions {
  /** Port of the coordinator (torch MASTER_PORT, JAX coordinator), default {@link DEFAULT_COORDINATOR_PORT}. */
  coordinatorPort?: number;
  /** TF_CONFIG port when a member published none, default 2222. */
  tfPort?: number;
  /** Slots per host in host files, default 1. */
  slots?: number;
  /** The network interface of this node's advertised address (GLOO/NCCL_SOCKET_IFNAME). */
  interfaceName?: string;
  /** Where the mpi and deepspeed presets write their host files. */
  hostfileDir?: string;
}

/** torch's own default MASTER_PORT, used for every coordinator. */
export const DEFAULT_COORDINATOR_PORT = 29500;
/** TF_CONFIG's port when none is published. */
export const DEFAULT_TF_PORT = 2222;

/** The presets `--preset` accepts. */
export const PRESETS = ["torch", "jax", "tf", "mpi", "deepspeed"] as const;
/** One preset's name. */
export type PresetName = typeof PRESETS[number];

/** A name without its trailing dot, as programs expect host names. */
export function hostName(name: string): string {
  return name.endsWith(".") ? name.slice(0, -1) : name;
}

/** This node's member record; throws when the membership does not include it. */
export function self(cluster: Cluster): MemberInfo {
  const me = cluster.members.find((m) => m.id === cluster.selfId);
  if (!me) throw new Error(`idetcd: ID ${cluster.selfId} is not among the members`);
  return me;
}

/** The coordinator: the first member of the coordinator role, else the lowest ID. */
export function coordinator(cluster: Cluster): MemberInfo {
  const { members, coordinatorRole } = cluster;
  const first = coordinatorRole
    ? members.find((m) => m.role === coordinatorRole) ?? members[0]
    : members[0];
  if (!first) throw new Error("idetcd: the cluster has no members");
  return first;
}

/** The environment `idetcd exec` always sets. */
export function baseEnv(cluster: Cluster): Record<string, string> {
  const me = self(cluster);
  const index = cluster.members.indexOf(me);
  const env: Record<string, string> = {
    IDETCD_ID: String(me.id),
    IDETCD_NAME: hostName(me.name),
    IDETCD_INDEX: String(index),
    IDETCD_SIZE: String(cluster.members.length),
    IDETCD_MEMBERS: cluster.members.map((m) => hostName(m.name)).join(","),
    IDETCD_COORDINATOR: hostName(coordinator(cluster).name),
    IDETCD_FENCE: String(cluster.fence),
  };
  if (me.role) {
    const peers = cluster.members.filter((m) => m.role === me.role);
    env.IDETCD_ROLE = me.role;
    env.IDETCD_ROLE_INDEX = String(peers.indexOf(me));
    env.IDETCD_ROLE_SIZE = String(peers.length);
  }
  return env;
}

/**
 * torch: the c10d `env://` variables for one process per node, and
 * torchrun's own `PET_*` (its flags read them), with the static rendezvous,
 * so that a bare `torchrun train.py` needs no flags; gloo and NCCL are told
 * the interface of the advertised address so they do not bind the
 * hostname's 127.0.1.1 or a docker bridge.
 */
export function torchEnv(cluster: Cluster, options: PresetOptions = {}): Record<string, string> {
  const me = self(cluster);
  const master = hostName(coordinator(cluster).name);
  const port = String(options.coordinatorPort ?? DEFAULT_COORDINATOR_PORT);
  const rank = String(cluster.members.indexOf(me));
  const size = String(cluster.members.length);
  const env: Record<string, string> = {
    MASTER_ADDR: master,
    MASTER_PORT: port,
    RANK: rank,
    WORLD_SIZE: size,
    LOCAL_RANK: "0",
    LOCAL_WORLD_SIZE: "1",
    PET_NNODES: size,
    PET_NODE_RANK: rank,
    PET_MASTER_ADDR: master,
    PET_MASTER_PORT: port,
    PET_RDZV_BACKEND: "static",
  };
  if (options.interfaceName) {
    env.GLOO_SOCKET_IFNAME = options.interfaceName;
    env.NCCL_SOCKET_IFNAME = options.interfaceName;
  }
  return env;
}

/**
 * jax: the coordinator, the process count and this process's ID for
 * `jax.distributed.initialize`. JAX itself reads only
 * JAX_COORDINATOR_ADDRESS from the environment (jax/_src/distributed.py);
 * without arguments it takes the count and the ID from a cluster it detects
 * (SLURM, Open MPI, Kubernetes, Cloud TPU: jax/_src/clusters/), none of
 * which applies here, and reads no JAX_NUM_PROCESSES or JAX_PROCESS_ID. So
 * a script passes these two:
 * `jax.distributed.initialize(num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
 * process_id=int(os.environ["JAX_PROCESS_ID"]))`.
 */
export function jaxEnv(cluster: Cluster, options: PresetOptions = {}): Record<string, string> {
  const me = self(cluster);
  const port = options.coordinatorPort ?? DEFAULT_COORDINATOR_PORT;
  return {
    JAX_COORDINATOR_ADDRESS: `${hostName(coordinator(cluster).name)}:${port}`,
    JAX_NUM_PROCESSES: String(cluster.members.length),
    JAX_PROCESS_ID: String(cluster.members.indexOf(me)),
  };
}

/** TensorFlow's TF_CONFIG (TFConfigClusterResolver's format). */
export interface TfConfig {
  /** Each task type ("worker", "chief", "ps"...) and its members' `host:port`, in ID order. */
  cluster: Record<string, string[]>;
  /** This node's task type and its index among the members of that type. */
  task: { type: string; index: number };
}

/**
 * TF_CONFIG for this node: every member as `name:port` by role in ID order
 * (all `worker` without roles). An evaluator is not part of the cluster
 * spec (TensorFlow's rule), only its task names it.
 */
export function tfConfig(cluster: Cluster, options: PresetOptions = {}): TfConfig {
  const me = self(cluster);
  const typeOf = (m: MemberInfo) => m.role || "worker";
  const address = (m: MemberInfo) =>
    `${hostName(m.name)}:${m.port ?? options.tfPort ?? DEFAULT_TF_PORT}`;
  const spec: Record<string, string[]> = {};
  for (const m of cluster.members) {
    const type = typeOf(m);
    if (type === "evaluator") continue;
    (spec[type] ??= []).push(address(m));
  }
  const peers = cluster.members.filter((m) => typeOf(m) === typeOf(me));
  return { cluster: spec, task: { type: typeOf(me), index: peers.indexOf(me) } };
}

/** The tf preset: TF_CONFIG as JSON. */
export function tfEnv(cluster: Cluster, options: PresetOptions = {}): Record<string, string> {
  return { TF_CONFIG: JSON.stringify(tfConfig(cluster, options)) };
}

/** The host list formats of `idetcd hosts`. */
export const HOST_FORMATS = ["plain", "mpi", "deepspeed", "hosts", "file_sd"] as const;
/** One host list format. */
export type HostFormat = typeof HOST_FORMATS[number];

/**
 * The members in one format, in ID order:
 * - `plain`: one name a line;
 * - `mpi`: Open MPI's hostfile, `name slots=N`;
 * - `deepspeed`: DeepSpeed's hostfile, `name slots=N`;
 * - `hosts`: `/etc/hosts` lines, `ADDRESS name short`, every address;
 * - `file_sd`: Prometheus file-based service discovery JSON, one target group a member.
 */
export function formatHosts(
  members: readonly MemberInfo[],
  format: HostFormat,
  options: { slots?: number; port?: number } = {},
): string {
  const slots = options.slots ?? 1;
  switch (format) {
    case "plain":
      return members.map((m) => hostName(m.name) + "\n").join("");
    case "mpi":
    case "deepspeed":
      return members.map((m) => `${hostName(m.name)} slots=${slots}\n`).join("");
    case "hosts":
      return members.flatMap((m) =>
        m.addresses.map((a) => `${a}\t${hostName(m.name)} ${hostName(m.name).split(".")[0]}\n`)
      ).join("");
    case "file_sd":
      return JSON.stringify(
        members.map((m) => {
          const port = options.port ?? m.port;
          const target = port === undefined ? hostName(m.name) : `${hostName(m.name)}:${port}`;
          return {
            targets: [target],
            labels: {
              idetcd_id: String(m.id),
              idetcd_name: hostName(m.name),
              ...(m.role ? { idetcd_role: m.role } : {}),
            },
          };
        }),
        null,
        2,
      ) + "\n";
  }
}

/** The host files the mpi and deepspeed presets write: file name and the variable naming it. */
export const HOSTFILES: Record<"mpi" | "deepspeed", { file: string; variable: string }> = {
  mpi: { file: "hostfile.mpi", variable: "IDETCD_MPI_HOSTFILE" },
  deepspeed: { file: "hostfile.deepspeed", variable: "IDETCD_DEEPSPEED_HOSTFILE" },
};

/** The environment and files of the chosen presets (files: path -> content). */
export function presetEnv(
  cluster: Cluster,
  presets: readonly PresetName[],
  options: PresetOptions = {},
): { env: Record<string, string>; files: Map<string, string> } {
  const env: Record<string, string> = baseEnv(cluster);
  const files = new Map<string, string>();
  for (const preset of presets) {
    switch (preset) {
      case "torch":
        Object.assign(env, torchEnv(cluster, options));
        break;
      case "jax":
        Object.assign(env, jaxEnv(cluster, options));
        break;
      case "tf":
        Object.assign(env, tfEnv(cluster, options));
        break;
      case "mpi":
      case "deepspeed": {
        const dir = options.hostfileDir ?? ".";
        const path = `${dir}/${HOSTFILES[preset].file}`;
        files.set(path, formatHosts(cluster.members, preset, { slots: options.slots }));
        env[HOSTFILES[preset].variable] = path;
        break;
      }
    }
  }
  return { env, files };
}
