/**
 * Checks the tools the test suite runs for real (`etcd`, `etcdctl`, `dig`).
 * Quiet when all are present. When some are missing and this is root on
 * Debian/Ubuntu, installs them with apt-get; otherwise prints what to install
 * and exits 1.
 *
 * Usage: `deno run -A tests/helpers/prereqs.ts`
 *
 * @module
 */

import { canAptInstall, onPath } from "../../scripts/system.ts";

/** A required command and the packages that provide it. */
interface Tool {
  command: string;
  apt: string;
  brew: string;
}

/** What the suite needs. */
const TOOLS: Tool[] = [
  { command: "etcd", apt: "etcd-server", brew: "etcd" },
  { command: "etcdctl", apt: "etcd-client", brew: "etcd" },
  { command: "dig", apt: "bind9-dnsutils", brew: "bind" },
];

/** Runs a command with inherited output; true on success. */
async function run(command: string, args: string[]): Promise<boolean> {
  console.error(`prereqs: ${command} ${args.join(" ")}`);
  const status = await new Deno.Command(command, {
    args,
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdin: "null",
  }).spawn().status;
  return status.success;
}

/** Prints what to install and exits 1. */
function explainAndExit(missing: Tool[]): never {
  const unique = (names: string[]) => [...new Set(names)].join(" ");
  console.error(
    [
      `Missing test prerequisites: ${missing.map((t) => t.command).join(", ")}`,
      `  Debian/Ubuntu:     sudo apt-get install -y ${unique(missing.map((t) => t.apt))}`,
      `  macOS (Homebrew):  brew install ${unique(missing.map((t) => t.brew))}`,
      "Then run the tests again.",
    ].join("\n"),
  );
  Deno.exit(1);
}

/** Checks, installs when allowed, re-checks. */
async function main(): Promise<void> {
  let missing = TOOLS.filter((t) => !onPath(t.command));
  if (missing.length === 0) return;
  const canInstall = canAptInstall();
  if (!canInstall) explainAndExit(missing);
  const packages = [...new Set(missing.map((t) => t.apt))];
  const installed = await run("apt-get", ["update"]) &&
    await run("apt-get", ["install", "-y", ...packages]);
  missing = TOOLS.filter((t) => !onPath(t.command));
  if (!installed || missing.length > 0) explainAndExit(missing.length > 0 ? missing : TOOLS);
}

await main();

// ---------------------------------------------------------------------------
// PyTorch for tests/torch_e2e_test.ts: best effort, never a failure.

import { which } from "../../scripts/system.ts";

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

await installTorch();
