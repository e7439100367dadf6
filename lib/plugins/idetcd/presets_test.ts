/**
 * Golden tests of what a workload is told: every preset and every host list
 * format, for a 1-node cluster, a 3-node cluster (IDs 2, 3 and 5: index and
 * ID differ, and one member has two addresses) and a role-split TensorFlow
 * cluster (chief 1, ps 2-3, worker 4-8, evaluator 9). The expected values
 * are written out by hand, not computed, so a change of any name, order or
 * separator fails here first.
 *
 * The variable names were checked against the frameworks' sources:
 * torchrun's `env` action reads `PET_<DEST>` (torch/distributed/argparse_util.py)
 * for --nnodes, --node-rank, --master-addr, --master-port and --rdzv-backend;
 * JAX reads only JAX_COORDINATOR_ADDRESS (jax/_src/distributed.py), the
 * other two are for the script to pass; TensorFlow allows the evaluator to
 * be missing from the cluster spec and treats it as outside the training
 * cluster (multi_worker_util._validate_cluster_spec, estimator's RunConfig).
 */

import assert from "node:assert/strict";
import {
  baseEnv,
  type Cluster,
  formatHosts,
  jaxEnv,
  type MemberInfo,
  presetEnv,
  tfConfig,
  tfEnv,
  torchEnv,
} from "./presets.ts";
import { RoleMap } from "./roles.ts";

const NO_ROLES = new RoleMap([]);

/** One node, no port published (TF_CONFIG falls back to 2222, file_sd has no port). */
const ONE: Cluster = {
  members: [{ id: 1, name: "worker1.tf.local.", role: "", addresses: ["10.0.0.1"] }],
  selfId: 1,
  fence: 7,
  roles: NO_ROLES,
};

const THREE_MEMBERS: MemberInfo[] = [
  { id: 2, name: "worker2.tf.local.", role: "", addresses: ["10.0.0.2"], port: 2222 },
  {
    id: 3,
    name: "worker3.tf.local.",
    role: "",
    addresses: ["10.0.0.3", "2001:db8::3"],
    port: 2222,
  },
  { id: 5, name: "worker5.tf.local.", role: "", addresses: ["10.0.0.5"], port: 2222 },
];

/** Three nodes holding IDs 2, 3 and 5; this node is ID 3, index 1. */
const THREE: Cluster = { members: THREE_MEMBERS, selfId: 3, fence: 42, roles: NO_ROLES };

const TF_ROLES = new RoleMap([
  { name: "chief", ids: [1] },
  { name: "ps", ids: [2, 3] },
  { name: "worker", ids: [4, 5, 6, 7, 8] },
  { name: "evaluator", ids: [9] },
]);

const SPLIT_MEMBERS: MemberInfo[] = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((id) => ({
  id,
  name: `node${id}.tf.local.`,
  role: TF_ROLES.roleOf(id),
  addresses: [`10.0.1.${id}`],
  port: 2222,
}));

/** The role-split cluster as node `selfId` sees it, coordinated by the chief. */
function split(selfId: number): Cluster {
  return {
    members: SPLIT_MEMBERS,
    selfId,
    fence: 100 + selfId,
    roles: TF_ROLES,
    coordinatorRole: "chief",
  };
}

const SPLIT_NAMES =
  "node1.tf.local,node2.tf.local,node3.tf.local,node4.tf.local,node5.tf.local,node6.tf.local,node7.tf.local,node8.tf.local,node9.tf.local";

/** The role-split TF_CONFIG cluster spec: no evaluator (TensorFlow's rule). */
const SPLIT_SPEC = {
  chief: ["node1.tf.local:2222"],
  ps: ["node2.tf.local:2222", "node3.tf.local:2222"],
  worker: [
    "node4.tf.local:2222",
    "node5.tf.local:2222",
    "node6.tf.local:2222",
    "node7.tf.local:2222",
    "node8.tf.local:2222",
  ],
};

// ---------------------------------------------------------------------------
// The IDETCD_* environment.

Deno.test("presets golden: baseEnv, 1 node", () => {
  assert.deepEqual(baseEnv(ONE), {
    IDETCD_ID: "1",
    IDETCD_NAME: "worker1.tf.local",
    IDETCD_INDEX: "0",
    IDETCD_SIZE: "1",
    IDETCD_MEMBERS: "worker1.tf.local",
    IDETCD_COORDINATOR: "worker1.tf.local",
    IDETCD_FENCE: "7",
  });
});

Deno.test("presets golden: baseEnv, 3 nodes (ID 3 is index 1; the lowest ID coordinates)", () => {
  assert.deepEqual(baseEnv(THREE), {
    IDETCD_ID: "3",
    IDETCD_NAME: "worker3.tf.local",
    IDETCD_INDEX: "1",
    IDETCD_SIZE: "3",
    IDETCD_MEMBERS: "worker2.tf.local,worker3.tf.local,worker5.tf.local",
    IDETCD_COORDINATOR: "worker2.tf.local",
    IDETCD_FENCE: "42",
  });
});

Deno.test("presets golden: baseEnv, role split (role index and size)", () => {
  const common = {
    IDETCD_SIZE: "9",
    IDETCD_MEMBERS: SPLIT_NAMES,
    IDETCD_COORDINATOR: "node1.tf.local",
  };
  assert.deepEqual(baseEnv(split(1)), {
    IDETCD_ID: "1",
    IDETCD_NAME: "node1.tf.local",
    IDETCD_INDEX: "0",
    ...common,
    IDETCD_FENCE: "101",
    IDETCD_ROLE: "chief",
    IDETCD_ROLE_INDEX: "0",
    IDETCD_ROLE_SIZE: "1",
  });
  assert.deepEqual(baseEnv(split(3)), {
    IDETCD_ID: "3",
    IDETCD_NAME: "node3.tf.local",
    IDETCD_INDEX: "2",
    ...common,
    IDETCD_FENCE: "103",
    IDETCD_ROLE: "ps",
    IDETCD_ROLE_INDEX: "1",
    IDETCD_ROLE_SIZE: "2",
  });
  assert.deepEqual(baseEnv(split(6)), {
    IDETCD_ID: "6",
    IDETCD_NAME: "node6.tf.local",
    IDETCD_INDEX: "5",
    ...common,
    IDETCD_FENCE: "106",
    IDETCD_ROLE: "worker",
    IDETCD_ROLE_INDEX: "2",
    IDETCD_ROLE_SIZE: "5",
  });
  assert.deepEqual(baseEnv(split(9)), {
    IDETCD_ID: "9",
    IDETCD_NAME: "node9.tf.local",
    IDETCD_INDEX: "8",
    ...common,
    IDETCD_FENCE: "109",
    IDETCD_ROLE: "evaluator",
    IDETCD_ROLE_INDEX: "0",
    IDETCD_ROLE_SIZE: "1",
  });
});

// ---------------------------------------------------------------------------
// torch

Deno.test("presets golden: torch, 1 node, defaults (port 29500, no interface known)", () => {
  assert.deepEqual(torchEnv(ONE), {
    MASTER_ADDR: "worker1.tf.local",
    MASTER_PORT: "29500",
    RANK: "0",
    WORLD_SIZE: "1",
    LOCAL_RANK: "0",
    LOCAL_WORLD_SIZE: "1",
    PET_NNODES: "1",
    PET_NODE_RANK: "0",
    PET_MASTER_ADDR: "worker1.tf.local",
    PET_MASTER_PORT: "29500",
    PET_RDZV_BACKEND: "static",
  });
});

Deno.test("presets golden: torch, 3 nodes, coordinator port and interface", () => {
  assert.deepEqual(torchEnv(THREE, { coordinatorPort: 23456, interfaceName: "eth0" }), {
    MASTER_ADDR: "worker2.tf.local",
    MASTER_PORT: "23456",
    RANK: "1",
    WORLD_SIZE: "3",
    LOCAL_RANK: "0",
    LOCAL_WORLD_SIZE: "1",
    PET_NNODES: "3",
    PET_NODE_RANK: "1",
    PET_MASTER_ADDR: "worker2.tf.local",
    PET_MASTER_PORT: "23456",
    PET_RDZV_BACKEND: "static",
    GLOO_SOCKET_IFNAME: "eth0",
    NCCL_SOCKET_IFNAME: "eth0",
  });
});

Deno.test("presets golden: torch, role split: the coordinator role's first member is rank 0's address", () => {
  assert.deepEqual(torchEnv(split(6)), {
    MASTER_ADDR: "node1.tf.local",
    MASTER_PORT: "29500",
    RANK: "5",
    WORLD_SIZE: "9",
    LOCAL_RANK: "0",
    LOCAL_WORLD_SIZE: "1",
    PET_NNODES: "9",
    PET_NODE_RANK: "5",
    PET_MASTER_ADDR: "node1.tf.local",
    PET_MASTER_PORT: "29500",
    PET_RDZV_BACKEND: "static",
  });
  // Coordinated by the ps role: its first member (ID 2), not the lowest ID.
  const byPs = torchEnv({ ...split(6), coordinatorRole: "ps" });
  assert.equal(byPs.MASTER_ADDR, "node2.tf.local");
  assert.equal(byPs.PET_MASTER_ADDR, "node2.tf.local");
});

// ---------------------------------------------------------------------------
// jax

Deno.test("presets golden: jax, 1 node, 3 nodes, role split", () => {
  assert.deepEqual(jaxEnv(ONE), {
    JAX_COORDINATOR_ADDRESS: "worker1.tf.local:29500",
    JAX_NUM_PROCESSES: "1",
    JAX_PROCESS_ID: "0",
  });
  assert.deepEqual(jaxEnv(THREE, { coordinatorPort: 1234 }), {
    JAX_COORDINATOR_ADDRESS: "worker2.tf.local:1234",
    JAX_NUM_PROCESSES: "3",
    JAX_PROCESS_ID: "1",
  });
  assert.deepEqual(jaxEnv(split(9)), {
    JAX_COORDINATOR_ADDRESS: "node1.tf.local:29500",
    JAX_NUM_PROCESSES: "9",
    JAX_PROCESS_ID: "8",
  });
});

// ---------------------------------------------------------------------------
// tf

Deno.test("presets golden: tf, 1 node: the default port 2222 when none is published", () => {
  assert.deepEqual(tfConfig(ONE), {
    cluster: { worker: ["worker1.tf.local:2222"] },
    task: { type: "worker", index: 0 },
  });
  assert.deepEqual(tfEnv(ONE, { tfPort: 3333 }), {
    TF_CONFIG:
      '{"cluster":{"worker":["worker1.tf.local:3333"]},"task":{"type":"worker","index":0}}',
  });
});

Deno.test("presets golden: tf, 3 nodes: all workers, the published port wins over tfPort", () => {
  assert.deepEqual(tfEnv(THREE, { tfPort: 3333 }), {
    TF_CONFIG: '{"cluster":{"worker":["worker2.tf.local:2222","worker3.tf.local:2222",' +
      '"worker5.tf.local:2222"]},"task":{"type":"worker","index":1}}',
  });
});

Deno.test("presets golden: tf, role split: chief, ps, worker by ID; the evaluator only in its task", () => {
  assert.deepEqual(tfConfig(split(1)), { cluster: SPLIT_SPEC, task: { type: "chief", index: 0 } });
  assert.deepEqual(tfConfig(split(3)), { cluster: SPLIT_SPEC, task: { type: "ps", index: 1 } });
  assert.deepEqual(tfConfig(split(6)), { cluster: SPLIT_SPEC, task: { type: "worker", index: 2 } });
  assert.deepEqual(tfConfig(split(9)), {
    cluster: SPLIT_SPEC,
    task: { type: "evaluator", index: 0 },
  });
  // The exact text, key order included (chief, ps, worker: the order of their first IDs).
  assert.equal(
    tfEnv(split(6)).TF_CONFIG,
    '{"cluster":{"chief":["node1.tf.local:2222"],"ps":["node2.tf.local:2222","node3.tf.local:2222"],' +
      '"worker":["node4.tf.local:2222","node5.tf.local:2222","node6.tf.local:2222",' +
      '"node7.tf.local:2222","node8.tf.local:2222"]},"task":{"type":"worker","index":2}}',
  );
});

// ---------------------------------------------------------------------------
// presetEnv: every preset at once, and the host files of mpi and deepspeed.

Deno.test("presets golden: presetEnv with every preset, 1 node", () => {
  const { env, files } = presetEnv(ONE, ["torch", "jax", "tf", "mpi", "deepspeed"], {
    hostfileDir: "/run/job",
  });
  assert.deepEqual(env, {
    IDETCD_ID: "1",
    IDETCD_NAME: "worker1.tf.local",
    IDETCD_INDEX: "0",
    IDETCD_SIZE: "1",
    IDETCD_MEMBERS: "worker1.tf.local",
    IDETCD_COORDINATOR: "worker1.tf.local",
    IDETCD_FENCE: "7",
    MASTER_ADDR: "worker1.tf.local",
    MASTER_PORT: "29500",
    RANK: "0",
    WORLD_SIZE: "1",
    LOCAL_RANK: "0",
    LOCAL_WORLD_SIZE: "1",
    PET_NNODES: "1",
    PET_NODE_RANK: "0",
    PET_MASTER_ADDR: "worker1.tf.local",
    PET_MASTER_PORT: "29500",
    PET_RDZV_BACKEND: "static",
    JAX_COORDINATOR_ADDRESS: "worker1.tf.local:29500",
    JAX_NUM_PROCESSES: "1",
    JAX_PROCESS_ID: "0",
    TF_CONFIG:
      '{"cluster":{"worker":["worker1.tf.local:2222"]},"task":{"type":"worker","index":0}}',
    IDETCD_MPI_HOSTFILE: "/run/job/hostfile.mpi",
    IDETCD_DEEPSPEED_HOSTFILE: "/run/job/hostfile.deepspeed",
  });
  assert.deepEqual(
    files,
    new Map([
      ["/run/job/hostfile.mpi", "worker1.tf.local slots=1\n"],
      ["/run/job/hostfile.deepspeed", "worker1.tf.local slots=1\n"],
    ]),
  );
});

Deno.test("presets golden: presetEnv with every preset, 3 nodes, slots and interface", () => {
  const { env, files } = presetEnv(THREE, ["torch", "jax", "tf", "mpi", "deepspeed"], {
    hostfileDir: "/run/idetcd/job",
    slots: 4,
    interfaceName: "ens5",
    coordinatorPort: 29400,
  });
  assert.deepEqual(env, {
    IDETCD_ID: "3",
    IDETCD_NAME: "worker3.tf.local",
    IDETCD_INDEX: "1",
    IDETCD_SIZE: "3",
    IDETCD_MEMBERS: "worker2.tf.local,worker3.tf.local,worker5.tf.local",
    IDETCD_COORDINATOR: "worker2.tf.local",
    IDETCD_FENCE: "42",
    MASTER_ADDR: "worker2.tf.local",
    MASTER_PORT: "29400",
    RANK: "1",
    WORLD_SIZE: "3",
    LOCAL_RANK: "0",
    LOCAL_WORLD_SIZE: "1",
    PET_NNODES: "3",
    PET_NODE_RANK: "1",
    PET_MASTER_ADDR: "worker2.tf.local",
    PET_MASTER_PORT: "29400",
    PET_RDZV_BACKEND: "static",
    GLOO_SOCKET_IFNAME: "ens5",
    NCCL_SOCKET_IFNAME: "ens5",
    JAX_COORDINATOR_ADDRESS: "worker2.tf.local:29400",
    JAX_NUM_PROCESSES: "3",
    JAX_PROCESS_ID: "1",
    TF_CONFIG: '{"cluster":{"worker":["worker2.tf.local:2222","worker3.tf.local:2222",' +
      '"worker5.tf.local:2222"]},"task":{"type":"worker","index":1}}',
    IDETCD_MPI_HOSTFILE: "/run/idetcd/job/hostfile.mpi",
    IDETCD_DEEPSPEED_HOSTFILE: "/run/idetcd/job/hostfile.deepspeed",
  });
  const list = "worker2.tf.local slots=4\nworker3.tf.local slots=4\nworker5.tf.local slots=4\n";
  assert.deepEqual(
    files,
    new Map([
      ["/run/idetcd/job/hostfile.mpi", list],
      ["/run/idetcd/job/hostfile.deepspeed", list],
    ]),
  );
});

Deno.test("presets golden: presetEnv, role split evaluator: tf and mpi only", () => {
  const { env, files } = presetEnv(split(9), ["tf", "mpi"], { hostfileDir: "/tmp/h" });
  assert.deepEqual(env, {
    IDETCD_ID: "9",
    IDETCD_NAME: "node9.tf.local",
    IDETCD_INDEX: "8",
    IDETCD_SIZE: "9",
    IDETCD_MEMBERS: SPLIT_NAMES,
    IDETCD_COORDINATOR: "node1.tf.local",
    IDETCD_FENCE: "109",
    IDETCD_ROLE: "evaluator",
    IDETCD_ROLE_INDEX: "0",
    IDETCD_ROLE_SIZE: "1",
    TF_CONFIG:
      '{"cluster":{"chief":["node1.tf.local:2222"],"ps":["node2.tf.local:2222","node3.tf.local:2222"],' +
      '"worker":["node4.tf.local:2222","node5.tf.local:2222","node6.tf.local:2222",' +
      '"node7.tf.local:2222","node8.tf.local:2222"]},"task":{"type":"evaluator","index":0}}',
    IDETCD_MPI_HOSTFILE: "/tmp/h/hostfile.mpi",
  });
  assert.deepEqual(
    files,
    new Map([[
      "/tmp/h/hostfile.mpi",
      "node1.tf.local slots=1\nnode2.tf.local slots=1\nnode3.tf.local slots=1\n" +
      "node4.tf.local slots=1\nnode5.tf.local slots=1\nnode6.tf.local slots=1\n" +
      "node7.tf.local slots=1\nnode8.tf.local slots=1\nnode9.tf.local slots=1\n",
    ]]),
  );
});

Deno.test("presets golden: presetEnv without presets is the IDETCD_* environment alone", () => {
  assert.deepEqual(presetEnv(THREE, []), { env: baseEnv(THREE), files: new Map() });
});

// ---------------------------------------------------------------------------
// Host list formats.

Deno.test("hosts golden: plain", () => {
  assert.equal(formatHosts(ONE.members, "plain"), "worker1.tf.local\n");
  assert.equal(
    formatHosts(THREE_MEMBERS, "plain"),
    "worker2.tf.local\nworker3.tf.local\nworker5.tf.local\n",
  );
  assert.equal(
    formatHosts(SPLIT_MEMBERS, "plain"),
    "node1.tf.local\nnode2.tf.local\nnode3.tf.local\nnode4.tf.local\nnode5.tf.local\n" +
      "node6.tf.local\nnode7.tf.local\nnode8.tf.local\nnode9.tf.local\n",
  );
  assert.equal(formatHosts([], "plain"), "");
});

Deno.test("hosts golden: mpi and deepspeed (name slots=N)", () => {
  for (const format of ["mpi", "deepspeed"] as const) {
    assert.equal(formatHosts(ONE.members, format), "worker1.tf.local slots=1\n");
    assert.equal(
      formatHosts(THREE_MEMBERS, format, { slots: 8 }),
      "worker2.tf.local slots=8\nworker3.tf.local slots=8\nworker5.tf.local slots=8\n",
    );
    assert.equal(
      formatHosts(SPLIT_MEMBERS, format, { slots: 2 }),
      "node1.tf.local slots=2\nnode2.tf.local slots=2\nnode3.tf.local slots=2\n" +
        "node4.tf.local slots=2\nnode5.tf.local slots=2\nnode6.tf.local slots=2\n" +
        "node7.tf.local slots=2\nnode8.tf.local slots=2\nnode9.tf.local slots=2\n",
    );
  }
});

Deno.test("hosts golden: hosts (/etc/hosts lines, every address)", () => {
  assert.equal(formatHosts(ONE.members, "hosts"), "10.0.0.1\tworker1.tf.local worker1\n");
  assert.equal(
    formatHosts(THREE_MEMBERS, "hosts"),
    "10.0.0.2\tworker2.tf.local worker2\n" +
      "10.0.0.3\tworker3.tf.local worker3\n" +
      "2001:db8::3\tworker3.tf.local worker3\n" +
      "10.0.0.5\tworker5.tf.local worker5\n",
  );
  assert.equal(
    formatHosts(SPLIT_MEMBERS, "hosts"),
    "10.0.1.1\tnode1.tf.local node1\n10.0.1.2\tnode2.tf.local node2\n" +
      "10.0.1.3\tnode3.tf.local node3\n10.0.1.4\tnode4.tf.local node4\n" +
      "10.0.1.5\tnode5.tf.local node5\n10.0.1.6\tnode6.tf.local node6\n" +
      "10.0.1.7\tnode7.tf.local node7\n10.0.1.8\tnode8.tf.local node8\n" +
      "10.0.1.9\tnode9.tf.local node9\n",
  );
});

Deno.test("hosts golden: file_sd, 1 node without a port, and with --port", () => {
  assert.equal(
    formatHosts(ONE.members, "file_sd"),
    `[
  {
    "targets": [
      "worker1.tf.local"
    ],
    "labels": {
      "idetcd_id": "1",
      "idetcd_name": "worker1.tf.local"
    }
  }
]
`,
  );
  assert.equal(
    formatHosts(ONE.members, "file_sd", { port: 9100 }),
    `[
  {
    "targets": [
      "worker1.tf.local:9100"
    ],
    "labels": {
      "idetcd_id": "1",
      "idetcd_name": "worker1.tf.local"
    }
  }
]
`,
  );
});

Deno.test("hosts golden: file_sd, 3 nodes: each member's published port", () => {
  assert.equal(
    formatHosts(THREE_MEMBERS, "file_sd"),
    `[
  {
    "targets": [
      "worker2.tf.local:2222"
    ],
    "labels": {
      "idetcd_id": "2",
      "idetcd_name": "worker2.tf.local"
    }
  },
  {
    "targets": [
      "worker3.tf.local:2222"
    ],
    "labels": {
      "idetcd_id": "3",
      "idetcd_name": "worker3.tf.local"
    }
  },
  {
    "targets": [
      "worker5.tf.local:2222"
    ],
    "labels": {
      "idetcd_id": "5",
      "idetcd_name": "worker5.tf.local"
    }
  }
]
`,
  );
});

Deno.test("hosts golden: file_sd, role split: the role label, --port for every target", () => {
  const text = formatHosts(SPLIT_MEMBERS, "file_sd", { port: 9100 });
  assert.deepEqual(JSON.parse(text), [
    {
      targets: ["node1.tf.local:9100"],
      labels: { idetcd_id: "1", idetcd_name: "node1.tf.local", idetcd_role: "chief" },
    },
    {
      targets: ["node2.tf.local:9100"],
      labels: { idetcd_id: "2", idetcd_name: "node2.tf.local", idetcd_role: "ps" },
    },
    {
      targets: ["node3.tf.local:9100"],
      labels: { idetcd_id: "3", idetcd_name: "node3.tf.local", idetcd_role: "ps" },
    },
    {
      targets: ["node4.tf.local:9100"],
      labels: { idetcd_id: "4", idetcd_name: "node4.tf.local", idetcd_role: "worker" },
    },
    {
      targets: ["node5.tf.local:9100"],
      labels: { idetcd_id: "5", idetcd_name: "node5.tf.local", idetcd_role: "worker" },
    },
    {
      targets: ["node6.tf.local:9100"],
      labels: { idetcd_id: "6", idetcd_name: "node6.tf.local", idetcd_role: "worker" },
    },
    {
      targets: ["node7.tf.local:9100"],
      labels: { idetcd_id: "7", idetcd_name: "node7.tf.local", idetcd_role: "worker" },
    },
    {
      targets: ["node8.tf.local:9100"],
      labels: { idetcd_id: "8", idetcd_name: "node8.tf.local", idetcd_role: "worker" },
    },
    {
      targets: ["node9.tf.local:9100"],
      labels: { idetcd_id: "9", idetcd_name: "node9.tf.local", idetcd_role: "evaluator" },
    },
  ]);
  // The text itself: two-space JSON, one trailing newline.
  assert.ok(
    text.startsWith(
      '[\n  {\n    "targets": [\n      "node1.tf.local:9100"\n    ],\n    "labels": {\n' +
        '      "idetcd_id": "1",\n      "idetcd_name": "node1.tf.local",\n' +
        '      "idetcd_role": "chief"\n    }\n  },\n',
    ),
  );
  assert.ok(text.endsWith('      "idetcd_role": "evaluator"\n    }\n  }\n]\n'));
});
