/**
 * `deno task test [FILE|DIR...] [deno test flags]`: runs `deno test` on the
 * files or folders named, or on the whole suite (`tests/` and `lib/`) when
 * none is named. The task runs tests/helpers/prereqs.ts first.
 *
 *   deno task test                              # everything (what CI runs)
 *   deno task test tests/install_test.ts        # one file
 *   deno task test lib/corefile --filter brace  # a folder, and deno test's own flags
 *
 * `deno task test:unit [FILE|DIR...]` (this script with `--unit`) runs the
 * unit tests: every `*_test.ts` under `lib/` but the files and folders of
 * {@link NOT_UNIT}, with no permission to use the network, start processes
 * or load native code ({@link UNIT_FLAGS}), so a test listed as a unit test
 * that opens a socket or spawns etcd fails instead of slowing the run. Paths
 * narrow it to the unit tests below them. Before running, either mode says
 * on stderr what it runs.
 *
 * `deno task` appends its arguments to the task's last command, so without
 * this script `deno task test FILE` ran `deno test ... tests/ lib/ FILE`: the
 * whole suite. An argument counts as a path when it exists (relative to the
 * folder the task was started from); everything else is passed through to
 * `deno test` as is, so a flag's value (`--filter brace`) stays a value.
 *
 * @module
 */

import { isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The project root (this file is scripts/test.ts). */
const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** What the suite is when no path is named. */
export const DEFAULT_PATHS = ["tests/", "lib/"] as const;

/** Flags every run gets: all permissions (real processes and sockets), no type check of remote code. */
export const BASE_FLAGS = ["-A", "--no-check=remote"] as const;

/** Where the unit tests are: test files below it are unit tests unless {@link NOT_UNIT} names them. */
export const UNIT_ROOT = "lib/";

/**
 * The test files (and folders, ending in "/") under `lib/` that are not unit
 * tests: they open sockets, start processes or load native code. They run in
 * `deno task test` only.
 */
export const NOT_UNIT = [
  "lib/etcd/malloc_trim_test.ts", // FFI to libc
  "lib/plugins/cache/behaviour_test.ts", // the cache behind a real listener
  "lib/plugins/etcd/lazy_test.ts", // runs `deno info` on main.ts
  "lib/plugins/forward/forward_test.ts", // fake upstreams on real sockets
  "lib/plugins/forward/proxy_test.ts", // the same
  "lib/plugins/health/mod_test.ts", // its HTTP server
  "lib/plugins/loadbalance/sockets_test.ts", // behind a real listener
  "lib/plugins/prometheus/mod_test.ts", // its HTTP server and server processes
  "lib/plugins/ready/mod_test.ts", // its HTTP server
  "lib/server/fast_path_test.ts", // real listeners, and a real etcd behind them
  "lib/server/listen_test.ts", // UDP and TCP listeners
  "lib/server/udp/", // FFI to libc, sockets, gcc
] as const;

/**
 * The permissions of a unit run: files, the environment and system facts
 * (hostname, interfaces), and nothing else: no network, no processes, no FFI,
 * no prompt for more.
 */
export const UNIT_FLAGS = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--no-prompt",
  "--parallel",
  "--no-check=remote",
] as const;

/** Whether `file` (relative to the root, "/"-separated) is a unit test file. */
export function isUnitTest(file: string): boolean {
  return file.startsWith(UNIT_ROOT) && file.endsWith("_test.ts") &&
    !NOT_UNIT.some((entry) => entry.endsWith("/") ? file.startsWith(entry) : file === entry);
}

/**
 * The `deno test` arguments for the task's arguments. `exists` tells whether
 * a path names a file or folder; `cwd` is where the user started the task.
 * A leading `--` (as in `deno task test -- FILE`) is dropped. A leading
 * `--unit` selects the unit tests: of `testFiles` (every test file of the
 * tree, relative to the root), those {@link isUnitTest} accepts, below the
 * paths named if any; it throws when that leaves none.
 */
export function testArgs(args: readonly string[], options: PlanOptions): string[] {
  return testPlan(args, options).args;
}

/** What {@link testArgs} and {@link testPlan} are given besides the arguments. */
export interface PlanOptions {
  /** Where the user started the task. */
  cwd: string;
  /** The project root. */
  root: string;
  /** Whether a path names a file or folder. */
  exists: (path: string) => boolean;
  /** Every test file of the tree, relative to the root (for `--unit`). */
  testFiles?: () => string[];
}

/** The `deno test` arguments, and one line that says what they run. */
export function testPlan(
  args: readonly string[],
  options: PlanOptions,
): { args: string[]; what: string } {
  const unit = args[0] === "--unit";
  const given = unit ? args.slice(1) : args;
  const rest = given[0] === "--" ? given.slice(1) : [...given];
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
  if (unit) {
    const within = (file: string) =>
      paths.length === 0 ||
      paths.some((p) => {
        const rel = relative(p, join(options.root, file));
        return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
      });
    const files = (options.testFiles?.() ?? []).filter(isUnitTest).filter(within).sort();
    if (files.length === 0) {
      throw new Error(
        `no unit tests ${paths.length ? `in ${shown(paths)}` : `under ${UNIT_ROOT}`}` +
          ` (unit tests are the *_test.ts files under ${UNIT_ROOT} not listed in NOT_UNIT of scripts/test.ts)`,
      );
    }
    return {
      args: ["test", ...UNIT_FLAGS, ...flags, ...files.map((f) => join(options.root, f))],
      what: `test:unit: ${files.length} unit test files (every *_test.ts under ${UNIT_ROOT} ` +
        `but NOT_UNIT of scripts/test.ts${paths.length ? `, in ${shown(paths)}` : ""}), ` +
        `with no network, process or FFI permission`,
    };
  }
  const targets = paths.length > 0 ? paths : DEFAULT_PATHS.map((p) => join(options.root, p));
  return {
    args: ["test", ...BASE_FLAGS, ...flags, ...targets],
    what: `test: ${paths.length ? shown(paths) : DEFAULT_PATHS.join(" ")}, with every permission`,
  };

  function shown(list: string[]): string {
    return list.map((p) => relative(options.root, p) || ".").join(" ");
  }
}

/** Every `*_test.ts` below `root`'s lib/, relative to `root`, "/"-separated. */
export function libTestFiles(root: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(join(root, dir))) {
      const path = `${dir}${entry.name}`;
      if (entry.isDirectory) walk(`${path}/`);
      else if (entry.isFile && entry.name.endsWith("_test.ts")) found.push(path);
    }
  };
  walk(UNIT_ROOT);
  return found.sort();
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
  let plan: { args: string[]; what: string };
  try {
    plan = testPlan(Deno.args, {
      cwd,
      root: ROOT,
      exists,
      testFiles: () => libTestFiles(ROOT),
    });
  } catch (err) {
    console.error((err as Error).message);
    Deno.exit(2);
  }
  console.error(plan.what);
  const args = plan.args;
  const child = new Deno.Command(Deno.execPath(), { args, cwd: ROOT, stdin: "inherit" }).spawn();
  // Ctrl-C reaches the whole process group, so deno test gets it itself; this
  // process only waits for it to clean up. A SIGTERM sent to this process alone is passed on.
  Deno.addSignalListener("SIGINT", () => {});
  Deno.addSignalListener("SIGTERM", () => child.kill("SIGTERM"));
  const status = await child.status;
  Deno.exit(status.code);
}
