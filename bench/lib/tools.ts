/**
 * The benchmark's external tools (`dnsperf`, `knotd`, `etcd`, `etcdctl`):
 * finding them, installing them with apt when that is possible, and the
 * machine description printed with the results.
 *
 * @module
 */

import { resolveUdpPath } from "../../lib/server/udp/mod.ts";
import { run } from "./proc.ts";
import { canAptInstall, which } from "../../scripts/system.ts";
import { runVisible } from "../../tests/helpers/prereqs.ts";

export { which };

/** A command the benchmark runs, and the Debian package that provides it. */
interface Tool {
  command: string;
  apt: string;
}

/** Everything the full benchmark needs. */
const TOOLS: Tool[] = [
  { command: "dnsperf", apt: "dnsperf" },
  { command: "knotd", apt: "knot" },
  { command: "etcd", apt: "etcd-server" },
  { command: "etcdctl", apt: "etcd-client" },
];

/** True when the missing tools can be installed here (root, Debian/Ubuntu, apt-get). */
export function canInstall(): boolean {
  return canAptInstall();
}

/** apt-get with `args`, its progress shown (the tests' prerequisite runner). */
function aptGet(args: string[]): Promise<boolean> {
  return runVisible("apt-get", args, (line) => console.error(`bench: ${line}`));
}

/** Paths of the tools, once found. */
export interface ToolPaths {
  dnsperf: string;
  knotd: string;
  /**
   * A CoreDNS binary from COREDNS_BIN, for the side-by-side Corefile runs;
   * undefined when the variable is unset (those runs are then reported as skipped).
   */
  coredns?: string;
}

/**
 * COREDNS_BIN, checked: undefined when unset or empty; throws when it names
 * no executable file (a typo should not quietly drop the comparison).
 */
export function corednsFromEnv(): string | undefined {
  const path = Deno.env.get("COREDNS_BIN");
  if (!path) return undefined;
  let info;
  try {
    info = Deno.statSync(path);
  } catch {
    throw new Error(`COREDNS_BIN=${path}: no such file`);
  }
  if (!info.isFile || ((info.mode ?? 0o111) & 0o111) === 0) {
    throw new Error(`COREDNS_BIN=${path}: not an executable file`);
  }
  return path;
}

/**
 * Finds the tools, installing the missing ones with apt-get when running as
 * root on Debian/Ubuntu. Throws an error that says what to install otherwise.
 */
export async function ensureTools(): Promise<ToolPaths> {
  let missing = TOOLS.filter((t) => !which(t.command));
  if (missing.length > 0 && canInstall()) {
    const packages = [...new Set(missing.map((t) => t.apt))];
    // Install first; only a failure (stale package lists) needs the slower update.
    if (!await aptGet(["install", "-y", "-qq", ...packages])) {
      await aptGet(["update", "-qq"]) && await aptGet(["install", "-y", "-qq", ...packages]);
    }
    missing = TOOLS.filter((t) => !which(t.command));
  }
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((t) => t.apt))].join(" ");
    throw new Error(
      `missing ${missing.map((t) => t.command).join(", ")}; install them with\n` +
        `  sudo apt-get install -y ${packages}\n` +
        `(the benchmark installs them itself when it runs as root on Debian or Ubuntu)`,
    );
  }
  return { dnsperf: which("dnsperf")!, knotd: which("knotd")!, coredns: corednsFromEnv() };
}

/** The first line of a command's output, or "?". */
async function firstLine(command: string, args: string[], pattern?: RegExp): Promise<string> {
  try {
    const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "piped" })
      .output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const line = pattern ? text.split("\n").find((l) => pattern.test(l)) : text.split("\n")[0];
    return line?.trim() || "?";
  } catch {
    return "?";
  }
}

/** What the results were measured on. */
export interface Machine {
  cpus: number;
  model: string;
  memory: string;
  kernel: string;
  deno: string;
  knot: string;
  dnsperf: string;
  etcd: string;
  /** CoreDNS's version line, or undefined when COREDNS_BIN is unset. */
  coredns?: string;
  /** The UDP path a node started without `-udp` gets in this tree, and why. */
  defaultUdp: string;
}

/** What `openUdp` would choose for 127.0.0.1 here (IDETCD_UDP included), as text. */
function defaultUdpPath(): string {
  try {
    const { path, reason } = resolveUdpPath("127.0.0.1");
    return reason ? `${path} (${reason})` : path;
  } catch (err) {
    return `? (${(err as Error).message})`;
  }
}

/** Describes this machine and the tool versions. */
export async function describeMachine(tools: ToolPaths): Promise<Machine> {
  let model = "?";
  let memory = "?";
  try {
    model = /^model name\s*:\s*(.*)$/m.exec(await Deno.readTextFile("/proc/cpuinfo"))?.[1] ??
      "?";
    const kb = Number(/^MemTotal:\s+(\d+)/m.exec(await Deno.readTextFile("/proc/meminfo"))?.[1]);
    if (kb) memory = `${(kb / 1024 / 1024).toFixed(1)} GiB`;
  } catch {
    // not Linux
  }
  let cpus = navigator.hardwareConcurrency;
  try {
    cpus = Number((await run("nproc", [])).trim()) || cpus;
  } catch {
    // no nproc
  }
  return {
    cpus,
    model,
    memory,
    kernel: `${Deno.build.os} ${Deno.osRelease()}`,
    deno: Deno.version.deno,
    knot: (await firstLine(tools.knotd, ["--version"])).replace(
      /^knotd \(Knot DNS\), version /,
      "",
    ),
    dnsperf: (await firstLine(tools.dnsperf, ["-h"], /^Version/)).replace(/^Version\s*/, ""),
    etcd: (await firstLine("etcd", ["--version"])).replace(/^etcd Version:\s*/, ""),
    coredns: tools.coredns
      ? (await firstLine(tools.coredns, ["-version"])).replace(/^CoreDNS-/, "")
      : undefined,
    defaultUdp: defaultUdpPath(),
  };
}
