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
