/**
 * `deno task demo`: a real etcd and a 5-node idetcd cluster on one machine.
 *
 * 1. Makes sure `etcd` is on PATH (installs `etcd-server etcd-client` with
 *    apt-get when running as root on Debian/Ubuntu; otherwise says exactly
 *    what to install and exits 1).
 * 2. Starts etcd on free ports with a temporary data directory.
 * 3. Starts five `main.ts` processes on 127.0.0.2 .. 127.0.0.6, each with its
 *    own Corefile (`bind`, `address`, pattern `worker{{.ID}}.tf.local.`,
 *    `limit 5`), and prints the name each one claimed.
 * 4. Resolves every name through every node with a small DNS client (a 5x5
 *    matrix), checks `_nodes.tf.local. SRV`, and shows a few `dig` commands.
 * 5. Keeps running until Ctrl-C / SIGTERM (printing what to try and every
 *    change of the membership), then stops the nodes with SIGTERM (they
 *    release their names), stops etcd and removes the temporary files.
 *
 * Usage: `deno run -A scripts/demo.ts [--once] [--port N] [--no-install]`
 *
 * `--once` exits after the checks (1 if one failed). Node logs are not shown
 * but written to files in the temporary directory, whose paths are printed.
 *
 * @module
 */

import { canAptInstall, onPath } from "./system.ts";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { relative } from "node:path";
import type { Message } from "../lib/dns/wire.ts";
import { Rcode, rcodeToString, type SRVData, Type } from "../lib/dns/types.ts";
import { Child } from "../tests/helpers/child.ts";
import { startEtcd, type TestEtcd } from "../tests/helpers/etcd.ts";
import { dig, queryUdp } from "../tests/helpers/process.ts";
import {
  aptInstall,
  DIG,
  ETCD,
  ETCDCTL,
  installHints,
  missingTools,
} from "../tests/helpers/prereqs.ts";
import { waitFor } from "../tests/helpers/wait.ts";

// ------------------------------------------------------------------ settings

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));
const ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"];
const PATTERN = "worker{{.ID}}.tf.local.";
const ZONE = "tf.local.";
const LIMIT = ADDRESSES.length;
const LEASE_SECONDS = 5;
const SERVICE_PORT = 2222;
const DEFAULT_DNS_PORT = 1053;
/** How long a node may take to claim its name (the first run compiles main.ts). */
const NODE_START_MS = 60_000;
const STOP_GRACE_MS = 10_000;

const USAGE = `Usage: deno task demo [--once] [--port N] [--no-install]

Starts a real etcd and a 5-node idetcd cluster on 127.0.0.2 .. 127.0.0.6,
shows the names they claimed and resolves every name through every node.

  --port N       DNS port of the nodes (default ${DEFAULT_DNS_PORT})
  --once         exit after the checks (exit code 1 if one failed)
  --no-install   never install etcd with apt-get; only say what is missing
  -h, --help     this text
`;

interface Options {
  once: boolean;
  port: number;
  install: boolean;
}

function parseOptions(argv: string[]): Options {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        once: { type: "boolean" },
        port: { type: "string", short: "p" },
        "no-install": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    console.error(`demo: ${(err as Error).message}\n\n${USAGE}`);
    Deno.exit(2);
  }
  const v = parsed.values;
  if (v.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const portText = v.port ?? String(DEFAULT_DNS_PORT);
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535) {
    console.error(`demo: --port ${portText}: not a port number (1-65535)\n\n${USAGE}`);
    Deno.exit(2);
  }
  return { once: v.once ?? false, port, install: !(v["no-install"] ?? false) };
}

// ------------------------------------------------------------------ output

const encoder = new TextEncoder();
/** Writes a line; a closed terminal must not stop the cleanup. */
function write(stream: typeof Deno.stdout, line: string): void {
  try {
    const bytes = encoder.encode(line + "\n");
    for (let done = 0; done < bytes.length;) done += stream.writeSync(bytes.subarray(done));
  } catch {
    // the terminal is gone
  }
}
const say = (line = "") => write(Deno.stdout, line);
const fail = (line: string) => write(Deno.stderr, line);
const clock = () => new Date().toTimeString().slice(0, 8);
const pad = (s: string, n: number) => s.padEnd(n);

/** A path as the user should type it: relative to the current folder when inside it. */
function shown(path: string): string {
  const rel = relative(Deno.cwd(), path);
  return rel && !rel.startsWith("..") ? rel : path;
}

/** How the user runs deno in their shell (the demo may run from `npx deno`). */
function denoCommand(): string {
  const exe = Deno.execPath();
  if (exe.includes("_npx")) {
    return `npx -y deno@${Deno.version.deno}`;
  }
  return onPath("deno") ? "deno" : exe;
}

// ------------------------------------------------------------------ prerequisites

/** apt-get's command lines, as the demo's own output. */
const aptLog = (line: string) => say(`demo: ${line}`);

function explainMissingEtcd(): never {
  fail(
    [
      "demo: etcd is not installed (no `etcd` command on PATH). Install it, then run the demo again:",
      ...installHints([ETCD, ETCDCTL]),
      "  anywhere else:     a release from https://github.com/etcd-io/etcd/releases, with `etcd` on PATH",
    ].join("\n"),
  );
  Deno.exit(1);
}

/**
 * Makes sure `etcd` is on PATH, installing it (and `dig`, when missing) with
 * apt-get where that is possible. Returns whether `dig` is available.
 */
async function ensurePrerequisites(install: boolean): Promise<{ dig: boolean }> {
  const digMissing = missingTools([DIG]).length > 0;
  if (missingTools([ETCD]).length > 0) {
    if (!install || !canAptInstall()) explainMissingEtcd();
    say("demo: etcd is missing; installing it with apt-get (root on Debian/Ubuntu)");
    const ok = await aptInstall([ETCD, ETCDCTL, ...(digMissing ? [DIG] : [])], aptLog);
    if (!ok || missingTools([ETCD]).length > 0) {
      fail("demo: installing etcd with apt-get failed.");
      explainMissingEtcd();
    }
  } else if (digMissing && install && canAptInstall()) {
    say("demo: dig is missing; installing bind9-dnsutils with apt-get (optional)");
    if (!(await aptInstall([DIG], aptLog))) say("demo: could not install dig; going on without it");
  }
  return { dig: onPath("dig") };
}

/** Says why the nodes could not listen on `port`, or returns null when they can. */
function checkDnsPort(port: number): string | null {
  for (const hostname of ADDRESSES) {
    for (const transport of ["udp", "tcp"] as const) {
      try {
        if (transport === "tcp") Deno.listen({ hostname, port }).close();
        else Deno.listenDatagram({ transport: "udp", hostname, port }).close();
      } catch (err) {
        if (err instanceof Deno.errors.AddrInUse) {
          return `demo: DNS port ${port} is already in use on ${hostname} (${transport}); ` +
            `is another demo running? Pick another port: deno task demo --port ${
              port === 65535 ? 2053 : port + 1
            }`;
        }
        if (err instanceof Deno.errors.AddrNotAvailable) {
          return `demo: cannot listen on ${hostname}: ${(err as Error).message}.\n` +
            `The demo needs the loopback addresses ${ADDRESSES[0]} .. ${ADDRESSES.at(-1)}` +
            (Deno.build.os === "darwin"
              ? `; on macOS add them with: for i in 2 3 4 5 6; do sudo ifconfig lo0 alias 127.0.0.$i up; done`
              : ".");
        }
        if (err instanceof Deno.errors.PermissionDenied) {
          return `demo: not allowed to listen on ${hostname} port ${port} (${transport}): ` +
            `${
              (err as Error).message
            }; ports below 1024 need root. Use --port ${DEFAULT_DNS_PORT}.`;
        }
        return `demo: cannot listen on ${hostname} port ${port} (${transport}): ${
          (err as Error).message
        }`;
      }
    }
  }
  return null;
}

// ------------------------------------------------------------------ processes

/** Resolves after `ms` milliseconds, or at once when `signal` aborts. */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done);
  });
}

// ------------------------------------------------------------------ DNS client

/** One UDP query to a node (3 tries, 1.5 s each): the harness's DNS client. */
function query(server: string, port: number, name: string, type: number): Promise<Message> {
  return queryUdp(server, port, name, type, { timeoutMs: 1500 });
}

/** The A answers of a reply, or a short reason why there are none. */
function addressesOf(msg: Message): string[] | string {
  if (msg.rcode !== Rcode.Success) return rcodeToString(msg.rcode);
  const a = msg.answer.filter((r) => r.type === Type.A).map((r) => r.data as string);
  return a.length ? a.sort() : "NODATA";
}

// ------------------------------------------------------------------ etcd

/**
 * Starts etcd (the harness's, with its log in the demo's folder and a
 * session of its own). A failure ends the demo with etcd's last lines.
 */
async function startDemoEtcd(dir: string): Promise<TestEtcd> {
  try {
    const etcd = await startEtcd({
      dataDir: `${dir}/etcd`,
      logPath: `${dir}/etcd.log`,
      logLevel: "warn",
      detached: true,
    });
    if (etcd.process) register(etcd.process);
    return etcd;
  } catch (err) {
    if (stopping || stopRequested.signal.aborted) throw new Exit(0);
    fail(`demo: etcd did not start: ${(err as Error).message}`);
    throw new Exit(1);
  }
}

/** How many keys of claimed names (locks and address records) etcd holds. */
async function claimedKeysInEtcd(endpoint: string): Promise<number> {
  const b64 = (s: string) => btoa(s);
  const res = await fetch(`${endpoint}/v3/kv/range`, {
    method: "POST",
    body: JSON.stringify({
      key: b64("/skydns/local/tf/worker"),
      range_end: b64("/skydns/local/tf/workes"),
      count_only: true,
    }),
    signal: AbortSignal.timeout(3000),
  });
  if (!res.ok) throw new Error(`etcd answered ${res.status}`);
  const body = await res.json();
  return Number(body.count ?? 0);
}

// ------------------------------------------------------------------ nodes

interface Node {
  address: string;
  dir: string;
  corefile: string;
  proc: Child;
  /** What to call it in messages: its address, then "127.0.0.4, worker3.tf.local." once it claimed. */
  title: string;
  name?: string;
  id?: number;
}

function corefileFor(address: string, index: number, port: number, endpoint: string): string {
  return `# idetcd demo: node ${index + 1} of ${ADDRESSES.length}, on ${address}
.:${port} {
    bind ${address}
    idetcd {
        endpoint ${endpoint}
        pattern ${PATTERN}
        limit ${LIMIT}
        address ${address}
        identity demo-${address}
        lease ${LEASE_SECONDS}s
        port ${SERVICE_PORT}
        file claim.json
    }
    whoami
    log
}
`;
}

async function startNode(
  address: string,
  index: number,
  dir: string,
  port: number,
  endpoint: string,
): Promise<Node> {
  const nodeDir = `${dir}/node-${address}`;
  await Deno.mkdir(nodeDir);
  const corefile = `${nodeDir}/Corefile`;
  await Deno.writeTextFile(corefile, corefileFor(address, index, port, endpoint));
  const proc = await Child.spawn(Deno.execPath(), ["run", "-A", MAIN, "-conf", corefile], {
    label: `the node on ${address}`,
    cwd: ROOT,
    logPath: `${nodeDir}/node.log`,
    // Own session: a Ctrl-C in the terminal reaches only the demo, which then
    // stops the nodes before etcd, so they can release their names.
    detached: true,
    maxOutput: 1_000_000,
  });
  register(proc);
  const node: Node = { address, dir: nodeDir, corefile, proc, title: address };
  startedNodes.push(node);
  return node;
}

const CLAIMED = /claimed (\S+) \(ID (\d+)\)/;

/** Waits until the node claimed a name and listens (its banner); throws with its log otherwise. */
async function nodeReady(node: Node): Promise<void> {
  await waitFor(
    () => {
      if (!node.proc.running) {
        throw new Error(`the node on ${node.address} exited (${node.proc.describeExit()})`);
      }
      const text = node.proc.output();
      const m = CLAIMED.exec(text);
      return m && /^idetcd-\d/m.test(text) ? m : null;
    },
    { timeoutMs: NODE_START_MS, what: `the node on ${node.address} to claim a name` },
  ).then((m) => {
    node.name = m[1];
    node.id = Number(m[2]);
    node.title = `${node.address}, ${node.name}`;
  });
}

// ------------------------------------------------------------------ checks

interface Checks {
  passed: number;
  failed: number;
}

function checked(checks: Checks, ok: boolean): boolean {
  if (ok) checks.passed++;
  else checks.failed++;
  return ok;
}

async function resolutionMatrix(nodes: Node[], port: number, checks: Checks): Promise<void> {
  const byName = [...nodes].sort((a, b) => (a.id ?? 0) - (b.id ?? 0));
  const width = 12;
  say(
    `Resolution matrix: each name (rows) asked at each node (columns) for its A record,\n` +
      `with the demo's own DNS client over UDP:`,
  );
  say(`  ${pad("name", 20)}${nodes.map((n) => pad(`@${n.address}`, width)).join("").trimEnd()}`);
  let ok = 0;
  for (const target of byName) {
    const cells: string[] = [];
    for (const server of nodes) {
      let cell: string;
      try {
        const got = addressesOf(await query(server.address, port, target.name!, Type.A));
        const right = Array.isArray(got) && got.length === 1 && got[0] === target.address;
        cell = right ? got[0] : `!${Array.isArray(got) ? got.join(",") : got}`;
        if (checked(checks, right)) ok++;
      } catch (err) {
        checked(checks, false);
        cell = `!${(err as Error).message}`;
      }
      cells.push(pad(cell, width));
    }
    say(`  ${pad(target.name!, 20)}${cells.join("").trimEnd()}`);
  }
  const total = nodes.length * nodes.length;
  say(
    ok === total
      ? `  resolution matrix: ${ok}/${total} OK (every node answers every name with its holder's address)`
      : `  resolution matrix: ${ok}/${total} OK, ${total - ok} FAILED (cells marked with !)`,
  );
}

/** The SRV targets of `_nodes` at one node, sorted, or null when it does not answer. */
async function membersAt(node: Node, port: number): Promise<string[] | null> {
  try {
    const msg = await query(node.address, port, `_nodes.${ZONE}`, Type.SRV);
    return msg.answer.filter((r) => r.type === Type.SRV).map((r) => (r.data as SRVData).target)
      .sort();
  } catch {
    return null;
  }
}

/**
 * Waits until every node's copy of etcd lists every member (each node learns
 * of the claims made after its own through its etcd watch). Returns how long
 * that took and the nodes that still lag at the deadline.
 */
async function converge(
  nodes: Node[],
  port: number,
  timeoutMs = 10_000,
): Promise<{ ms: number; lagging: Node[] }> {
  const expected = nodes.map((n) => n.name!).sort().join(" ");
  const start = performance.now();
  const pending = new Set(nodes);
  while (pending.size > 0) {
    for (const node of [...pending]) {
      if ((await membersAt(node, port))?.join(" ") === expected) pending.delete(node);
    }
    if (pending.size === 0 || performance.now() - start > timeoutMs) break;
    await pause(20);
  }
  return { ms: Math.round(performance.now() - start), lagging: [...pending] };
}

async function membersCheck(nodes: Node[], port: number, checks: Checks): Promise<void> {
  const expected = [...nodes].sort((a, b) => (a.id ?? 0) - (b.id ?? 0)).map((n) => n.name!);
  let shownOnce = false;
  let ok = 0;
  for (const server of nodes) {
    let targets: string[] = [];
    try {
      const msg = await query(server.address, port, `_nodes.${ZONE}`, Type.SRV);
      const srv = msg.answer.filter((r) => r.type === Type.SRV).map((r) => r.data as SRVData);
      targets = srv.map((s) => s.target);
      if (!shownOnce) {
        shownOnce = true;
        say(`_nodes.${ZONE} SRV (every member, ordered by ID), asked at ${server.address}:`);
        for (const s of srv) say(`  ${s.priority} ${s.weight} ${s.port} ${s.target}`);
      }
    } catch {
      // counted as a failure below
    }
    if (checked(checks, targets.join(" ") === expected.join(" "))) ok++;
    else say(`  ! ${server.address} lists: ${targets.join(" ") || "nothing"}`);
  }
  say(
    ok === nodes.length
      ? `  the same ${expected.length} members from all ${nodes.length} nodes: OK`
      : `  members check: ${ok}/${nodes.length} nodes OK, FAILED`,
  );
}

/** dig's output (or why it failed), trimmed. */
async function runDig(args: string[]): Promise<string> {
  try {
    return (await dig(...args)).trim();
  } catch (err) {
    return (err as Error).message.trim();
  }
}

async function digExamples(nodes: Node[], port: number, checks: Checks): Promise<void> {
  const byId = [...nodes].sort((a, b) => (a.id ?? 0) - (b.id ?? 0));
  const target = byId[Math.min(2, byId.length - 1)];
  const examples: { args: string[]; expect: string[] }[] = [
    {
      args: [`@${nodes[0].address}`, "-p", String(port), "+short", target.name!.slice(0, -1)],
      expect: [target.address],
    },
    {
      args: [`@${nodes.at(-1)!.address}`, "-p", String(port), "+short", "_nodes.tf.local", "SRV"],
      expect: byId.map((n) => `0 100 ${SERVICE_PORT} ${n.name}`),
    },
  ];
  say("The same with dig:");
  for (const ex of examples) {
    say(`  $ dig ${ex.args.join(" ")}`);
    const out = await runDig(ex.args);
    for (const line of out.split("\n")) say(`  ${line}`);
    const right = checked(
      checks,
      out.split("\n").map((l) => l.trim()).join("\n") === ex.expect.join("\n"),
    );
    if (!right) say(`  ! expected: ${ex.expect.join(" | ")}`);
  }
}

// ------------------------------------------------------------------ lifecycle

/** Thrown to end the demo with an exit code after cleaning up. */
class Exit extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/** Every process the demo started (a second Ctrl-C kills them all). */
const children: Child[] = [];
/** The nodes started so far, in order. */
const startedNodes: Node[] = [];
/** etcd once it is starting: cleanup waits for the start to end, then stops it. */
let etcdStarting: Promise<TestEtcd> | undefined;
let tempDir: string | undefined;
let etcdEndpoint: string | undefined;
let stopping = false;
const stopRequested = new AbortController();

function register(proc: Child): void {
  children.push(proc);
  if (stopping) proc.signal("SIGKILL");
}

/**
 * Stops the nodes (SIGTERM: they release their names), then etcd, and removes
 * the temporary directory. Prints what it does when `verbose`.
 */
async function cleanup(verbose: boolean): Promise<void> {
  stopping = true;
  const live = startedNodes.filter((n) => n.proc.running);
  if (verbose && live.length) say(`Stopping ${live.length} node(s) with SIGTERM...`);
  await Promise.all(live.map(async (n) => {
    await n.proc.stop(STOP_GRACE_MS);
    if (verbose) say(`  node ${n.title} (pid ${n.proc.pid}) stopped: ${n.proc.describeExit()}`);
  }));
  const etcd = await etcdStarting?.catch(() => undefined);
  const etcdProc = etcd?.process;
  if (verbose && etcdProc?.running && etcdEndpoint && live.length) {
    try {
      const left = await claimedKeysInEtcd(etcdEndpoint);
      say(
        left === 0
          ? "  names released: etcd holds no worker names any more"
          : `  ! etcd still holds ${left} key(s) of worker names`,
      );
    } catch (err) {
      say(`  (could not ask etcd about the names: ${(err as Error).message})`);
    }
  }
  if (etcd) {
    await etcd[Symbol.asyncDispose]();
    if (verbose && etcdProc) say(`Stopped etcd (pid ${etcdProc.pid}).`);
  }
  if (tempDir) {
    await Deno.remove(tempDir, { recursive: true }).catch(() => {});
    if (verbose) say(`Removed ${tempDir}.`);
  }
}

/** Prints each change of the members DNS reports, until the demo stops. */
async function watchMembers(nodes: Node[], port: number, signal: AbortSignal): Promise<void> {
  let last = nodes.map((n) => n.name!).sort().join(" ");
  let silent = false;
  while (!signal.aborted) {
    await pause(1000, signal);
    if (signal.aborted) return;
    const live = nodes.filter((n) => n.proc.running);
    if (live.length === 0) {
      if (!silent) {
        say(`[${clock()}] no demo node is running any more; Ctrl-C stops etcd and cleans up`);
      }
      silent = true;
      continue;
    }
    silent = false;
    let msg: Message | undefined;
    for (const server of live) {
      try {
        msg = await query(server.address, port, `_nodes.${ZONE}`, Type.SRV);
        break;
      } catch {
        // try the next node
      }
    }
    if (!msg || signal.aborted) continue;
    const holders = new Map<string, string[]>();
    for (const r of msg.additional) {
      if (r.type === Type.A) {
        holders.set(r.name, [...(holders.get(r.name) ?? []), r.data as string]);
      }
    }
    const names = msg.answer.filter((r) => r.type === Type.SRV).map((r) =>
      (r.data as SRVData).target
    );
    const now = [...names].sort().join(" ");
    if (now === last) continue;
    const before = new Set(last.split(" ").filter(Boolean));
    const gone = [...before].filter((n) => !names.includes(n));
    const added = names.filter((n) => !before.has(n)).map((n) =>
      `${n} -> ${(holders.get(n) ?? ["?"]).join(",")}`
    );
    last = now;
    const changes = [
      gone.length ? `gone: ${gone.join(", ")}` : "",
      added.length ? `new: ${added.join(", ")}` : "",
    ].filter(Boolean).join("; ");
    say(
      `[${clock()}] DNS now lists ${names.length} member(s): ${
        names.map((n) => n.split(".")[0]).join(" ") || "none"
      } (${changes})`,
    );
  }
}

function printHints(nodes: Node[], port: number, dig: boolean): void {
  const deno = denoCommand();
  const main = shown(MAIN);
  const byId = [...nodes].sort((a, b) => (a.id ?? 0) - (b.id ?? 0));
  const victim = byId[Math.min(2, byId.length - 1)];
  const other = nodes.find((n) => n !== victim) ?? nodes[0];
  say("Try it (in another terminal):");
  if (!dig) {
    say("  (dig is not installed: apt-get install bind9-dnsutils, or brew install bind)");
  }
  say(`  dig @${other.address} -p ${port} +short ${victim.name}`);
  say(`  dig @${other.address} -p ${port} +short _nodes.tf.local SRV`);
  say(`  dig @${other.address} -p ${port} +short -x ${victim.address}       # PTR`);
  say(
    `  dig @${other.address} -p ${port} example.org              # whoami: your address and port`,
  );
  say(`  ${deno} run -A ${main} -conf ${victim.corefile} whoami`);
  say(`  ${deno} run -A ${main} -conf ${victim.corefile} tf-config`);
  say(`  cat ${victim.dir}/claim.json`);
  say(`  tail -f ${victim.proc.logPath}`);
  if (onPath("etcdctl") && etcdEndpoint) {
    say(`  ETCDCTL_API=3 etcdctl --endpoints=${etcdEndpoint} get --prefix /skydns/local/tf/`);
  }
  say(
    `  kill ${victim.proc.pid}        # stop ${victim.name} (on ${victim.address}): its name vanishes at once`,
  );
  say(
    `  kill -9 ${victim.proc.pid}     # or kill it hard: the name vanishes when its ${LEASE_SECONDS}s lease ends`,
  );
  say(
    `  ${deno} run -A ${main} -conf ${victim.corefile}   # then restart it: it gets ${victim.name} back`,
  );
  say("    (stop such a restarted node yourself before the demo: the demo stops only its own)");
  say("");
  say("Changes of the membership are printed below. Ctrl-C to stop the cluster and etcd.");
}

async function main(): Promise<number> {
  const options = parseOptions(Deno.args);
  if (typeof Deno.listenDatagram !== "function") {
    fail(
      "demo: Deno.listenDatagram is not available; run the demo from the project folder " +
        "(deno task demo), whose deno.json enables it",
    );
    return 1;
  }

  const { dig } = await ensurePrerequisites(options.install);
  const portProblem = checkDnsPort(options.port);
  if (portProblem) {
    fail(portProblem);
    return 1;
  }

  // Stop cleanly on Ctrl-C, SIGTERM or a closed terminal, at any point.
  let interruptedBy: string | undefined;
  let interruptedAt = 0;
  const signals: Deno.Signal[] = Deno.build.os === "windows"
    ? ["SIGINT"]
    : ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const sig of signals) {
    Deno.addSignalListener(sig, () => {
      if (interruptedBy) {
        // `deno task` and npx pass the terminal's Ctrl-C on as well, so the
        // same Ctrl-C can arrive twice; only a later one means "hurry up".
        if (performance.now() - interruptedAt < 2000) return;
        say(`${sig} again: killing everything`);
        for (const p of children) p.signal("SIGKILL");
        return;
      }
      interruptedBy = sig;
      interruptedAt = performance.now();
      say(`\n${sig}: stopping the demo (press Ctrl-C again to kill everything at once)...`);
      stopRequested.abort();
    });
  }
  const interrupted = new Promise<never>((_, reject) =>
    stopRequested.signal.addEventListener("abort", () => reject(new Exit(options.once ? 130 : 0)))
  );
  interrupted.catch(() => {});
  /** Runs a step; a signal ends the wait for it at once. */
  const step = <T>(p: Promise<T>) => Promise.race([p, interrupted]);

  tempDir = await Deno.makeTempDir({ prefix: "idetcd-demo-" });
  let code = 0;
  try {
    // Compile and cache main.ts and its dependencies once, so that five nodes
    // starting together do not all download them.
    say(
      `idetcd demo: etcd and ${ADDRESSES.length} nodes on ${ADDRESSES[0]} .. ${ADDRESSES.at(-1)}`,
    );
    say(`Temporary files (removed at exit): ${tempDir}`);
    const slow = setTimeout(
      () => say("Loading main.ts (the first run downloads its dependencies)..."),
      2000,
    );
    const check = await step(
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", MAIN, "-version"],
        cwd: ROOT,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output(),
    ).finally(() => clearTimeout(slow));
    const version = new TextDecoder().decode(check.stdout).split("\n")[0];
    if (!check.success) {
      fail(`demo: ${shown(MAIN)} does not run:\n${new TextDecoder().decode(check.stderr)}`);
      throw new Exit(1);
    }

    etcdStarting = startDemoEtcd(tempDir);
    const etcd = await step(etcdStarting);
    etcdEndpoint = etcd.endpoint;
    say(`etcd on ${etcd.endpoint} (pid ${etcd.process?.pid}), log ${tempDir}/etcd.log`);

    const nodes: Node[] = [];
    for (const [i, address] of ADDRESSES.entries()) {
      nodes.push(await step(startNode(address, i, tempDir, options.port, etcd.endpoint)));
    }
    say(
      `Started ${nodes.length} nodes (${version}) with pattern ${PATTERN}, limit ${LIMIT}, ` +
        `DNS port ${options.port}; waiting for their claims...`,
    );
    const started = await step(Promise.allSettled(nodes.map(nodeReady)));
    const broken = nodes.filter((_, i) => started[i].status === "rejected");
    if (broken.length) {
      for (const n of broken) {
        const why = (started[nodes.indexOf(n)] as PromiseRejectedResult).reason as Error;
        fail(`demo: ${why.message}. The end of its log:`);
        fail(n.proc.tail());
      }
      throw new Exit(1);
    }

    say("");
    say("Claimed names (address -> name):");
    for (const n of nodes) {
      say(`  ${pad(n.address, 10)} ->  ${pad(n.name!, 18)} (ID ${n.id}, pid ${n.proc.pid})`);
    }
    const names = new Set(nodes.map((n) => n.name));
    const checks: Checks = { passed: 0, failed: 0 };
    if (!checked(checks, names.size === nodes.length)) {
      say(`  ! the ${nodes.length} nodes claimed only ${names.size} distinct names`);
    }
    say(`Logs: ${tempDir}/node-<address>/node.log, Corefiles next to them`);
    const sync = await step(converge(nodes, options.port));
    if (sync.lagging.length === 0) {
      say(`Every node lists all ${nodes.length} members (${sync.ms} ms after the last claim).`);
    } else {
      say(
        `! after ${sync.ms} ms, ${
          sync.lagging.map((n) => n.address).join(", ")
        } still do(es) not list all ${nodes.length} members`,
      );
      for (const n of sync.lagging) {
        say(`  the end of the log of ${n.address} (${n.name}):`);
        say(n.proc.tail(10));
      }
    }
    say("");
    await step(resolutionMatrix(nodes, options.port, checks));
    say("");
    await step(membersCheck(nodes, options.port, checks));
    say("");
    if (dig) {
      await step(digExamples(nodes, options.port, checks));
      say("");
    }
    const total = checks.passed + checks.failed;
    say(
      checks.failed === 0
        ? `All ${total} checks passed.`
        : `${checks.failed} of ${total} checks FAILED.`,
    );
    if (options.once) {
      code = checks.failed === 0 ? 0 : 1;
    } else {
      say("");
      printHints(nodes, options.port, dig);
      for (const n of nodes) {
        n.proc.status.then(() => {
          if (stopping) return;
          say(
            `[${clock()}] node ${n.address} (${n.name}, pid ${n.proc.pid}) exited: ${n.proc.describeExit()}`,
          );
        });
      }
      await watchMembers(nodes, options.port, stopRequested.signal);
    }
  } catch (err) {
    if (err instanceof Exit) code = err.code;
    else {
      fail(`demo: ${(err as Error).stack ?? err}`);
      code = 1;
    }
  }
  const verbose = !options.once || interruptedBy !== undefined || code !== 0;
  await cleanup(verbose);
  if (!verbose) {
    say(`Stopped the nodes and etcd; removed ${tempDir}.`);
  }
  return code;
}

if (import.meta.main) {
  Deno.exit(await main());
}
