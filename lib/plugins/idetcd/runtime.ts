/**
 * The node's runtime state file: one per claim configuration, written by the
 * process that holds the claim (a server, or `idetcd exec` acting as one) on
 * every change of its held state, and removed when it stops.
 *
 * It is how `idetcd exec` on the same node tells whether a server already
 * holds this claim (the file names a live process) and learns the moment the
 * node stops vouching for its name (it polls the file), and how a server
 * refuses to become a second claimer with the same identity. Its place:
 * `$IDETCD_RUNTIME_DIR`, else `/run/idetcd` when writable, else
 * `$XDG_RUNTIME_DIR/idetcd`, else `/tmp/idetcd-UID`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";

/** What the file says. */
export interface RuntimeState {
  /** The process holding the claim. */
  pid: number;
  /** That process's start time (field 22 of /proc/PID/stat), so a reused PID is not mistaken for it. */
  procStart?: string;
  /** The driver's state: starting, claiming, waiting, held, fenced, stopped. */
  state: string;
  /**
   * True only while the node vouches for `name` (state "held"); `id` and `name` may name a claim it
   * no longer vouches for.
   */
  held: boolean;
  /** The ID held, or held last (fenced, or since lost); absent before the first claim. */
  id?: number;
  /** Fully qualified. */
  name?: string;
  /** The claim's fencing token (its lock's create_revision). */
  fence?: number;
  /** Why the node is not holding (one line for the user); absent while held or starting. */
  reason?: string;
  /** The fencing margin of the claim, ms: how long before etcd can give the name away the node stops vouching. */
  marginMs: number;
  /** ISO 8601. */
  updatedAt: string;
}

function writable(dir: string): boolean {
  try {
    Deno.mkdirSync(dir, { recursive: true, mode: 0o755 });
    const probe = join(dir, `.probe-${Deno.pid}`);
    Deno.writeTextFileSync(probe, "");
    Deno.removeSync(probe);
    return true;
  } catch {
    return false;
  }
}

/** The folder of runtime state files (created when missing); see the module doc. */
export function runtimeDir(): string {
  const env = (name: string) => {
    try {
      return Deno.env.get(name) || undefined;
    } catch {
      return undefined;
    }
  };
  const chosen = env("IDETCD_RUNTIME_DIR");
  if (chosen) {
    Deno.mkdirSync(chosen, { recursive: true });
    return chosen;
  }
  if (writable("/run/idetcd")) return "/run/idetcd";
  const xdg = env("XDG_RUNTIME_DIR");
  if (xdg && writable(join(xdg, "idetcd"))) return join(xdg, "idetcd");
  let uid = "user";
  try {
    uid = String(Deno.uid() ?? "user");
  } catch {
    // no --allow-sys
  }
  const fallback = join(Deno.env.get("TMPDIR") ?? "/tmp", `idetcd-${uid}`);
  Deno.mkdirSync(fallback, { recursive: true, mode: 0o700 });
  return fallback;
}

/** The state file of the claim whose settings hash to `claimKey`. */
export function runtimePath(claimKey: string, dir = runtimeDir()): string {
  const digest = createHash("sha256").update(claimKey).digest("hex").slice(0, 16);
  return join(dir, `claim-${digest}.json`);
}

/** The start time of process `pid` (Linux), or undefined. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name (field 2) may hold spaces: count from the closing parenthesis.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** True when the process that wrote `state` still runs. */
export function isAlive(state: Pick<RuntimeState, "pid" | "procStart">): boolean {
  if (state.pid === Deno.pid) return true;
  const start = processStart(state.pid);
  if (start !== undefined) return state.procStart === undefined || start === state.procStart;
  // No /proc (not Linux): ask the kernel whether the PID exists.
  try {
    Deno.kill(state.pid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

/** Reads a state file; undefined when missing or unreadable. */
export function readRuntimeState(path: string): RuntimeState | undefined {
  try {
    const data = JSON.parse(Deno.readTextFileSync(path)) as RuntimeState;
    return typeof data.pid === "number" ? data : undefined;
  } catch {
    return undefined;
  }
}

/** The live holder of the claim at `path`, if any (a stale file is ignored). */
export function liveHolder(path: string): RuntimeState | undefined {
  const state = readRuntimeState(path);
  return state && isAlive(state) ? state : undefined;
}

/** Writes the state file atomically (temporary file, then rename). */
export function writeRuntimeState(path: string, state: RuntimeState): void {
  const temporary = `${path}.tmp-${Deno.pid}`;
  Deno.writeTextFileSync(temporary, JSON.stringify(state) + "\n");
  Deno.renameSync(temporary, path);
}

/** Removes the state file if this process wrote it. */
export function removeRuntimeState(path: string): void {
  if (readRuntimeState(path)?.pid !== Deno.pid) return;
  try {
    Deno.removeSync(path);
  } catch {
    // already gone
  }
}
