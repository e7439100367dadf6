/**
 * `idetcd status` and `idetcd hosts` driven as a user runs them
 * (`deno run main.ts -conf FILE status --json`) against a real etcd and real
 * node processes, each on its own loopback address (127.0.0.N) with the
 * same Corefile shape: limit 4, roles head 1 and worker 2-4.
 *
 * Nothing sleeps and hopes: every wait is a condition with a deadline.
 */

import assert from "node:assert/strict";
import { startEtcd, type TestEtcd } from "./helpers/etcd.ts";
import { type ServerProcess, startServer, writeCorefile } from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";
import type { ClaimedSlot, StatusReport } from "../lib/plugins/idetcd/status.ts";
import { EXIT_MISSING } from "../lib/plugins/idetcd/status.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const CLAIMED = /plugin\/idetcd: claimed worker(\d+)\.tf\.local\. \(ID (\d+)\)/;
/** The service port every node publishes (SRV, file_sd targets). */
const SERVICE_PORT = 2222;

/** Runs `deno run -A main.ts -conf CONF ARGS...` to the end. */
async function cli(conf: string, ...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, "-conf", conf, ...args],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** One running node. */
interface Node {
  /** Its loopback address is 127.0.0.n and its identity node-n. */
  n: number;
  conf: string;
  proc: ServerProcess;
  /** The ID it claimed (from its log line). */
  id: number;
}

/** The nodes of one test; disposing stops those still running. */
class Nodes implements AsyncDisposable {
  readonly #procs: ServerProcess[] = [];
  readonly #etcd: TestEtcd | { endpoint: string };
  /** The DNS port every node listens on (each on its own address). */
  readonly port: number;

  constructor(etcd: TestEtcd | { endpoint: string }, port: number) {
    this.#etcd = etcd;
    this.port = port;
  }

  /** Writes node N's Corefile. */
  corefile(n: number): Promise<string> {
    const host = `127.0.0.${n}`;
    return writeCorefile(
      [
        `.:${this.port} {`,
        `    bind ${host}`,
        `    idetcd {`,
        `        endpoint ${this.#etcd.endpoint}`,
        `        limit 4`,
        `        pattern worker{{.ID}}.tf.local.`,
        `        address ${host}`,
        `        identity node-${n}`,
        `        port ${SERVICE_PORT}`,
        `        lease 5s`,
        `        role head 1`,
        `        role worker 2-4`,
        `    }`,
        `}`,
        ``,
      ].join("\n"),
    );
  }

  /** Starts a process on `conf` with `args`, without waiting; it is stopped on dispose. */
  async spawn(conf: string, args: string[] = []): Promise<ServerProcess> {
    const proc = await startServer(conf, { args, readyText: null });
    this.#procs.push(proc);
    return proc;
  }

  /** Starts node N and waits for its claim. */
  async start(n: number): Promise<Node> {
    const conf = await this.corefile(n);
    const proc = await this.spawn(conf);
    await proc.waitForOutput(CLAIMED, 60_000);
    const m = CLAIMED.exec(proc.output())!;
    assert.equal(m[1], m[2]);
    return { n, conf, proc, id: Number(m[2]) };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.#procs.map((p) => p[Symbol.asyncDispose]()));
  }
}

/** `status --json` of a Corefile: its exit code and report. */
async function status(conf: string): Promise<{ code: number; report: StatusReport }> {
  const out = await cli(conf, "status", "--json");
  assert.equal(out.stderr, "", "status prints nothing on stderr");
  return { code: out.code, report: JSON.parse(out.stdout) as StatusReport };
}

/** The /etc/hosts lines (`hosts --format hosts`) of nodes, in ID order. */
function hostsLines(nodes: Node[]): string {
  return [...nodes].sort((a, b) => a.id - b.id)
    .map((n) => `127.0.0.${n.n}\tworker${n.id}.tf.local worker${n.id}\n`).join("");
}

/** The file's content, or "" while it does not exist. */
function read(path: string): string {
  try {
    return Deno.readTextFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return "";
    throw err;
  }
}

Deno.test("idetcd status and hosts: 3 of 4 nodes, a watched host file through a join and a leave, then 4 of 4", async () => {
  await using etcd = await startEtcd();
  await using nodes = new Nodes(etcd, await freePort());
  const before = Date.now();
  const first = await Promise.all([1, 2, 3].map((n) => nodes.start(n)));
  assert.deepEqual(first.map((n) => n.id).sort(), [1, 2, 3], "three nodes take IDs 1..3");
  const conf = first[0].conf;
  const byId = new Map(first.map((n) => [n.id, n]));

  // status --json: ID 4 is empty, so exit 3; every field of the claimed slots.
  const three = await status(conf);
  assert.equal(three.code, EXIT_MISSING);
  assert.equal(EXIT_MISSING, 3);
  const r = three.report;
  assert.equal(r.pattern, "worker{{.ID}}.tf.local.");
  assert.equal(r.zone, "tf.local.");
  assert.equal(r.limit, 4);
  assert.equal(r.claimed, 3);
  assert.deepEqual(r.missing, [4]);
  assert.equal(r.complete, false);
  assert.ok(r.revision > 0);
  assert.equal(r.slots.length, 4);
  for (const id of [1, 2, 3]) {
    const slot = r.slots[id - 1] as ClaimedSlot;
    const node = byId.get(id)!;
    assert.equal(slot.id, id);
    assert.equal(slot.claimed, true);
    assert.equal(slot.name, `worker${id}.tf.local.`);
    assert.equal(slot.role, id === 1 ? "head" : "worker", "roles from the Corefile's role lines");
    assert.deepEqual(slot.addresses, [`127.0.0.${node.n}`]);
    assert.equal(slot.port, SERVICE_PORT);
    assert.equal(slot.identity, `node-${node.n}`);
    const claimedAt = Date.parse(slot.claimedAt!);
    assert.ok(claimedAt >= before - 1000 && claimedAt <= Date.now(), `claimedAt ${slot.claimedAt}`);
    // A 5 s lease kept alive well before its end: etcd reports 1..5 s left.
    assert.ok(
      slot.leaseSecondsLeft >= 1 && slot.leaseSecondsLeft <= 5,
      `lease left ${slot.leaseSecondsLeft}`,
    );
    assert.match(slot.lease, /^[1-9]\d*$/);
    assert.ok(Number.isSafeInteger(slot.fence) && slot.fence > 0);
  }
  assert.deepEqual(r.slots[3], {
    id: 4,
    name: "worker4.tf.local.",
    role: "worker",
    claimed: false,
  });

  // The table: same exit code, the empty slot, the summary.
  const table = await cli(conf, "status");
  assert.equal(table.code, EXIT_MISSING, table.stderr);
  assert.match(table.stdout, /^ID\s+NAME\s+ROLE\s+ADDRESSES\s+IDENTITY\s+CLAIMED SINCE\s+LEASE$/m);
  assert.match(table.stdout, /^4\s+worker4\.tf\.local\.\s+worker\s+\(empty\)$/m);
  assert.match(
    table.stdout,
    /^1\s+worker1\.tf\.local\.\s+head\s+127\.0\.0\.\d\s+node-\d\s+\S+Z \(\d+s\)\s+\d+s$/m,
  );
  assert.ok(table.stdout.endsWith("\n3/4 claimed; empty: 4\n"), table.stdout);

  // hosts: Open MPI's hostfile, exactly; Prometheus file_sd, valid JSON.
  const mpi = await cli(conf, "hosts", "--format", "mpi", "--slots", "8");
  assert.equal(mpi.code, 0, mpi.stderr);
  assert.equal(
    mpi.stdout,
    "worker1.tf.local slots=8\nworker2.tf.local slots=8\nworker3.tf.local slots=8\n",
  );
  const sd = await cli(conf, "hosts", "--format", "file_sd");
  assert.equal(sd.code, 0, sd.stderr);
  assert.deepEqual(
    JSON.parse(sd.stdout),
    [1, 2, 3].map((id) => ({
      targets: [`worker${id}.tf.local:${SERVICE_PORT}`],
      labels: {
        idetcd_id: String(id),
        idetcd_name: `worker${id}.tf.local`,
        idetcd_role: id === 1 ? "head" : "worker",
      },
    })),
  );

  // hosts --watch: the file follows a join and a leave.
  const dir = await Deno.makeTempDir({ prefix: "idetcd-hosts-watch-" });
  try {
    const file = `${dir}/etc/hosts.idetcd`;
    const watcher = await nodes.spawn(conf, ["hosts", "--format", "hosts", "--watch", file]);
    await waitFor(() => read(file) === hostsLines(first), {
      timeoutMs: 30_000,
      what: `${file} to list 3 hosts; it has:\n${read(file)}\nwatcher:\n${watcher.output()}`,
    });

    const fourth = await nodes.start(4);
    assert.equal(fourth.id, 4);
    const all = [...first, fourth];
    await waitFor(() => read(file) === hostsLines(all), {
      timeoutMs: 15_000,
      what: `${file} to list 4 hosts; it has:\n${read(file)}`,
    });
    const four = await status(conf);
    assert.equal(four.code, 0, "every ID of 1..4 is claimed: exit 0");
    assert.equal(four.report.complete, true);
    assert.equal(four.report.claimed, 4);
    assert.deepEqual(four.report.missing, []);
    assert.deepEqual(four.report.slots.map((s) => [s.id, s.claimed]), [
      [1, true],
      [2, true],
      [3, true],
      [4, true],
    ]);

    // A clean stop releases ID 2 at once; the file drops it.
    const leaving = byId.get(2)!;
    leaving.proc.kill("SIGTERM");
    assert.equal(await leaving.proc.exited, 0);
    const rest = all.filter((n) => n !== leaving);
    await waitFor(() => read(file) === hostsLines(rest), {
      timeoutMs: 15_000,
      what: `${file} to list 3 hosts again; it has:\n${read(file)}`,
    });

    // SIGTERM ends the watch with 0.
    watcher.kill("SIGTERM");
    assert.equal(await watcher.exited, 0, watcher.output());
    // Three contents, three writes: the queue and last-holder keys that changed meanwhile
    // did not change the list, so they rewrote nothing.
    assert.equal(
      watcher.output().match(/idetcd hosts: wrote /g)?.length,
      3,
      watcher.output(),
    );
    assert.equal(read(file), hostsLines(rest));
    assert.deepEqual([...Deno.readDirSync(`${dir}/etc`)].map((e) => e.name), ["hosts.idetcd"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("idetcd status and hosts: etcd unreachable is one line naming the endpoint (exit 1); usage errors exit 2", async () => {
  const endpoint = `http://127.0.0.1:${await freePort()}`;
  await using nodes = new Nodes({ endpoint }, await freePort());
  const conf = await nodes.corefile(1);
  for (const args of [["status"], ["status", "--json"], ["hosts", "--format", "mpi"]]) {
    const out = await cli(conf, ...args);
    assert.equal(out.code, 1, `${args.join(" ")}: ${out.stdout}${out.stderr}`);
    assert.equal(out.stdout, "");
    const lines = out.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, out.stderr);
    assert.match(lines[0], /^idetcd: cannot read etcd at /);
    assert.ok(lines[0].includes(endpoint), lines[0]);
  }
  for (
    const [args, message] of [
      [["status", "--bogus"], "flag provided but not defined: --bogus"],
      [["hosts", "--format", "csv"], 'unknown format "csv"'],
      [["hosts", "--format", "plain", "--slots", "2"], "--slots applies to mpi and deepspeed only"],
    ] as const
  ) {
    const out = await cli(conf, ...args);
    assert.equal(out.code, 2, `${args.join(" ")}: ${out.stderr}`);
    assert.ok(out.stderr.includes(message), out.stderr);
    assert.ok(out.stderr.includes("Usage: idetcd"), out.stderr);
  }
});
