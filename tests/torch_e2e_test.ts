/**
 * A real framework end to end (issue #11): Debian's PyTorch (`python3-torch`)
 * on four nodes in network namespaces, each resolving the cluster's names
 * through its own idetcd (`/etc/netns/NAME/resolv.conf` names only that
 * node's address, where `idetcd exec`, the node's only server, answers on
 * port 53). Each node runs `idetcd exec --wait-all --preset torch` around
 * tests/fixtures/allreduce.py, which joins a gloo process group by `env://`
 * and all-reduces its rank: every node must print the sum 0+1+2+3 = 6 with
 * a distinct rank and exit 0. Then once more under torchrun
 * (`python3 -m torch.distributed.run --nproc_per_node=1`), driven only by
 * the `PET_*` variables of the preset.
 *
 * Reported as IGNORED, with the reason, when no python3 on this machine can
 * `import torch, torch.distributed` with gloo (tests/helpers/prereqs.ts
 * installs `python3-torch` with apt when it can), or when network namespaces
 * are not available (not root).
 *
 * @module
 */

import assert from "node:assert/strict";
import { which } from "../scripts/system.ts";
import {
  createTestNetwork,
  needsNetns,
  startEtcdOn,
  type TestHost,
  writeResolvConf,
} from "./helpers/netns.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const FIXTURE = new URL("./fixtures/allreduce.py", import.meta.url).pathname;
const ZONE = "tf.local.";
const NODES = 4;
/** Stagger of the four starts, ms: the barrier, not luck, must line them up. */
const STAGGER_MS = [0, 450, 900, 1500];
/** The whole run of one test, from the first start to the last exit. */
const RUN_DEADLINE_MS = 90_000;
const decoder = new TextDecoder();

// ---------------------------------------------------------------------------
// Which python has torch

/** A python3 that imports torch with gloo, and torch's version; or why there is none. */
type TorchPython = { ok: true; python: string; version: string } | { ok: false; reason: string };

const PROBE = [
  "import torch, torch.distributed as d, torch.distributed.run",
  "assert d.is_available() and d.is_gloo_available(), 'torch.distributed without gloo'",
  "print(torch.__version__)",
].join("\n");

/**
 * The first python3 (on PATH, then Debian's /usr/bin/python3, which is where
 * apt's python3-torch lives when PATH's python3 is another one, e.g. pyenv's)
 * for which the probe succeeds; only `$IDETCD_TORCH_PYTHON` when that is set.
 */
function findTorchPython(): TorchPython {
  const chosen = Deno.env.get("IDETCD_TORCH_PYTHON");
  const candidates = chosen
    ? [chosen]
    : [...new Set([which("python3"), "/usr/bin/python3"].filter(Boolean))];
  const failures: string[] = [];
  for (const python of candidates as string[]) {
    try {
      const out = new Deno.Command(python, {
        args: ["-c", PROBE],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).outputSync();
      if (out.success) return { ok: true, python, version: decoder.decode(out.stdout).trim() };
      const last = decoder.decode(out.stderr).trim().split("\n").pop() ?? "failed";
      failures.push(`${python}: ${last}`);
    } catch (err) {
      failures.push(`${python}: ${(err as Error).message}`);
    }
  }
  if (candidates.length === 0) return { ok: false, reason: "no python3 on PATH" };
  return {
    ok: false,
    reason: `python3 -c 'import torch, torch.distributed' fails (${
      failures.join("; ")
    }); install Debian's python3-torch`,
  };
}

/** The probe's result, once asked (importing torch takes seconds: only where namespaces work). */
let probed: TorchPython | undefined;
function torchPython(): TorchPython {
  if (!probed) {
    probed = findTorchPython();
    if (!probed.ok) console.warn(`torch end-to-end tests are ignored: ${probed.reason}`);
  }
  return probed;
}

/** Needs namespaces (needsNetns) and a python with torch; ignored with the reason otherwise. */
function needsTorch(definition: Deno.TestDefinition): Deno.TestDefinition {
  const withNetns = needsNetns(definition);
  if (withNetns.ignore) return withNetns;
  const torch = torchPython();
  if (torch.ok) return withNetns;
  return { ...definition, name: `${definition.name} (ignored: ${torch.reason})`, ignore: true };
}

/** The python that runs the script (only called by tests that are not ignored). */
function python(): string {
  const torch = torchPython();
  if (!torch.ok) throw new Error(torch.reason);
  return torch.python;
}

// ---------------------------------------------------------------------------
// Processes

/** The pids of every descendant of `pid` (children first), from /proc. */
function descendants(pid: number): number[] {
  const found: number[] = [];
  let tasks: string[] = [];
  try {
    tasks = [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => e.name);
  } catch {
    return found;
  }
  for (const tid of tasks) {
    let children = "";
    try {
      children = Deno.readTextFileSync(`/proc/${pid}/task/${tid}/children`);
    } catch {
      continue;
    }
    for (const child of children.trim().split(/\s+/).filter(Boolean).map(Number)) {
      found.push(child, ...descendants(child));
    }
  }
  return found;
}

/** One node: `idetcd exec` inside its namespace, with its output read as it comes. */
interface Node {
  host: TestHost;
  label: string;
  child: Deno.ChildProcess;
  /** When it was started (Date.now(), the clock python's time.time() shares). */
  startedAt: number;
  /** Resolves with the status once the output is read to the end. */
  done: Promise<Deno.CommandStatus>;
  /** When it exited (Date.now()), once it has. */
  exitedAt?: number;
  output(): string;
}

function startNode(host: TestHost, label: string, conf: string, runtime: string, cmd: string[]) {
  const args = [
    "run",
    "-A",
    MAIN,
    "-conf",
    conf,
    "exec",
    "--wait-all",
    "--wait-timeout",
    "120s",
    "--preset",
    "torch",
    "--",
    ...cmd,
  ];
  const startedAt = Date.now();
  const child = host.deno(args, {
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", IDETCD_RUNTIME_DIR: runtime, PYTHONUNBUFFERED: "1" },
  });
  let text = "";
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const d = new TextDecoder();
    for await (const chunk of stream) text += d.decode(chunk, { stream: true });
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const node: Node = {
    host,
    label,
    child,
    startedAt,
    done: child.status.then(async (status) => {
      node.exitedAt = Date.now();
      await pumps;
      return status;
    }),
    output: () => text,
  };
  return node;
}

/**
 * Stops a node that is still running: SIGTERM to exec (it passes it on to the
 * command), then after 5 s SIGKILL to exec and to every process under it.
 */
async function stopNode(node: Node): Promise<void> {
  if (node.exitedAt !== undefined) return;
  try {
    node.child.kill("SIGTERM");
  } catch {
    // already gone
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const killed = await Promise.race([
    node.done.then(() => false),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), 5_000))),
  ]);
  clearTimeout(timer);
  if (!killed) return;
  for (const pid of [node.child.pid, ...descendants(node.child.pid)]) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  await node.done;
}

// ---------------------------------------------------------------------------
// The cluster run

/** The line allreduce.py prints. */
interface Report {
  rank: number;
  world: number;
  sum: number;
  torch: string;
  name: string;
  names: string[];
  master: string;
  master_ip: string;
  master_port: string;
  ifname: string | null;
  torchrun: boolean;
  group_rank: string | null;
  /** When the script's process started (from /proc, 10 ms ticks), s; null without /proc. */
  created: number | null;
  /** When its parent (torchrun's agent, or exec) started, s. */
  parent_created: number | null;
  started: number;
  imported: number;
  joined: number;
  reduced: number;
}

function reportOf(node: Node): Report {
  const line = node.output().split("\n").find((l) => l.startsWith("ALLREDUCE "));
  assert.ok(line, `${node.label} printed no ALLREDUCE line:\n${node.output()}`);
  return JSON.parse(line.slice("ALLREDUCE ".length)) as Report;
}

/** One node's Corefile: idetcd on port 53 of its own address, the only server of the node. */
async function writeNodeConf(dir: string, host: TestHost, label: string, endpoint: string) {
  const conf = `${dir}/Corefile`;
  await Deno.writeTextFile(
    conf,
    [
      `.:53 {`,
      `    bind ${host.address}`,
      `    idetcd {`,
      `        endpoint ${endpoint}`,
      `        limit ${NODES}`,
      `        pattern worker{{.ID}}.${ZONE}`,
      `        address ${host.address}`,
      `        identity ${label}`,
      `        lease 10s`,
      `    }`,
      `}`,
      ``,
    ].join("\n"),
  );
  return conf;
}

/**
 * Four namespaces, one etcd on the bridge, `idetcd exec ... -- cmd` on every
 * node at staggered moments; asserts the all-reduce and prints the timings.
 */
async function runCluster(
  what: string,
  cmd: (nodeDir: string) => string[],
  torchrun: boolean,
): Promise<void> {
  await using net = await createTestNetwork({ hosts: NODES });
  await using etcd = await startEtcdOn(net.etcdAddress);
  const dir = await Deno.makeTempDir({ prefix: "idetcd-torch-" });
  const nodes: Node[] = [];
  try {
    const confs: string[] = [];
    for (const host of net.hosts) {
      await writeResolvConf(host, host.address);
      await Deno.mkdir(`${dir}/n${host.index}/rt`, { recursive: true });
      confs.push(
        await writeNodeConf(`${dir}/n${host.index}`, host, `node-${host.index}`, etcd.endpoint),
      );
    }
    // Inside each namespace, /etc/resolv.conf names that node's own idetcd and nothing else.
    for (const host of net.hosts) {
      const out = await host.output("cat", ["/etc/resolv.conf"]);
      assert.equal(decoder.decode(out.stdout), `nameserver ${host.address}\n`);
    }

    const t0 = Date.now();
    for (const [k, host] of net.hosts.entries()) {
      const wait = t0 + STAGGER_MS[k] - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const nodeDir = `${dir}/n${host.index}`;
      nodes.push(startNode(host, `node-${host.index}`, confs[k], `${nodeDir}/rt`, cmd(nodeDir)));
    }

    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<"deadline">((resolve) => {
      timer = setTimeout(() => resolve("deadline"), RUN_DEADLINE_MS);
    });
    const all = Promise.all(nodes.map((n) => n.done));
    const statuses = await Promise.race([all, deadline]);
    clearTimeout(timer);
    if (statuses === "deadline") {
      const running = nodes.filter((n) => n.exitedAt === undefined).map((n) => n.label);
      assert.fail(
        `${what}: ${running.join(", ")} still running after ${RUN_DEADLINE_MS / 1000}s:\n${
          nodes.map((n) => `--- ${n.label}\n${n.output()}`).join("\n")
        }`,
      );
    }
    for (const [k, status] of statuses.entries()) {
      assert.equal(
        status.code,
        0,
        `${nodes[k].label} exited ${status.code}${status.signal ? ` (${status.signal})` : ""}:\n${
          nodes[k].output()
        }`,
      );
    }

    const reports = nodes.map(reportOf);
    const byName = new Map(reports.map((r, k) => [r.name, net.hosts[k]]));
    const names = Array.from({ length: NODES }, (_, k) => `worker${k + 1}.${ZONE.slice(0, -1)}`);
    assert.deepEqual([...byName.keys()].sort(), names, "every node holds a distinct name");
    const expectedSum = (NODES * (NODES - 1)) / 2;
    for (const r of reports) {
      assert.equal(r.sum, expectedSum, `${r.name}: all-reduce sum`);
      assert.equal(r.world, NODES);
      assert.equal(r.torchrun, torchrun, `${r.name}: under torchrun`);
      // Rank = index in ID order: workerN has rank N-1, under torchrun too (PET_NODE_RANK).
      assert.equal(r.rank, Number(r.name.match(/^worker(\d+)\./)![1]) - 1, `${r.name}: rank`);
      assert.equal(r.master, names[0]);
      assert.equal(r.master_port, "29500");
      // The coordinator's name, resolved by this node's own idetcd, is the address of worker1's node.
      assert.equal(r.master_ip, byName.get(names[0])!.address, `${r.name}: MASTER_ADDR resolved`);
      assert.equal(r.ifname, "eth0", `${r.name}: GLOO_SOCKET_IFNAME`);
      assert.deepEqual(r.names, names, `${r.name}: the group's members in rank order`);
    }
    assert.deepEqual(
      reports.map((r) => r.rank).sort(),
      Array.from({ length: NODES }, (_, k) => k),
      "distinct ranks",
    );

    // When exec started its command on each node: the moment that node's barrier opened
    // (torchrun's agent is the command under torchrun, the script otherwise).
    const released = reports.map((r) =>
      1000 * ((torchrun ? r.parent_created : r.created) ?? r.started)
    );
    // The barrier opens with the fourth claim, which comes after the fourth start (10 ms ticks).
    const lastSpawn = Math.max(...nodes.map((n) => n.startedAt));
    for (const [k, at] of released.entries()) {
      assert.ok(
        at + 20 >= lastSpawn,
        `${nodes[k].label}: its command started ${lastSpawn - at} ms before the last node did`,
      );
    }
    const s = (ms: number) => (ms / 1000).toFixed(2);
    const barrier = Math.min(...released);
    const lastSum = Math.max(...reports.map((r) => r.reduced * 1000));
    const lastExit = Math.max(...nodes.map((n) => n.exitedAt!));
    console.log(
      `${what} (torch ${reports[0].torch}, ${python()}): ` +
        `nodes started at ${nodes.map((n) => s(n.startedAt - t0)).join("/")}s; ` +
        `barrier opened at ${s(barrier - t0)}s (commands started ${
          released.map((at) => s(at - t0)).join("/")
        }s); barrier to sum ${s(lastSum - barrier)}s; all exited at ${s(lastExit - t0)}s`,
    );
    for (const [k, r] of reports.entries()) {
      console.log(
        `  ${nodes[k].label} ${r.name} rank ${r.rank}: command ${s(released[k] - t0)}s, script ${
          s(r.started * 1000 - t0)
        }s, import torch ${s((r.imported - r.started) * 1000)}s, init_process_group ${
          s((r.joined - r.imported) * 1000)
        }s, all_reduce ${s((r.reduced - r.joined) * 1000)}s, sum ${r.sum}, exit ${
          s(nodes[k].exitedAt! - t0)
        }s`,
      );
    }
  } finally {
    await Promise.all(nodes.map(stopNode));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test(needsTorch({
  name:
    "torch: four nodes, each resolving through its own idetcd, run idetcd exec --wait-all --preset torch around a gloo all_reduce: same sum, distinct ranks",
  async fn() {
    await runCluster("idetcd exec -- allreduce.py", () => [python(), FIXTURE], false);
  },
}));

Deno.test(needsTorch({
  name:
    "torch: the same under torchrun (python3 -m torch.distributed.run --nproc_per_node=1) driven only by the preset's PET_* variables",
  async fn() {
    // No rendezvous flags: --nnodes, --node_rank, --master_addr, --master_port and
    // --rdzv_backend come from PET_*. --redirects/--tee only work around Debian 12's torch 1.13
    // on Python 3.11, where the default "--redirects 0" crashes every launch
    // (Std.from_str("0") is None: Python 3.11 no longer iterates IntFlag's zero member, so
    // to_map(None) raises AttributeError); redirecting stderr (2) to a file and teeing it
    // back leaves the launch otherwise as it was. --log_dir keeps those files in the test's folder;
    // --monitor_interval=1 (default 5 s) only shortens how long the agent takes to see the end.
    await runCluster(
      "idetcd exec -- torchrun allreduce.py",
      (nodeDir) => [
        python(),
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=1",
        "--monitor_interval=1",
        "--redirects=2",
        "--tee=2",
        `--log_dir=${nodeDir}/torchrun-logs`,
        FIXTURE,
      ],
      true,
    );
  },
}));
