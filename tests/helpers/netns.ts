/**
 * Multi-host tests on one machine: a Linux bridge in the root network
 * namespace and one network namespace per "host", each joined to the bridge
 * by a veth pair. Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip`
 * (iproute2) and `iptables`; {@link netnsSupport} says whether this machine
 * can, and {@link needsNetns} makes a test definition that is reported as
 * IGNORED, with the reason in its name, where it cannot.
 *
 * The layout of one network (X is picked per network, starting from the test
 * process's pid, so test files running at the same time do not collide):
 *
 * ```txt
 * root namespace   bridge idt<pid>-<rnd>b   10.231.X.2/24  probe address (primary: the
 *                                                          source of the test's own traffic)
 *                                           10.231.X.1/24  etcd address (for startEtcdOn)
 * host 1           namespace idt<pid>-<rnd>h1, eth0 10.231.X.11/24, lo up
 * host 2           namespace idt<pid>-<rnd>h2, eth0 10.231.X.12/24, lo up
 * ...
 * ```
 *
 * No namespace gets a default route, and nothing here touches forwarding or
 * NAT: traffic stays between these namespaces and the root namespace's two
 * bridge addresses.
 *
 * **Why two root addresses.** etcd and the test both live in the root
 * namespace. `host.cutFrom(net.etcdAddress)` drops, inside the host's
 * namespace, every packet to or from the etcd address (iptables INPUT and
 * OUTPUT, so the host sees neither requests nor replies). The test's own
 * traffic to the host (DNS queries, HTTP probes) leaves the root namespace
 * from the probe address, because the probe address is the bridge's primary
 * address and so the kernel's source for the subnet route; it is not cut.
 * Bind a root-side socket to `net.probeAddress` (dig `-b`) to make that
 * explicit. `cutFrom(address, port)` cuts only that remote port (TCP and UDP).
 *
 * **Cleanup.** `await using net = await createTestNetwork(...)` deletes the
 * namespaces (and with them their iptables rules and any process still inside),
 * the veth pairs, the bridge and `/etc/netns/NAME`. A process that exits with
 * `Deno.exit` cleans up on `unload`. Anything left by a process that died
 * (SIGKILL, Ctrl-C) is swept by the next {@link createTestNetwork} (or by
 * `deno run -A tests/helpers/netns.ts`): every namespace, link and
 * `/etc/netns` folder named `idt<pid36>-...` whose owner pid is gone.
 *
 * **Processes inside.** `host.run(cmd, args)` starts `ip netns exec NAME cmd
 * args`; `ip netns exec` keeps the environment (HOME, DENO_DIR, PATH) and
 * execs the command in place, so the child's pid is the command's own and
 * `kill()` reaches it. `host.deno(args)` runs `Deno.execPath()` that way, with
 * the same module cache as the test.
 *
 * @module
 */

import { startEtcd, type TestEtcd } from "./etcd.ts";
import { waitFor } from "./wait.ts";
import { which } from "../../scripts/system.ts";

/** Every resource name starts with this, then the owner's pid in base 36, "-", 3 random chars. */
const PREFIX = "idt";
/** Matches a harness resource name; group 1 is the owner pid in base 36. */
const NAME_RE = /^idt([0-9a-z]{1,6})-[0-9a-z]{3}(?:[bhvps][0-9a-z]*)?$/;
/** Owner records and subnet locks (on tmpfs: gone after a reboot, like the namespaces). */
const STATE_DIR = "/run/idetcd-netns";
/** The harness's /16; the third octet is chosen per network. */
const NET16 = "10.231";
/** The iptables chains a cut lives in, inside a host's namespace. */
const CHAIN_IN = "IDETCD-CUT-IN";
const CHAIN_OUT = "IDETCD-CUT-OUT";

/** Whether this machine can run the namespace tests, and why not. */
export type NetnsSupport =
  | { ok: true; ip: string; iptables: string }
  | { ok: false; reason: string };

/** Options for {@link TestHost.run} and {@link TestHost.output}: `Deno.CommandOptions` without args. */
export type RunOptions = Omit<Deno.CommandOptions, "args">;

/** One host: a network namespace with one interface (eth0) on the bridge. */
export interface TestHost {
  /** 1-based position in {@link TestNetwork.hosts}. */
  readonly index: number;
  /** The namespace's name (for `ip netns exec`, `ip -n`, `/etc/netns/NAME`). */
  readonly name: string;
  /** The host's IPv4 address on eth0, 10.231.X.(10 + index). */
  readonly address: string;
  /** Starts `cmd args` inside the namespace (stdin defaults to "null"). */
  run(cmd: string, args?: string[], options?: RunOptions): Deno.ChildProcess;
  /** Runs `cmd args` inside the namespace to completion; stdout and stderr piped by default. */
  output(cmd: string, args?: string[], options?: RunOptions): Promise<Deno.CommandOutput>;
  /** Starts this Deno binary (`Deno.execPath()`) inside the namespace, e.g. `["run", "-A", "main.ts"]`. */
  deno(args: string[], options?: RunOptions): Deno.ChildProcess;
  /**
   * Drops all traffic between this host and `address` (or only that address's
   * `port`, TCP and UDP), in both directions, from now until {@link heal}.
   * Packets already in flight are dropped too; established connections stall.
   */
  cutFrom(address: string, port?: number): Promise<void>;
  /** Removes every cut of this host. */
  heal(): Promise<void>;
}

/** Options for {@link createTestNetwork}. */
export interface TestNetworkOptions {
  /** How many hosts (namespaces), 1 to 200. */
  hosts: number;
  /**
   * Host-to-host frames cross the bridge, and with br_netfilter loaded they pass the root
   * namespace's iptables FORWARD chain. "auto" (default) inserts an ACCEPT rule for this bridge
   * only when a FORWARD chain is not plain ACCEPT (a Docker host); "always" inserts it anyway;
   * "never" leaves the firewall alone. The rule is removed on dispose.
   */
  forwardRule?: "auto" | "always" | "never";
}

/** A running test network; dispose it with `await using`. */
export interface TestNetwork extends AsyncDisposable {
  /** The prefix of every name it created, `idt<pid36>-<rnd>`. */
  readonly id: string;
  /** The bridge in the root namespace. */
  readonly bridge: string;
  /** "10.231.X.0/24". */
  readonly subnet: string;
  /** Root-side address for etcd (10.231.X.1); what {@link TestHost.cutFrom} cuts. */
  readonly etcdAddress: string;
  /** Root-side address the test's own traffic to the hosts comes from (10.231.X.2). */
  readonly probeAddress: string;
  /** The hosts, `hosts[0]` is host 1. */
  readonly hosts: readonly TestHost[];
  /** The root-namespace links it created (the hosts' veth ends, then the bridge), for checks. */
  readonly links: readonly string[];
  /** The namespaces it created. */
  readonly namespaces: readonly string[];
  /** Deletes everything (idempotent). */
  dispose(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Commands

/** The result of one command. */
interface CmdResult {
  ok: boolean;
  stdout: string;
  stderr: string;
}

/** One command of a teardown plan. */
interface Cmd {
  cmd: string;
  args: string[];
}

const decoder = new TextDecoder();

function toResult(out: Deno.CommandOutput): CmdResult {
  return {
    ok: out.success,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
}

async function exec(cmd: string, args: string[]): Promise<CmdResult> {
  const out = await new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  return toResult(out);
}

function execSync(cmd: string, args: string[]): CmdResult {
  const out = new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .outputSync();
  return toResult(out);
}

/** Runs a command and throws with its stderr when it fails. */
async function must(cmd: string, args: string[]): Promise<string> {
  const r = await exec(cmd, args);
  if (!r.ok) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr.trim() || "failed"}`);
  return r.stdout;
}

// ---------------------------------------------------------------------------
// Support check

let support: NetnsSupport | undefined;

/** CAP_NET_ADMIN and CAP_SYS_ADMIN (netns mounts) in the effective set. */
function hasNetnsCaps(): boolean {
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const hex = status.match(/^CapEff:\s*([0-9a-f]+)$/m)?.[1];
    if (!hex) return false;
    const caps = BigInt(`0x${hex}`);
    return (caps & (1n << 12n)) !== 0n && (caps & (1n << 21n)) !== 0n;
  } catch {
    return false;
  }
}

/**
 * Whether this machine can run namespace tests: Linux, root (CAP_NET_ADMIN and CAP_SYS_ADMIN),
 * `ip`, and an `iptables` that works inside a namespace (iptables-nft, then iptables-legacy, then
 * iptables: each is tried for real in a scratch namespace that is deleted again). The result is
 * computed once. It only reports these conditions; any other error is thrown.
 */
export function netnsSupport(): NetnsSupport {
  support ??= probeSupport();
  return support;
}

function probeSupport(): NetnsSupport {
  if (Deno.build.os !== "linux") {
    return { ok: false, reason: `network namespaces need Linux, this is ${Deno.build.os}` };
  }
  if (!hasNetnsCaps()) {
    return {
      ok: false,
      reason:
        `needs root: CAP_NET_ADMIN and CAP_SYS_ADMIN, which this process (uid ${Deno.uid()}) lacks`,
    };
  }
  const ip = which("ip");
  if (!ip) return { ok: false, reason: "`ip` (iproute2) is not installed" };
  const candidates = ["iptables-nft", "iptables-legacy", "iptables"]
    .map((name) => which(name))
    .filter((path): path is string => path !== undefined);
  if (candidates.length === 0) return { ok: false, reason: "`iptables` is not installed" };

  const ns = `${newId()}s`;
  const add = execSync(ip, ["netns", "add", ns]);
  if (!add.ok) {
    return { ok: false, reason: `cannot create a network namespace: ${add.stderr.trim()}` };
  }
  try {
    for (
      const args of [
        ["-n", ns, "link", "set", "lo", "up"],
        ["-n", ns, "link", "add", "br0", "type", "bridge"],
        ["-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
      ]
    ) {
      const r = execSync(ip, args);
      if (!r.ok) {
        return { ok: false, reason: `ip ${args.slice(2).join(" ")}: ${r.stderr.trim()}` };
      }
    }
    const errors: string[] = [];
    for (const iptables of candidates) {
      const rule = ["OUTPUT", "-d", "192.0.2.1/32", "-j", "DROP"];
      const added = execSync(ip, ["netns", "exec", ns, iptables, "-w", "-A", ...rule]);
      const listed = execSync(ip, ["netns", "exec", ns, iptables, "-w", "-S", "OUTPUT"]);
      if (added.ok && listed.ok && listed.stdout.includes("-d 192.0.2.1/32 -j DROP")) {
        return { ok: true, ip, iptables };
      }
      errors.push(`${iptables}: ${(added.stderr || listed.stderr).trim()}`);
    }
    return { ok: false, reason: `no iptables works inside a namespace (${errors.join("; ")})` };
  } finally {
    execSync(ip, ["netns", "del", ns]);
  }
}

function requireSupport(): { ip: string; iptables: string } {
  const s = netnsSupport();
  if (!s.ok) throw new Error(`network namespaces are not available: ${s.reason}`);
  return s;
}

let reasonPrinted = false;

/**
 * Wraps a `Deno.test` definition that needs namespaces: where {@link netnsSupport} says no, the
 * test is ignored, its name ends with the reason, and the reason is printed once. Errors other
 * than the support conditions are not caught. Usage:
 * `Deno.test(needsNetns({ name: "...", async fn() { ... } }))`.
 */
export function needsNetns(definition: Deno.TestDefinition): Deno.TestDefinition {
  const s = netnsSupport();
  if (s.ok) return definition;
  if (!reasonPrinted) {
    reasonPrinted = true;
    console.warn(`network namespace tests are ignored: ${s.reason}`);
  }
  return { ...definition, name: `${definition.name} (ignored: ${s.reason})`, ignore: true };
}

// ---------------------------------------------------------------------------
// Names, owners, locks

/** A fresh id: prefix, this pid in base 36, "-", 3 random base-36 chars (at most 12 chars). */
function newId(): string {
  const rnd = Math.floor(Math.random() * 36 ** 3).toString(36).padStart(3, "0");
  return `${PREFIX}${Deno.pid.toString(36)}-${rnd}`;
}

/** The start time of a process (field 22 of /proc/PID/stat), or undefined when it is gone. */
function processStart(pid: number): string | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** What {@link STATE_DIR}/ID.json says about a network. */
interface OwnerRecord {
  pid: number;
  start: string;
  /** Subnet lock file this network holds. */
  lock?: string;
  /** Root-namespace FORWARD rules it inserted: the iptables binary and the rule spec. */
  forward: { iptables: string; rule: string[] }[];
}

function readOwner(id: string): OwnerRecord | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(`${STATE_DIR}/${id}.json`));
  } catch {
    return undefined;
  }
}

function writeOwner(id: string, record: OwnerRecord): void {
  Deno.mkdirSync(STATE_DIR, { recursive: true });
  Deno.writeTextFileSync(`${STATE_DIR}/${id}.json`, JSON.stringify(record));
}

/** The id part (`idt<pid36>-<rnd>`) of a harness name, or undefined for other names. */
function idOf(name: string): string | undefined {
  const m = NAME_RE.exec(name);
  return m ? name.slice(0, PREFIX.length + m[1].length + 4) : undefined;
}

/** True for a harness bridge name (`ID` + "b"); veths are deleted before bridges. */
function isBridge(name: string): boolean {
  return name === `${idOf(name)}b`;
}

/** True while the process that created `id` runs (same pid and, when recorded, same start time). */
function ownerAlive(id: string): boolean {
  const pid = parseInt(id.slice(PREFIX.length, id.indexOf("-")), 36);
  const start = processStart(pid);
  if (start === undefined) return false;
  const record = readOwner(id);
  return record === undefined || record.start === start;
}

// ---------------------------------------------------------------------------
// Teardown (shared by dispose, unload and the sweep)

/** Everything to delete for one or more networks. */
interface Plan {
  namespaces: string[];
  /** Root-namespace links; veths before bridges. */
  links: string[];
  etcDirs: string[];
  forward: { iptables: string; rule: string[] }[];
  files: string[];
}

/** Yields the commands of a teardown, kills and removes files itself; returns the errors. */
function* teardown(ip: string, plan: Plan): Generator<Cmd, string[], CmdResult> {
  const errors: string[] = [];
  for (const ns of plan.namespaces) {
    const pids = yield { cmd: ip, args: ["netns", "pids", ns] };
    for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch {
        // exited meanwhile
      }
    }
  }
  // Deleting the root end of a veth deletes the pair at once; deleting only the namespace
  // would leave the root end until the kernel's asynchronous namespace cleanup runs.
  for (const link of plan.links) {
    const r = yield { cmd: ip, args: ["link", "del", link] };
    if (!r.ok && !/Cannot find device|does not exist/i.test(r.stderr)) {
      errors.push(`ip link del ${link}: ${r.stderr.trim()}`);
    }
  }
  for (const ns of plan.namespaces) {
    const r = yield { cmd: ip, args: ["netns", "del", ns] };
    if (!r.ok && !/No such file|not found/i.test(r.stderr)) {
      errors.push(`ip netns del ${ns}: ${r.stderr.trim()}`);
    }
  }
  for (const { iptables, rule } of plan.forward) {
    const r = yield { cmd: iptables, args: ["-w", "-D", ...rule] };
    if (!r.ok && !/does a matching rule exist|Bad rule|No chain/i.test(r.stderr)) {
      errors.push(`${iptables} -D ${rule.join(" ")}: ${r.stderr.trim()}`);
    }
  }
  for (const path of [...plan.etcDirs, ...plan.files]) {
    try {
      Deno.removeSync(path, { recursive: true });
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) errors.push(`remove ${path}: ${err}`);
    }
  }
  return errors;
}

async function runTeardown(ip: string, plan: Plan): Promise<string[]> {
  const steps = teardown(ip, plan);
  let step = steps.next();
  while (!step.done) step = steps.next(await exec(step.value.cmd, step.value.args));
  return step.value;
}

function runTeardownSync(ip: string, plan: Plan): string[] {
  const steps = teardown(ip, plan);
  let step = steps.next();
  while (!step.done) step = steps.next(execSync(step.value.cmd, step.value.args));
  return step.value;
}

/** Plans of the networks this process has not disposed yet, torn down on `unload`. */
const live = new Map<string, Plan>();

globalThis.addEventListener("unload", () => {
  const s = support;
  if (!s?.ok) return;
  for (const [id, plan] of live) {
    live.delete(id);
    runTeardownSync(s.ip, plan);
  }
});

/** What {@link sweepStaleNetworks} removed. */
export interface SweepReport {
  /** Network namespaces removed. */
  namespaces: string[];
  /** Links (veth, bridge) removed. */
  links: string[];
  /** /etc/netns folders removed. */
  etcDirs: string[];
  /** Ids of dead owners whose records were removed. */
  owners: string[];
}

/**
 * Deletes the namespaces, links, `/etc/netns` folders, FORWARD rules and records of every network
 * whose owner process is gone (a test killed with SIGKILL or Ctrl-C). Networks of live processes
 * are never touched. {@link createTestNetwork} runs it first.
 */
export async function sweepStaleNetworks(): Promise<SweepReport> {
  const { ip } = requireSupport();
  const dead = (name: string) => {
    const id = idOf(name);
    return id !== undefined && !ownerAlive(id);
  };
  const namespaces = (await must(ip, ["netns", "list"])).split("\n")
    .map((line) => line.split(" ")[0]).filter((name) => name && dead(name));
  const links = (await must(ip, ["-o", "link", "show"])).split("\n")
    .map((line) => line.split(": ")[1]?.split("@")[0] ?? "").filter((name) => name && dead(name))
    .sort((a, b) => Number(isBridge(a)) - Number(isBridge(b)));
  const etcDirs: string[] = [];
  try {
    for (const entry of Deno.readDirSync("/etc/netns")) {
      if (dead(entry.name)) etcDirs.push(`/etc/netns/${entry.name}`);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const owners: string[] = [];
  const files: string[] = [];
  const forward: Plan["forward"] = [];
  try {
    for (const entry of Deno.readDirSync(STATE_DIR)) {
      const id = idOf(entry.name.replace(/\.json$/, ""));
      if (entry.name.endsWith(".json") && id !== undefined && !ownerAlive(id)) {
        const record = readOwner(id);
        owners.push(id);
        forward.push(...record?.forward ?? []);
        if (record?.lock) files.push(record.lock);
        files.push(`${STATE_DIR}/${entry.name}`);
      } else if (entry.name.startsWith("subnet-")) {
        const holder = Deno.readTextFileSync(`${STATE_DIR}/${entry.name}`).trim();
        if (idOf(holder) === undefined || !ownerAlive(holder)) {
          files.push(`${STATE_DIR}/${entry.name}`);
        }
      }
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const errors = await runTeardown(ip, { namespaces, links, etcDirs, forward, files });
  if (errors.length > 0) throw new Error(`sweep: ${errors.join("; ")}`);
  return { namespaces, links, etcDirs, owners };
}

// ---------------------------------------------------------------------------
// The network

const IPV4_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Claims a free 10.231.X.0/24: not on any interface or route here, and not locked by another run. */
async function claimSubnet(ip: string, id: string): Promise<{ octet: number; lock: string }> {
  const inUse = await must(ip, ["-4", "-o", "addr", "show"]) +
    await must(ip, ["-4", "route", "show", "table", "all"]);
  Deno.mkdirSync(STATE_DIR, { recursive: true });
  const first = Deno.pid % 254;
  for (let k = 0; k < 254; k++) {
    const octet = 1 + (first + k) % 254;
    if (inUse.includes(`${NET16}.${octet}.`)) continue;
    const lock = `${STATE_DIR}/subnet-${octet}`;
    try {
      Deno.writeTextFileSync(lock, id, { createNew: true });
      return { octet, lock };
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    }
  }
  throw new Error(`no free ${NET16}.X.0/24 subnet`);
}

/** Whether a root FORWARD chain (per `iptables -S FORWARD`) could drop bridged frames. */
function forwardMayDrop(listing: string): boolean {
  const lines = listing.split("\n").map((l) => l.trim()).filter(Boolean);
  return !(lines.length === 1 && lines[0] === "-P FORWARD ACCEPT");
}

/** The root namespace's iptables backends that hold rules (nft always; legacy when loaded). */
function rootIptables(): string[] {
  const found: string[] = [];
  const nft = which("iptables-nft");
  if (nft) found.push(nft);
  let legacyLoaded = false;
  try {
    legacyLoaded = /^filter$/m.test(Deno.readTextFileSync("/proc/net/ip_tables_names"));
  } catch {
    // legacy tables not loaded: nothing there can drop
  }
  const legacy = which("iptables-legacy");
  if (legacyLoaded && legacy) found.push(legacy);
  if (found.length === 0) {
    const plain = which("iptables");
    if (plain) found.push(plain);
  }
  return found;
}

/**
 * Creates a bridge with the etcd and probe addresses in the root namespace and `hosts` namespaces
 * joined to it, and waits until every bridge port forwards. Sweeps stale networks of dead
 * processes first. Throws (after removing what it created) when any step fails.
 */
export async function createTestNetwork(options: TestNetworkOptions): Promise<TestNetwork> {
  const { ip, iptables } = requireSupport();
  const count = options.hosts;
  if (!Number.isInteger(count) || count < 1 || count > 200) {
    throw new Error(`hosts must be an integer from 1 to 200, got ${count}`);
  }
  await sweepStaleNetworks();

  const id = newId();
  const start = processStart(Deno.pid) ?? "";
  const record: OwnerRecord = { pid: Deno.pid, start, forward: [] };
  writeOwner(id, record);
  const plan: Plan = {
    namespaces: [],
    links: [],
    etcDirs: [],
    forward: [],
    files: [`${STATE_DIR}/${id}.json`],
  };
  live.set(id, plan);

  const dispose = async () => {
    if (!live.delete(id)) return;
    const errors = await runTeardown(ip, plan);
    if (errors.length > 0) throw new Error(`dispose ${id}: ${errors.join("; ")}`);
  };

  try {
    const { octet, lock } = await claimSubnet(ip, id);
    record.lock = lock;
    writeOwner(id, record);
    plan.files.push(lock);
    const base = `${NET16}.${octet}`;
    const etcdAddress = `${base}.1`;
    const probeAddress = `${base}.2`;
    const bridge = `${id}b`;

    // The bridge; the probe address first, so it is primary and the source of root-side traffic.
    plan.links.push(bridge);
    await must(ip, ["link", "add", bridge, "type", "bridge"]);
    await must(ip, ["addr", "add", `${probeAddress}/24`, "dev", bridge]);
    await must(ip, ["addr", "add", `${etcdAddress}/24`, "dev", bridge]);
    await must(ip, ["link", "set", bridge, "up"]);

    const mode = options.forwardRule ?? "auto";
    if (mode !== "never") {
      for (const binary of rootIptables()) {
        const listing = await exec(binary, ["-w", "-S", "FORWARD"]);
        if (mode === "always" || (listing.ok && forwardMayDrop(listing.stdout))) {
          const rule = ["FORWARD", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", id];
          record.forward.push({ iptables: binary, rule: [...rule, "-j", "ACCEPT"] });
          writeOwner(id, record);
          plan.forward.push({ iptables: binary, rule: [...rule, "-j", "ACCEPT"] });
          await must(binary, ["-w", "-I", ...rule, "-j", "ACCEPT"]);
        }
      }
    }

    const hosts = await Promise.all(
      Array.from(
        { length: count },
        (_, k) => createHost({ ip, iptables, id, plan, bridge, index: k + 1, base }),
      ),
    );

    await waitFor(async () => {
      const ports = (await must(ip, ["-d", "-o", "link", "show", "master", bridge]))
        .split("\n").filter(Boolean);
      return ports.length === count &&
        ports.every((p) => p.includes("state UP") && p.includes("bridge_slave state forwarding"));
    }, { timeoutMs: 10_000, what: `every port of ${bridge} up and forwarding` });

    return {
      id,
      bridge,
      subnet: `${base}.0/24`,
      etcdAddress,
      probeAddress,
      hosts,
      links: plan.links,
      namespaces: plan.namespaces,
      dispose,
      [Symbol.asyncDispose]: dispose,
    };
  } catch (err) {
    await dispose().catch(() => {});
    throw err;
  }
}

interface HostSetup {
  ip: string;
  iptables: string;
  id: string;
  plan: Plan;
  bridge: string;
  index: number;
  base: string;
}

async function createHost(s: HostSetup): Promise<TestHost> {
  const { ip, iptables } = s;
  const tag = s.index.toString(36);
  const name = `${s.id}h${tag}`;
  const veth = `${s.id}v${tag}`;
  const peer = `${s.id}p${tag}`;
  const address = `${s.base}.${10 + s.index}`;

  s.plan.namespaces.push(name);
  s.plan.etcDirs.push(`/etc/netns/${name}`);
  await must(ip, ["netns", "add", name]);
  s.plan.links.unshift(veth);
  await must(ip, ["link", "add", veth, "type", "veth", "peer", "name", peer, "netns", name]);
  await must(ip, ["link", "set", veth, "master", s.bridge, "up"]);
  await must(ip, ["-n", name, "link", "set", peer, "name", "eth0"]);
  await must(ip, ["-n", name, "addr", "add", `${address}/24`, "dev", "eth0"]);
  await must(ip, ["-n", name, "link", "set", "eth0", "up"]);
  await must(ip, ["-n", name, "link", "set", "lo", "up"]);

  const nsArgs = (cmd: string, args: string[]) => ["netns", "exec", name, cmd, ...args];
  const ipt = (...args: string[]) => must(ip, nsArgs(iptables, ["-w", ...args]));
  // Cuts and heals of one host run one after another.
  let queue: Promise<unknown> = Promise.resolve();
  let chains = false;
  const serial = (job: () => Promise<void>): Promise<void> => {
    const next = queue.then(job);
    queue = next.catch(() => {});
    return next;
  };

  const host: TestHost = {
    index: s.index,
    name,
    address,
    run(cmd, args = [], options = {}) {
      return new Deno.Command(ip, { stdin: "null", ...options, args: nsArgs(cmd, args) }).spawn();
    },
    output(cmd, args = [], options = {}) {
      return new Deno.Command(ip, {
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        ...options,
        args: nsArgs(cmd, args),
      }).output();
    },
    deno(args, options) {
      return host.run(Deno.execPath(), args, options);
    },
    cutFrom(remote, port) {
      if (!IPV4_RE.test(remote)) {
        return Promise.reject(new Error(`cutFrom: not an IPv4 address: ${remote}`));
      }
      if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
        return Promise.reject(new Error(`cutFrom: bad port ${port}`));
      }
      return serial(async () => {
        if (!chains) {
          await ipt("-N", CHAIN_IN);
          await ipt("-N", CHAIN_OUT);
          await ipt("-I", "INPUT", "-j", CHAIN_IN);
          await ipt("-I", "OUTPUT", "-j", CHAIN_OUT);
          chains = true;
        }
        if (port === undefined) {
          await ipt("-A", CHAIN_OUT, "-d", remote, "-j", "DROP");
          await ipt("-A", CHAIN_IN, "-s", remote, "-j", "DROP");
          return;
        }
        for (const proto of ["tcp", "udp"]) {
          const p = String(port);
          await ipt("-A", CHAIN_OUT, "-d", remote, "-p", proto, "--dport", p, "-j", "DROP");
          await ipt("-A", CHAIN_IN, "-s", remote, "-p", proto, "--sport", p, "-j", "DROP");
        }
      });
    },
    heal() {
      return serial(async () => {
        if (!chains) return;
        await ipt("-F", CHAIN_IN);
        await ipt("-F", CHAIN_OUT);
      });
    },
  };
  return host;
}

// ---------------------------------------------------------------------------
// Per-namespace /etc files

/**
 * Writes `/etc/netns/NAME/FILE`, which `ip netns exec` bind-mounts over `/etc/FILE` for every
 * process started in the host afterwards (not for processes already running). Removed when the
 * network is disposed.
 */
export async function writeNetnsEtcFile(
  host: TestHost,
  file: string,
  content: string,
): Promise<void> {
  if (file.includes("/")) throw new Error(`not a file name: ${file}`);
  const dir = `/etc/netns/${host.name}`;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${dir}/${file}`, content);
}

/** Makes `/etc/resolv.conf` inside the host name `nameserver` (and nothing else). */
export function writeResolvConf(
  host: TestHost,
  nameserver: string,
  options: { search?: string[] } = {},
): Promise<void> {
  const lines = [`nameserver ${nameserver}`];
  if (options.search?.length) lines.push(`search ${options.search.join(" ")}`);
  return writeNetnsEtcFile(host, "resolv.conf", lines.join("\n") + "\n");
}

/** Makes `/etc/hosts` inside the host: localhost plus `names` (hostname to address). */
export function writeHosts(host: TestHost, names: Record<string, string>): Promise<void> {
  const lines = ["127.0.0.1 localhost", "::1 localhost"];
  for (const [name, address] of Object.entries(names)) lines.push(`${address} ${name}`);
  return writeNetnsEtcFile(host, "hosts", lines.join("\n") + "\n");
}

// ---------------------------------------------------------------------------
// etcd on a bridge address

/** A TCP port that is free on `address` right now. */
export function freePortOn(address: string): number {
  const listener = Deno.listen({ hostname: address, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/**
 * Starts a real etcd listening for clients (and peers) only on `address`, typically
 * {@link TestNetwork.etcdAddress}; same interface as `startEtcd` in etcd.ts. `ctl` runs etcdctl
 * from the root namespace.
 */
export function startEtcdOn(address: string): Promise<TestEtcd> {
  return startEtcd({
    host: address,
    clientPort: freePortOn(address),
    peerPort: freePortOn(address),
  });
}

if (import.meta.main) {
  const s = netnsSupport();
  if (!s.ok) {
    console.error(`nothing to sweep: ${s.reason}`);
  } else {
    console.log(JSON.stringify(await sweepStaleNetworks()));
  }
}
