/**
 * Running a test inside a private network namespace of its own, as root or
 * as a normal user: `unshare --net` for root, `unshare --user
 * --map-root-user --net` for anyone else where the kernel allows user
 * namespaces. Inside, loopback is up, every port (53, 2379, 8080, ...) is
 * free and bindable, and one interface, `eth0` with documentation addresses
 * ({@link NETNS_IPV4}, {@link NETNS_IPV6}), stands in for a host's network
 * card. Nothing inside can reach anything outside.
 *
 * The test file re-runs itself there: the outer test calls
 * {@link rerunInPrivateNetns}, which starts `deno test --filter NAME FILE`
 * inside the namespace with {@link IN_PRIVATE_NETNS} set, and the copy runs
 * the real body. Unlike tests/helpers/netns.ts (a bridged multi-host network
 * that needs root), this needs no privilege and no cleanup: the namespace
 * ends with its last process.
 *
 * @module
 */

import assert from "node:assert/strict";

/** The variable that tells a test file it is the copy running inside the namespace. */
const MARK = "IDETCD_PRIVATE_NETNS";

/** True in the copy of a test file that runs inside the private network namespace. */
export const IN_PRIVATE_NETNS = Deno.env.get(MARK) === "1";

/** eth0's IPv4 address inside the namespace (TEST-NET-1, RFC 5737). */
export const NETNS_IPV4 = "192.0.2.10";
/** eth0's IPv6 address inside the namespace (documentation prefix, RFC 3849). */
export const NETNS_IPV6 = "2001:db8::10";

/**
 * The shell lines that set the namespace up, then exec "$@". A veth pair,
 * since a user namespace may create veths where the dummy driver is missing;
 * its peer (eth1) gets no address, so eth0 is the interface a node picks.
 */
const SETUP = [
  "set -e",
  "ip link set lo up",
  "ip link add eth0 type veth peer name eth1",
  `ip addr add ${NETNS_IPV4}/24 dev eth0`,
  `ip -6 addr add ${NETNS_IPV6}/64 dev eth0 nodad`,
  "ip link set eth1 up",
  "ip link set eth0 up",
  'exec "$@"',
].join("\n");

let probed: { unshare: string[] } | { reason: string } | undefined;

/** The `unshare` arguments that give a process a private network namespace here, or why none can be had. */
export function privateNetns(): { unshare: string[] } | { reason: string } {
  if (probed) return probed;
  if (Deno.build.os !== "linux") return probed = { reason: "network namespaces are Linux only" };
  const unshare = Deno.uid() === 0 ? ["--net"] : ["--user", "--map-root-user", "--net"];
  try {
    const probe = new Deno.Command("unshare", {
      args: [...unshare, "sh", "-c", SETUP, "sh", "true"],
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    probed = probe.success ? { unshare } : {
      reason: `unshare ${unshare.join(" ")} failed: ${
        new TextDecoder().decode(probe.stderr).trim()
      }`,
    };
  } catch (err) {
    probed = { reason: `unshare cannot run: ${(err as Error).message}` };
  }
  return probed;
}

/**
 * Runs the tests of `file` whose name contains `filter` inside a fresh private
 * network namespace (this process's environment, HOME and DENO_DIR included)
 * and asserts that exactly one ran and passed; its output is in the failure
 * message. Call it only where {@link privateNetns} found a way.
 */
export async function rerunInPrivateNetns(
  file: string | URL,
  filter: string,
  timeoutMs = 240_000,
): Promise<void> {
  const netns = privateNetns();
  if (!("unshare" in netns)) throw new Error(`no private network namespace: ${netns.reason}`);
  const path = file instanceof URL ? file.pathname : file;
  const out = await new Deno.Command("unshare", {
    args: [
      ...netns.unshare,
      "sh",
      "-c",
      SETUP,
      "sh",
      Deno.execPath(),
      "test",
      "-A",
      "--no-check", // the outer run has type-checked this file already
      "--filter",
      filter,
      path,
    ],
    env: { [MARK]: "1", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(timeoutMs),
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `inside the private network namespace it failed:\n${text}`);
  assert.match(text, /^ok \| 1 passed \| 0 failed/m, `one test ran inside, and passed:\n${text}`);
}
