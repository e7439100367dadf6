/**
 * `idetcd exec` against a real etcd with real node processes: the barrier,
 * the environment, roles, the node's service, and stopping the workload
 * before another node can hold its name.
 */

import assert from "node:assert/strict";
import { createClient } from "../lib/etcd/client.ts";
import { EXIT_BARRIER_TIMEOUT, EXIT_NAME_LOST } from "../lib/plugins/idetcd/exec.ts";
import { type EtcdScope, sharedEtcd } from "./helpers/etcd.ts";
import { createTestNetwork, needsNetns, startEtcdOn } from "./helpers/netns.ts";
import { startServer, writeCorefile } from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const ZONE = "tf.local.";

/** A process started with piped output, read as it comes. */
interface Proc {
  child: Deno.ChildProcess;
  out: () => string;
  err: () => string;
  status: Promise<Deno.CommandStatus>;
}

function spawn(cmd: string, args: string[], env: Record<string, string> = {}): Proc {
  const child = new Deno.Command(cmd, {
    args,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  let err = "";
  const pump = async (s: ReadableStream<Uint8Array>, add: (t: string) => void) => {
    const d = new TextDecoder();
    for await (const c of s) add(d.decode(c, { stream: true }));
  };
  const pumps = Promise.all([
    pump(child.stdout, (t) => (out += t)),
    pump(child.stderr, (t) => (err += t)),
  ]);
  const status = child.status.then(async (s) => {
    await pumps;
    return s;
  });
  return { child, out: () => out, err: () => err, status };
}

/** The etcd of the tests that need none of their own, each under its own prefix. */
const shared = sharedEtcd();

/** One node's Corefile on 127.0.0.N, under the test's key prefix. */
function nodeCorefile(
  etcd: EtcdScope,
  port: number,
  n: number,
  extra: string[] = [],
  limit = 6,
): Promise<string> {
  const host = `127.0.0.${n}`;
  return writeCorefile(
    [
      `.:${port} {`,
      `    bind ${host}`,
      `    idetcd {`,
      `        endpoint ${etcd.endpoint}`,
      `        prefix ${etcd.prefix}`,
      `        limit ${limit}`,
      `        pattern worker{{.ID}}.${ZONE}`,
      `        address ${host}`,
      `        lease 4s`,
      `        identity node-${n}`,
      ...extra.map((l) => `        ${l}`),
      `    }`,
      `}`,
      ``,
    ].join("\n"),
  );
}

/** The time (Date.now()) each lock of the zone first appeared, from a watch of the test's own. */
async function watchClaims(etcd: EtcdScope) {
  const client = createClient({ endpoints: [etcd.endpoint] }, ".");
  const seen = new Map<string, number>();
  const watcher = await client.watch().prefix(`${etcd.prefix}/local/tf/worker`).create();
  watcher.on("put", (kv) => {
    const key = kv.key.toString();
    if (/\/worker\d+$/.test(key) && !seen.has(key)) seen.set(key, Date.now());
  });
  return {
    seen,
    async close() {
      await watcher.cancel();
      client.close();
    },
  };
}

Deno.test("exec: six nodes started at random moments; every command starts after the sixth claim with the same members", async () => {
  const etcd = await shared.scope();
  const port = await freePort();
  const runtime = await Deno.makeTempDir({ prefix: "idetcd-rt-" });
  const claims = await watchClaims(etcd);
  const procs: Proc[] = [];
  try {
    for (let i = 0; i < 6; i++) {
      const conf = await nodeCorefile(etcd, port, 101 + i);
      procs.push(spawn(Deno.execPath(), [
        "run",
        "-A",
        MAIN,
        "-conf",
        conf,
        "exec",
        "--wait-all",
        "--wait-timeout",
        "60s",
        "--",
        "sh",
        "-c",
        'echo "START $(date +%s%3N) $IDETCD_ID $IDETCD_INDEX $IDETCD_SIZE $IDETCD_MEMBERS $IDETCD_COORDINATOR"',
      ], { IDETCD_RUNTIME_DIR: runtime }));
      await new Promise((r) => setTimeout(r, Math.random() * 700));
    }
    const statuses = await Promise.all(procs.map((p) => p.status));
    const outputs = procs.map((p, i) => `--- node ${i}: ${p.out()}${p.err()}`).join("\n");
    statuses.forEach((s) => assert.equal(s.code, 0, outputs));
    const lastClaim = Math.max(...claims.seen.values());
    assert.equal(claims.seen.size, 6);
    const starts = procs.map((p) => {
      const m = /^START (\d+) (\d+) (\d+) (\d+) (\S+) (\S+)$/m.exec(p.out());
      assert.ok(m, `a START line in ${p.out()}\n${p.err()}`);
      return {
        at: Number(m[1]),
        id: Number(m[2]),
        index: Number(m[3]),
        size: Number(m[4]),
        members: m[5],
        coordinator: m[6],
      };
    });
    for (const s of starts) {
      assert.ok(s.at >= lastClaim, `started ${lastClaim - s.at} ms before the sixth claim`);
      assert.equal(s.size, 6);
      assert.equal(s.members, [1, 2, 3, 4, 5, 6].map((id) => `worker${id}.tf.local`).join(","));
      assert.equal(s.coordinator, "worker1.tf.local");
      assert.equal(s.index, s.id - 1);
    }
    assert.deepEqual(starts.map((s) => s.index).sort(), [0, 1, 2, 3, 4, 5]);
  } finally {
    for (const p of procs) {
      try {
        p.child.kill("SIGKILL");
      } catch {
        // exited
      }
    }
    await Promise.all(procs.map((p) => p.status));
    await claims.close();
  }
});

Deno.test("exec: a barrier that times out names the missing IDs and exits with its code", async () => {
  const etcd = await shared.scope();
  const port = await freePort();
  const runtime = await Deno.makeTempDir({ prefix: "idetcd-rt-" });
  const conf = await nodeCorefile(etcd, port, 111, [], 3);
  const p = spawn(Deno.execPath(), [
    "run",
    "-A",
    MAIN,
    "-conf",
    conf,
    "exec",
    "--wait-all",
    "--wait-timeout",
    "4s",
    "--",
    "echo",
    "should not run",
  ], { IDETCD_RUNTIME_DIR: runtime });
  const status = await p.status;
  assert.equal(status.code, EXIT_BARRIER_TIMEOUT, p.err());
  assert.match(
    p.err(),
    /the barrier timed out: 1\/3 claimed; waiting for worker2\.tf\.local, worker3\.tf\.local/,
  );
  assert.doesNotMatch(p.out(), /should not run/);
  // exec was the server: it released the name on the way out.
  assert.match(p.out(), /released worker1\.tf\.local\. \(ID 1\)/);
});

Deno.test("exec: the command's exit code and signals pass through; usage errors exit 2", async () => {
  const etcd = await shared.scope();
  const port = await freePort();
  const runtime = await Deno.makeTempDir({ prefix: "idetcd-rt-" });
  const conf = await nodeCorefile(etcd, port, 112, [], 1);
  const run = (...args: string[]) =>
    spawn(Deno.execPath(), ["run", "-A", MAIN, "-conf", conf, "exec", ...args], {
      IDETCD_RUNTIME_DIR: runtime,
    });
  assert.equal((await run("--", "sh", "-c", "exit 7").status).code, 7);
  const sleeper = run(
    "--",
    "sh",
    "-c",
    "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done",
  );
  await waitFor(() => sleeper.out().includes("ready"), { timeoutMs: 30_000, what: "the command" });
  sleeper.child.kill("SIGTERM");
  assert.equal((await sleeper.status).code, 42, "SIGTERM reached the command, its code is exec's");
  const bad = run("--bogus", "--", "true");
  assert.equal((await bad.status).code, 2);
  assert.match(bad.err(), /flag provided but not defined: --bogus/);
  const none = run("--preset", "torch");
  assert.equal((await none.status).code, 2);
  assert.match(none.err(), /exec needs a command/);
  // With every name taken (and no `wait`) exec says so and exits 1, running nothing.
  await using holder = await startServer(await nodeCorefile(etcd, port, 115, [], 1), {
    env: { IDETCD_RUNTIME_DIR: runtime },
  });
  await holder.waitForOutput("claimed worker1.tf.local. (ID 1)");
  const full = run("--", "echo", "should not run");
  assert.equal((await full.status).code, 1, full.err());
  assert.match(full.err(), /all 1 names of worker\{\{\.ID\}\}\.tf\.local\. are taken/);
  assert.doesNotMatch(full.out(), /should not run/);
});

Deno.test("exec: with the node's server running, exec uses its claim instead of claiming again", async () => {
  const etcd = await shared.scope();
  const port = await freePort();
  const runtime = await Deno.makeTempDir({ prefix: "idetcd-rt-" });
  const conf = await nodeCorefile(etcd, port, 113, [], 2);
  await using server = await startServer(conf, { env: { IDETCD_RUNTIME_DIR: runtime } });
  await server.waitForOutput("claimed worker1.tf.local. (ID 1)");
  const p = spawn(Deno.execPath(), [
    "run",
    "-A",
    MAIN,
    "-conf",
    conf,
    "exec",
    "--",
    "sh",
    "-c",
    'echo "ID=$IDETCD_ID FENCE=$IDETCD_FENCE"',
  ], { IDETCD_RUNTIME_DIR: runtime });
  assert.equal((await p.status).code, 0, p.err());
  assert.match(p.out(), /^ID=1 FENCE=\d+$/m);
  assert.doesNotMatch(p.out(), /claimed worker/, "no second claim");
  assert.doesNotMatch(server.output(), /released|lost/);
});

Deno.test("exec: started together with the node's service, exec waits for the service's claim", async () => {
  const etcd = await shared.scope();
  const port = await freePort();
  const runtime = await Deno.makeTempDir({ prefix: "idetcd-rt-" });
  const conf = await nodeCorefile(etcd, port, 114, [], 2);
  // systemd says the unit is starting (cloud-init ran `systemctl start idetcd` just before).
  const bin = await Deno.makeTempDir({ prefix: "idetcd-bin-" });
  await Deno.writeTextFile(`${bin}/systemctl`, "#!/bin/sh\necho activating\n");
  await Deno.chmod(`${bin}/systemctl`, 0o755);
  const p = spawn(Deno.execPath(), [
    "run",
    "-A",
    MAIN,
    "-conf",
    conf,
    "exec",
    "--",
    "sh",
    "-c",
    'echo "ID=$IDETCD_ID"',
  ], { IDETCD_RUNTIME_DIR: runtime, PATH: `${bin}:${Deno.env.get("PATH")}` });
  await waitFor(() => /is starting; waiting for its claim/.test(p.err()), {
    timeoutMs: 30_000,
    what: `exec waiting for the service:\n${p.err()}`,
  });
  await using server = await startServer(conf, { env: { IDETCD_RUNTIME_DIR: runtime } });
  assert.equal((await p.status).code, 0, p.err());
  assert.match(p.out(), /^ID=1$/m);
  assert.doesNotMatch(p.out(), /claimed worker/, "exec did not claim");
  assert.match(server.output(), /claimed worker1\.tf\.local\. \(ID 1\)/);
});

Deno.test("roles: 1 chief + 2 ps + 5 workers started at once split exactly so; never two chiefs", async () => {
  const etcd = await shared.scope();
  const port = await freePort();
  const roles = ["role chief 1", "role ps 2-3", "role worker 4-8"];
  const wanted = ["chief", "ps", "ps", "worker", "worker", "worker", "worker", "worker"];
  const servers = await Promise.all(wanted.map(async (role, i) => {
    const conf = await nodeCorefile(etcd, port, 121 + i, roles, 8);
    return { role, conf, proc: await startServer(conf, { env: { IDETCD_ROLE: role } }) };
  }));
  try {
    const ids = await Promise.all(servers.map(async (s) => {
      await s.proc.waitForOutput(/claimed worker\d+/, 30_000);
      return Number(/claimed worker(\d+)/.exec(s.proc.output())![1]);
    }));
    const range: Record<string, number[]> = { chief: [1], ps: [2, 3], worker: [4, 5, 6, 7, 8] };
    servers.forEach((s, i) => assert.ok(range[s.role].includes(ids[i]), `${s.role} got ${ids[i]}`));
    assert.deepEqual([...ids].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8]);

    // TF_CONFIG of a ps node: its type and index within its role.
    const ps = servers.find((s, i) => s.role === "ps" && ids[i] === 3)!;
    const tf = spawn(Deno.execPath(), ["run", "-A", MAIN, "-conf", ps.conf, "tf-config"]);
    assert.equal((await tf.status).code, 0, tf.err());
    assert.deepEqual(JSON.parse(tf.out()), {
      cluster: {
        chief: ["worker1.tf.local:2222"],
        ps: ["worker2.tf.local:2222", "worker3.tf.local:2222"],
        worker: [4, 5, 6, 7, 8].map((id) => `worker${id}.tf.local:2222`),
      },
      task: { type: "ps", index: 1 },
    });

    // A second chief fails clearly (its role is full); a worker too.
    for (const role of ["chief", "worker"]) {
      const conf = await nodeCorefile(etcd, port, 140 + (role === "chief" ? 0 : 1), roles, 8);
      const extra = spawn(Deno.execPath(), ["run", "-A", MAIN, "-conf", conf], {
        IDETCD_ROLE: role,
      });
      assert.equal((await extra.status).code, 1);
      assert.match(extra.err(), new RegExp(`all \\d+ names of role ${role} of .* are taken`));
    }
  } finally {
    await Promise.all(servers.map((s) => s.proc[Symbol.asyncDispose]()));
  }
});

Deno.test("roles: a storm of three would-be chiefs gives one chief", async () => {
  const etcd = await shared.scope();
  const port = await freePort();
  const roles = ["role chief 1", "role worker 2-4"];
  const confs = await Promise.all(
    [131, 132, 133].map((n) => nodeCorefile(etcd, port, n, roles, 4)),
  );
  const procs = confs.map((conf) =>
    spawn(Deno.execPath(), ["run", "-A", MAIN, "-conf", conf], { IDETCD_ROLE: "chief" })
  );
  try {
    await waitFor(
      () =>
        procs.filter((p) => /claimed worker1\./.test(p.out())).length === 1 &&
        procs.filter((p) => /role chief .* are taken/.test(p.err())).length === 2,
      { timeoutMs: 40_000, what: "one chief and two refusals" },
    );
  } finally {
    for (const p of procs) {
      try {
        p.child.kill("SIGTERM");
      } catch {
        // exited
      }
    }
    await Promise.all(procs.map((p) => p.status));
  }
});

Deno.test(needsNetns({
  name: "exec: a node cut off from etcd stops its command before another node's claim of its ID",
  async fn() {
    await using net = await createTestNetwork({ hosts: 2 });
    await using etcd = await startEtcdOn(net.etcdAddress);
    const port = await freePort();
    const [hostA, hostB] = net.hosts;
    const dir = await Deno.makeTempDir({ prefix: "idetcd-exec-fence-" });
    const corefile = async (host: typeof hostA, label: string, wait: boolean) => {
      const path = `${dir}/Corefile-${label}`;
      await Deno.writeTextFile(
        path,
        [
          `.:${port} {`,
          `    bind ${host.address}`,
          `    idetcd {`,
          `        endpoint ${etcd.endpoint}`,
          `        limit 1`,
          `        pattern worker{{.ID}}.${ZONE}`,
          `        address ${host.address}`,
          `        lease 4s`,
          `        identity ${label}`,
          ...(wait ? [`        wait`] : []),
          `    }`,
          `}`,
          ``,
        ].join("\n"),
      );
      return path;
    };
    const log = `${dir}/workload.log`;
    const env = { NO_COLOR: "1", IDETCD_RUNTIME_DIR: `${dir}/rt` };
    const a = hostA.deno([
      "run",
      "-A",
      MAIN,
      "-conf",
      await corefile(hostA, "node-a", false),
      "exec",
      "--",
      "sh",
      "-c",
      `while :; do date +%s%3N >> ${log}; sleep 0.05; done`,
    ], { env, stdout: "piped", stderr: "piped" });
    let aErr = "";
    (async () => {
      const d = new TextDecoder();
      for await (const c of a.stderr) aErr += d.decode(c, { stream: true });
    })();
    a.stdout.cancel();
    const client = createClient({ endpoints: [etcd.endpoint] }, ".");
    let b: Deno.ChildProcess | undefined;
    try {
      await waitFor(async () => (await Deno.readTextFile(log).catch(() => "")).length > 0, {
        timeoutMs: 30_000,
        what: `A's command running:\n${aErr}`,
      });
      b = hostB.deno(["run", "-A", MAIN, "-conf", await corefile(hostB, "node-b", true)], {
        env,
        stdout: "null",
        stderr: "null",
      });
      // B's claim of ID 1, seen by the test's own watch (wall clock, as the workload's log).
      let claimedByB: number | undefined;
      const watcher = await client.watch().key("/skydns/local/tf/worker1").create();
      watcher.on("put", (kv) => {
        if (kv.value.toString().includes("node-b")) claimedByB ??= Date.now();
      });
      await hostA.cutFrom(net.etcdAddress);
      const status = await a.status;
      assert.equal(status.code, EXIT_NAME_LOST, aErr);
      await waitFor(() => claimedByB !== undefined, { timeoutMs: 20_000, what: "B's claim" });
      const lines = (await Deno.readTextFile(log)).trim().split("\n").map(Number);
      const lastWrite = Math.max(...lines);
      console.log(
        `workload fencing: A's command last wrote ${claimedByB! - lastWrite} ms before B's claim`,
      );
      assert.ok(lastWrite < claimedByB!, "the command was stopped before B held the name");
      assert.match(aErr, /stopped holding worker1\.tf\.local .*stopping the command/);
      await watcher.cancel();
    } finally {
      client.close();
      for (const p of [a, b]) {
        try {
          p?.kill("SIGKILL");
        } catch {
          // exited
        }
        await p?.status;
      }
    }
  },
}));
