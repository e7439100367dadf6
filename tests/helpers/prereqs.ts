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

/** True when `command` is an executable file in a PATH directory. */
function onPath(command: string): boolean {
  const dirs = (Deno.env.get("PATH") ?? "").split(Deno.build.os === "windows" ? ";" : ":");
  for (const dir of dirs) {
    if (!dir) continue;
    try {
      const info = Deno.statSync(`${dir}/${command}`);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/** True on Debian, Ubuntu and their derivatives (per /etc/os-release). */
function isDebianLike(): boolean {
  try {
    const release = Deno.readTextFileSync("/etc/os-release");
    const ids = [...release.matchAll(/^(?:ID|ID_LIKE)=(.*)$/gm)]
      .flatMap((m) => m[1].replace(/"/g, "").split(/\s+/));
    return ids.some((id) => id === "debian" || id === "ubuntu");
  } catch {
    return false;
  }
}

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
  const canInstall = Deno.build.os === "linux" && Deno.uid() === 0 && isDebianLike() &&
    onPath("apt-get");
  if (!canInstall) explainAndExit(missing);
  const packages = [...new Set(missing.map((t) => t.apt))];
  const installed = await run("apt-get", ["update"]) &&
    await run("apt-get", ["install", "-y", ...packages]);
  missing = TOOLS.filter((t) => !onPath(t.command));
  if (!installed || missing.length > 0) explainAndExit(missing.length > 0 ? missing : TOOLS);
}

await main();
