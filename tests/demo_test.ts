/**
 * `deno task demo` (scripts/demo.ts), run as a user runs it: a real etcd and
 * five real node processes on 127.0.0.2 .. 127.0.0.6.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { Child } from "./helpers/child.ts";
import { waitFor } from "./helpers/wait.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DEMO = fileURLToPath(new URL("../scripts/demo.ts", import.meta.url));
const ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"];

/** A port free for TCP and UDP on every demo address right now. */
function freeDemoPort(): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    const probe = Deno.listen({ hostname: ADDRESSES[0], port: 0 });
    const port = (probe.addr as Deno.NetAddr).port;
    probe.close();
    try {
      for (const hostname of ADDRESSES) {
        Deno.listen({ hostname, port }).close();
        Deno.listenDatagram({ transport: "udp", hostname, port }).close();
      }
      return port;
    } catch {
      // taken somewhere; try another
    }
  }
  throw new Error("no free port on 127.0.0.2-6");
}

/** True while the process exists and is not a zombie. */
function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** A running demo with its output collected. */
interface Demo {
  readonly pid: number;
  output(): string;
  waitForOutput(want: string | RegExp, timeoutMs?: number): Promise<void>;
  kill(signal: Deno.Signal): void;
  readonly exited: Promise<number>;
}

async function startDemo(args: string[], env: Record<string, string> = {}): Promise<Demo> {
  const child = await Child.spawn(Deno.execPath(), ["run", "-A", DEMO, ...args], {
    label: "the demo",
    cwd: ROOT,
    env,
  });
  return {
    pid: child.pid,
    output: () => child.output(),
    waitForOutput: (want, timeoutMs = 120_000) => child.waitForOutput(want, timeoutMs),
    kill: (signal) => child.signal(signal),
    exited: child.status.then((s) => s.code),
  };
}

/** Waits for the exit, with a deadline; SIGKILLs the demo when it passes. */
async function exitCode(demo: Demo, timeoutMs = 120_000): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      demo.kill("SIGKILL");
      reject(new Error(`the demo did not exit within ${timeoutMs} ms:\n${demo.output()}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([demo.exited, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

interface Claimed {
  address: string;
  name: string;
  id: number;
  pid: number;
}

/** The "address -> name" table. */
function claimedTable(output: string): Claimed[] {
  return [
    ...output.matchAll(
      /^ +(127\.0\.0\.\d+) +-> +(worker\d+\.tf\.local\.) +\(ID (\d+), pid (\d+)\)$/gm,
    ),
  ].map((m) => ({ address: m[1], name: m[2], id: Number(m[3]), pid: Number(m[4]) }));
}

function etcdPid(output: string): number {
  const m = /^etcd on http:\/\/127\.0\.0\.1:\d+ \(pid (\d+)\)/m.exec(output);
  assert.ok(m, output);
  return Number(m[1]);
}

function tempDir(output: string): string {
  const m = /^Temporary files \(removed at exit\): (\S+)$/m.exec(output);
  assert.ok(m, output);
  return m[1];
}

function assertCluster(output: string): Claimed[] {
  const table = claimedTable(output);
  assert.equal(table.length, 5, output);
  assert.deepEqual(table.map((c) => c.address).sort(), ADDRESSES, output);
  assert.deepEqual(
    table.map((c) => c.name).sort(),
    ["worker1", "worker2", "worker3", "worker4", "worker5"].map((w) => `${w}.tf.local.`),
    output,
  );
  for (const c of table) assert.equal(c.name, `worker${c.id}.tf.local.`);
  assert.equal(new Set(table.map((c) => c.pid)).size, 5);
  return table;
}

Deno.test("demo --once: 5 nodes claim worker1..5 on 127.0.0.2-6 and resolve each other", async () => {
  const port = freeDemoPort();
  const demo = await startDemo(["--once", "--port", String(port)]);
  const code = await exitCode(demo);
  const output = demo.output();
  assert.equal(code, 0, output);
  const table = assertCluster(output);

  // The 5x5 matrix: every row is a name followed by its holder's address, five times.
  assert.match(output, /resolution matrix: 25\/25 OK/);
  const holder = new Map(table.map((c) => [c.name, c.address]));
  const rows = [...output.matchAll(/^ +(worker\d\.tf\.local\.) +((?:127\.0\.0\.\d+ *){5})$/gm)];
  assert.equal(rows.length, 5, output);
  for (const [, name, cells] of rows) {
    assert.deepEqual(cells.trim().split(/ +/), Array(5).fill(holder.get(name)), output);
  }
  assert.match(output, /the same 5 members from all 5 nodes: OK/);
  assert.match(output, /^All \d+ checks passed\.$/m);
  assert.doesNotMatch(output, /FAILED/);

  // Everything is gone.
  for (const pid of [...table.map((c) => c.pid), etcdPid(output)]) {
    assert.equal(alive(pid), false, `pid ${pid} still runs`);
  }
  assert.equal(await exists(tempDir(output)), false);
});

Deno.test("demo: a stopped node's name vanishes; SIGINT stops nodes and etcd and exits 0", async () => {
  const port = freeDemoPort();
  const demo = await startDemo(["--port", String(port)]);
  let done = false;
  try {
    await demo.waitForOutput("Ctrl-C to stop the cluster and etcd.");
    const output = demo.output();
    const table = assertCluster(output);
    const etcd = etcdPid(output);
    const dir = tempDir(output);
    assert.ok(await exists(`${dir}/node-127.0.0.4/Corefile`));
    for (const pid of [...table.map((c) => c.pid), etcd]) assert.ok(alive(pid), `pid ${pid}`);

    // A node stopped with SIGTERM releases its name: the demo reports both.
    const victim = table.find((c) => c.name === "worker3.tf.local.")!;
    Deno.kill(victim.pid, "SIGTERM");
    await demo.waitForOutput(`exited: exit code 0`, 30_000);
    await demo.waitForOutput(
      /DNS now lists 4 member\(s\): worker1 worker2 worker4 worker5 \(gone: worker3\.tf\.local\.\)/,
      30_000,
    );

    demo.kill("SIGINT");
    const code = await exitCode(demo, 60_000);
    done = true;
    const after = demo.output();
    assert.equal(code, 0, after);
    assert.match(after, /SIGINT: stopping the demo/);
    assert.match(after, /names released: etcd holds no worker names any more/);
    for (const c of table.filter((c) => c !== victim)) {
      assert.match(after, new RegExp(`node ${c.address}, ${c.name} \\(pid ${c.pid}\\) stopped`));
    }
    for (const pid of [...table.map((c) => c.pid), etcd]) {
      await waitFor(() => !alive(pid), { timeoutMs: 10_000, what: `pid ${pid} to exit` });
    }
    assert.equal(await exists(dir), false, `${dir} was not removed`);
  } finally {
    if (!done) {
      demo.kill("SIGINT");
      await exitCode(demo, 60_000).catch(() => {});
    }
  }
});

Deno.test("demo: a DNS port in use is reported and nothing is started", async () => {
  const port = freeDemoPort();
  const busy = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.4", port });
  try {
    const demo = await startDemo(["--once", "--port", String(port)]);
    const code = await exitCode(demo);
    assert.equal(code, 1, demo.output());
    assert.match(
      demo.output(),
      new RegExp(`DNS port ${port} is already in use on 127\\.0\\.0\\.4 \\(udp\\)`),
    );
    assert.doesNotMatch(demo.output(), /etcd on http/);
  } finally {
    busy.close();
  }
});

Deno.test("demo: without etcd (and --no-install) it says what to install and exits 1", async () => {
  const empty = await Deno.makeTempDir({ prefix: "idetcd-demo-path-" });
  try {
    const demo = await startDemo(["--once", "--no-install"], { PATH: empty });
    const code = await exitCode(demo);
    const output = demo.output();
    assert.equal(code, 1, output);
    assert.match(output, /etcd is not installed/);
    assert.match(output, /sudo apt-get install -y etcd-server etcd-client/);
    assert.match(output, /brew install etcd/);
  } finally {
    await Deno.remove(empty, { recursive: true });
  }
});

Deno.test("demo: bad arguments print the usage and exit 2", async () => {
  for (const args of [["--port", "http"], ["--nope"]]) {
    const demo = await startDemo(args);
    assert.equal(await exitCode(demo), 2, demo.output());
    assert.match(demo.output(), /Usage: deno task demo/);
  }
});
