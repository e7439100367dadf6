/**
 * `deno task test [FILE|DIR...] [deno test flags]`: runs `deno test` on the
 * files or folders named, or on the whole suite (`tests/` and `lib/`) when
 * none is named. The task runs tests/helpers/prereqs.ts first.
 *
 *   deno task test                              # everything (what CI runs)
 *   deno task test tests/install_test.ts        # one file
 *   deno task test lib/corefile --filter brace  # a folder, and deno test's own flags
 *
 * `deno task` appends its arguments to the task's last command, so without
 * this script `deno task test FILE` ran `deno test ... tests/ lib/ FILE`: the
 * whole suite. An argument counts as a path when it exists (relative to the
 * folder the task was started from); everything else is passed through to
 * `deno test` as is, so a flag's value (`--filter brace`) stays a value.
 *
 * @module
 */

import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The project root (this file is scripts/test.ts). */
const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** What the suite is when no path is named. */
export const DEFAULT_PATHS = ["tests/", "lib/"] as const;

/** Flags every run gets: all permissions (real processes and sockets), no type check of remote code. */
export const BASE_FLAGS = ["-A", "--no-check=remote"] as const;

/**
 * The `deno test` arguments for the task's arguments. `exists` tells whether
 * a path names a file or folder; `cwd` is where the user started the task.
 * A leading `--` (as in `deno task test -- FILE`) is dropped.
 */
export function testArgs(
  args: readonly string[],
  options: { cwd: string; root: string; exists: (path: string) => boolean },
): string[] {
  const rest = args[0] === "--" ? args.slice(1) : [...args];
  const flags: string[] = [];
  const paths: string[] = [];
  for (const arg of rest) {
    if (!arg.startsWith("-")) {
      const path = isAbsolute(arg) ? arg : resolve(options.cwd, arg);
      if (options.exists(path)) {
        paths.push(path);
        continue;
      }
    }
    flags.push(arg);
  }
  const targets = paths.length > 0 ? paths : DEFAULT_PATHS.map((p) => join(options.root, p));
  return ["test", ...BASE_FLAGS, ...flags, ...targets];
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

if (import.meta.main) {
  // deno task runs in the project root; INIT_CWD is where the user typed the command.
  const cwd = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const args = testArgs(Deno.args, { cwd, root: ROOT, exists });
  const child = new Deno.Command(Deno.execPath(), { args, cwd: ROOT, stdin: "inherit" }).spawn();
  // Ctrl-C reaches the whole process group, so deno test gets it itself; this
  // process only waits for it to clean up. A SIGTERM sent to this process alone is passed on.
  Deno.addSignalListener("SIGINT", () => {});
  Deno.addSignalListener("SIGTERM", () => child.kill("SIGTERM"));
  const status = await child.status;
  Deno.exit(status.code);
}
