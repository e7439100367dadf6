/**
 * The tools the test suite, the demo and the benchmark run for real
 * (`etcd`, `etcdctl`, `dig`), and installing them with apt-get where that
 * is possible (root on Debian/Ubuntu).
 *
 * Run as a script (`deno run -A tests/helpers/prereqs.ts`, the first step of
 * `deno task test`), it checks the suite's tools: quiet when all are
 * present; when some are missing and this is root on Debian/Ubuntu,
 * installs them with apt-get; otherwise prints what to install and exits 1.
 *
 * @module
 */

import { canAptInstall, onPath, which } from "../../scripts/system.ts";

/** A required command and the packages that provide it. */
export interface Tool {
  /** The command looked up on PATH. */
  command: string;
  /** The Debian/Ubuntu package that provides it. */
  apt: string;
  /** The Homebrew formula that provides it. */
  brew: string;
}

/** etcd, the server. */
export const ETCD: Tool = { command: "etcd", apt: "etcd-server", brew: "etcd" };
/** etcdctl, its client. */
export const ETCDCTL: Tool = { command: "etcdctl", apt: "etcd-client", brew: "etcd" };
/** dig, the DNS client. */
export const DIG: Tool = { command: "dig", apt: "bind9-dnsutils", brew: "bind" };

/** What the suite needs. */
const TOOLS: Tool[] = [ETCD, ETCDCTL, DIG];

/** The tools of `tools` that are not on PATH. */
export function missingTools(tools: readonly Tool[]): Tool[] {
  return tools.filter((t) => !onPath(t.command));
}

/**
 * Runs a command with inherited output (apt-get shows its progress); true on
 * success, false also when it cannot be started. `log` gets the command line.
 */
export async function runVisible(
  command: string,
  args: string[],
  log: (line: string) => void = (line) => console.error(`prereqs: ${line}`),
): Promise<boolean> {
  log(`${command} ${args.join(" ")}`);
  try {
    const status = await new Deno.Command(command, {
      args,
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdin: "null",
    }).spawn().status;
    return status.success;
  } catch {
    return false;
  }
}

/** `apt-get update`, then `apt-get install -y` the packages of `tools`; true when both worked. */
export async function aptInstall(
  tools: readonly Tool[],
  log?: (line: string) => void,
): Promise<boolean> {
  const packages = [...new Set(tools.map((t) => t.apt))];
  return await runVisible("apt-get", ["update"], log) &&
    await runVisible("apt-get", ["install", "-y", ...packages], log);
}

/** The install commands for `tools` on Debian/Ubuntu and macOS, one line each. */
export function installHints(tools: readonly Tool[]): string[] {
  const unique = (names: string[]) => [...new Set(names)].join(" ");
  return [
    `  Debian/Ubuntu:     sudo apt-get install -y ${unique(tools.map((t) => t.apt))}`,
    `  macOS (Homebrew):  brew install ${unique(tools.map((t) => t.brew))}`,
  ];
}

const run = (command: string, args: string[]) => runVisible(command, args);

/** Prints what to install and exits 1. */
function explainAndExit(missing: Tool[]): never {
  console.error(
    [
      `Missing test prerequisites: ${missing.map((t) => t.command).join(", ")}`,
      ...installHints(missing),
      "Then run the tests again.",
    ].join("\n"),
  );
  Deno.exit(1);
}

/** Checks, installs when allowed, re-checks. */
async function main(): Promise<void> {
  let missing = missingTools(TOOLS);
  if (missing.length === 0) return;
  if (!canAptInstall()) explainAndExit(missing);
  const installed = await aptInstall(missing);
  missing = missingTools(TOOLS);
  if (!installed || missing.length > 0) explainAndExit(missing.length > 0 ? missing : TOOLS);
}

// ---------------------------------------------------------------------------
// PyTorch for tests/torch_e2e_test.ts: best effort, never a failure.

/** Whether `python` finds the torch package (found, not imported: importing takes seconds). */
function findsTorch(python: string): boolean {
  try {
    return new Deno.Command(python, {
      args: ["-c", "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is None)"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).outputSync().success;
  } catch {
    return false;
  }
}

/**
 * Installs Debian's `python3-torch` (torch 1.13 for /usr/bin/python3, large:
 * about 200 MB to download) with apt when no python3 here imports torch and
 * this is root on Debian/Ubuntu. Whatever happens, the prerequisites step
 * does not fail on it: without torch the torch end-to-end tests report
 * themselves as ignored, with the reason. `IDETCD_NO_TORCH=1` skips it.
 */
async function installTorch(): Promise<void> {
  const pythons = [...new Set([which("python3"), "/usr/bin/python3"].filter(Boolean))] as string[];
  if (pythons.some(findsTorch)) return;
  if (Deno.env.get("IDETCD_NO_TORCH") === "1") {
    console.error("prereqs: IDETCD_NO_TORCH=1: not installing python3-torch");
    return;
  }
  if (!canAptInstall()) {
    console.error(
      "prereqs: no python3 imports torch; the torch end-to-end tests will be ignored " +
        "(Debian/Ubuntu: sudo apt-get install -y python3-torch)",
    );
    return;
  }
  const started = performance.now();
  try {
    const install = ["install", "-y", "-q", "--no-install-recommends", "python3-torch"];
    // Stale or missing package lists: update once and try again.
    const ok = await run("apt-get", install) ||
      (await run("apt-get", ["update", "-q"]) && await run("apt-get", install));
    const seconds = ((performance.now() - started) / 1000).toFixed(0);
    if (ok && findsTorch("/usr/bin/python3")) {
      console.error(`prereqs: python3-torch installed in ${seconds}s`);
    } else {
      console.error(
        `prereqs: python3-torch could not be installed (${seconds}s); the torch end-to-end tests will be ignored`,
      );
    }
  } catch (err) {
    console.error(
      `prereqs: python3-torch not installed (${
        (err as Error).message
      }); the torch end-to-end tests will be ignored`,
    );
  }
}

if (import.meta.main) {
  await main();
  await installTorch();
}
