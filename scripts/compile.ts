/**
 * Builds the idetcd release binaries with `deno compile` and writes
 * `SHA256SUMS` beside them.
 *
 *   deno task compile                          # every release target -> dist/idetcd-<target>
 *   deno task compile x86_64-unknown-linux-gnu # only the targets named
 *   deno task compile --host                   # this machine's target -> dist/idetcd
 *
 * Options: `--out-dir DIR` (default dist), `--entry FILE` (default main.ts).
 *
 * `deno compile` embeds the program into Deno's runtime base, `denort`, which
 * it downloads per target (denort-<target>.zip of the running Deno version)
 * from Deno's download server and caches in DENO_DIR. Where that server is
 * unreachable, point the DENORT_BIN environment variable at an unzipped
 * `denort` of the same Deno version and target: `deno compile` reads it
 * itself and then uses it for whatever `--target` says, so with DENORT_BIN
 * set this script builds one target per run.
 *
 * Two checks keep a wrong build out of dist/ and SHA256SUMS:
 * - DENORT_BIN must be a runtime base. The full `deno` CLI is the obvious
 *   wrong guess, and `deno compile` takes it without a word: the result is
 *   110 MB that behaves as the Deno CLI. It is refused before building.
 * - The binary built for this machine's target must start: `-version` must
 *   exit 0 (and print `idetcd-<version>` when the entry is main.ts) before
 *   SHA256SUMS is written. A binary that does not is removed.
 *
 * @module
 */

import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { LIBC_PATHS } from "../lib/server/udp/ffi.ts";

/** The targets a release ships (the Linux ones are what install.sh fetches on cloud nodes). */
export const RELEASE_TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
] as const;

/**
 * Permissions baked into the binary, and no more. Each is needed at run time:
 * net: DNS listeners and the etcd gRPC connection; read: the Corefile, TLS
 * files, /sys and /etc/resolv.conf; write: -pidfile and the `file` option;
 * env: `{$VAR}` in the Corefile and @grpc/grpc-js's GRPC_* and proxy
 * variables; sys: networkInterfaces (the `address` option, `bind IFACE`) and
 * hostname. No --allow-run or --allow-import: nothing spawns or imports
 * remote modules. FFI is {@link ffiPermission}'s, per target.
 */
export const RUNTIME_PERMISSIONS = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
] as const;

/**
 * Deno.listenDatagram (the UDP listener) is still behind --unstable-net.
 * deno.json's "unstable": ["net"] also reaches compile, but saying it here
 * keeps the binary working if that entry ever moves.
 */
export const UNSTABLE_FLAGS = ["--unstable-net"] as const;

/** What one `deno compile` run builds. */
export interface CompileJob {
  target: string;
  /** Path of the binary to write. */
  output: string;
  /** The program's entry module. */
  entry: string;
}

/**
 * The FFI permission of a target's binary: on Linux, `--allow-ffi` for
 * glibc's `libc.so.6` at the paths lib/server/udp/ffi.ts looks in, and
 * nothing else (the batched UDP path calls libc only; no other library can
 * be opened). A bare `--allow-ffi` would allow every library, and with it
 * anything native code can do. macOS binaries get none: the batched path is
 * Linux-only.
 */
export function ffiPermission(target: string): string[] {
  const arch = /^(x86_64|aarch64)-unknown-linux-gnu$/.exec(target)?.[1] as
    | keyof typeof LIBC_PATHS
    | undefined;
  return arch ? [`--allow-ffi=${LIBC_PATHS[arch].join(",")}`] : [];
}

/** The arguments after `deno` for one job: no --include (npm packages, .proto files too, are embedded anyway). */
export function compileArgs(job: CompileJob): string[] {
  return [
    "compile",
    "--target",
    job.target,
    "--output",
    job.output,
    ...UNSTABLE_FLAGS,
    ...RUNTIME_PERMISSIONS,
    ...ffiPermission(job.target),
    job.entry,
  ];
}

/** The file name a target's binary gets: `idetcd-<target>`, or plain `idetcd` for --host. */
export function binaryName(target: string, host: boolean): string {
  return host ? "idetcd" : `idetcd-${target}`;
}

/** Parsed command line. */
export interface CompilePlan {
  jobs: CompileJob[];
  outDir: string;
}

/** A command-line mistake; main prints it as one line and exits 2. */
export class UsageError extends Error {}

/**
 * Turns the command line into jobs. `hostTarget` is Deno.build.target;
 * `denortBin` is $DENORT_BIN (one runtime base serves one target only).
 */
export function planCompile(
  args: readonly string[],
  options: { hostTarget: string; denortBin?: string; cwd: string },
): CompilePlan {
  let host = false;
  let outDir = "dist";
  let entry = "main.ts";
  const named: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const value = () => {
      const v = args[++i];
      if (v === undefined || v.startsWith("--")) throw new UsageError(`${arg} needs a value`);
      return v;
    };
    if (arg === "--host") host = true;
    else if (arg === "--out-dir") outDir = value();
    else if (arg === "--entry") entry = value();
    else if (arg.startsWith("-")) throw new UsageError(`unknown option ${arg}`);
    else if ((RELEASE_TARGETS as readonly string[]).includes(arg)) {
      if (!named.includes(arg)) named.push(arg);
    } else {
      throw new UsageError(`unknown target ${arg}; known: ${RELEASE_TARGETS.join(", ")}`);
    }
  }
  if (host && named.length > 0) {
    throw new UsageError("--host builds this machine's target only; name no targets with it");
  }
  const targets = host ? [options.hostTarget] : named.length > 0 ? named : [...RELEASE_TARGETS];
  if (options.denortBin && targets.length > 1) {
    throw new UsageError(
      `DENORT_BIN names one runtime base, so it builds one target per run; name the target that ${options.denortBin} is for`,
    );
  }
  const dir = resolve(options.cwd, outDir);
  return {
    outDir: dir,
    jobs: targets.map((target) => ({
      target,
      output: join(dir, binaryName(target, host)),
      entry: resolve(options.cwd, entry),
    })),
  };
}

/** The `sha256sum` format: "<hex>  <name>" lines, sorted by name. */
export function formatChecksums(sums: ReadonlyMap<string, string>): string {
  return [...sums.keys()].sort().map((name) => `${sums.get(name)}  ${name}\n`).join("");
}

/** Why `deno compile` failed, when it is the runtime base; undefined for any other failure. */
export function denortFailure(
  stderr: string,
  target: string,
  denortBin?: string,
): string | undefined {
  // deno prints "Setting up base binary." / "Could not find denort at ..." in its cause chain.
  // deno-lint-ignore no-control-regex
  const text = stderr.replace(/\x1b\[[0-9;]*m/g, "");
  if (!/base binary|denort/i.test(text)) return undefined;
  const cause =
    text.split("\n").map((l) => l.trim()).filter((l) =>
      /error sending request|Could not find denort|dns error|timed out|status/i.test(l)
    )[0];
  const why = cause ? ` (${cause.replace(/^\d+:\s*/, "")})` : "";
  return denortBin
    ? `error: DENORT_BIN=${denortBin} could not be used as the runtime base for ${target}${why}; point DENORT_BIN at an unzipped denort of Deno ${Deno.version.deno} for ${target}`
    : `error: could not download Deno's runtime base denort-${target}.zip${why}; where Deno's download server is unreachable, set DENORT_BIN to an unzipped denort of Deno ${Deno.version.deno} for ${target} and build that one target`;
}

/** What {@link classifyDenortBin} learned about a DENORT_BIN. */
export type DenortVerdict =
  | { ok: true }
  | { ok: false; reason: string };

/** The first bytes of the executable formats deno compile can take (ELF, Mach-O, PE). */
const EXECUTABLE_MAGIC: readonly number[][] = [
  [0x7f, 0x45, 0x4c, 0x46], // ELF
  [0xcf, 0xfa, 0xed, 0xfe], // Mach-O 64-bit
  [0xce, 0xfa, 0xed, 0xfe], // Mach-O 32-bit
  [0xca, 0xfe, 0xba, 0xbe], // Mach-O universal
  [0x4d, 0x5a], // PE (MZ)
];

/**
 * Text only the full Deno CLI holds: the progress line of its own `deno
 * compile`. The runtime base has no compiler, so no such line.
 */
export const CLI_MARKER = "Setting up base binary.";

/** Index of `needle` in `haystack`, or -1. */
function indexOfBytes(haystack: Uint8Array, needle: Uint8Array): number {
  const first = needle[0];
  for (let i = haystack.indexOf(first); i !== -1; i = haystack.indexOf(first, i + 1)) {
    if (i + needle.length > haystack.length) return -1;
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
  }
  return -1;
}

/**
 * Whether a file can be deno compile's runtime base. `bytes` is the file;
 * `versionOutput` is what `FILE --version` printed, when it ran on this
 * machine (a base for another CPU does not run here, and need not).
 */
export function classifyDenortBin(
  bytes: Uint8Array,
  versionOutput: string | undefined,
): DenortVerdict {
  const isExecutable = EXECUTABLE_MAGIC.some((magic) => magic.every((b, i) => bytes[i] === b));
  if (!isExecutable) {
    return { ok: false, reason: "is not an executable (no ELF, Mach-O or PE header)" };
  }
  const cliVersion = /^deno (\d+\.\d+\.\d+\S*)/m.exec(versionOutput ?? "")?.[1];
  if (cliVersion !== undefined || indexOfBytes(bytes, new TextEncoder().encode(CLI_MARKER)) >= 0) {
    return {
      ok: false,
      reason: `is the Deno CLI${
        cliVersion ? ` (deno ${cliVersion})` : ""
      }, not its runtime base denort: the binary would run as \`deno\`, not as idetcd`,
    };
  }
  return { ok: true };
}

/** Runs `path args` with a deadline; undefined when it cannot run here (another CPU, no exec bit). */
async function tryRun(
  path: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string } | undefined> {
  try {
    const out = await new Deno.Command(path, {
      args,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(timeoutMs),
    }).output();
    const decoder = new TextDecoder();
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } catch {
    return undefined;
  }
}

/**
 * Checks $DENORT_BIN before any build: one line saying why it cannot be the
 * runtime base for `target`, or undefined when it may be.
 */
export async function checkDenortBin(path: string, target: string): Promise<string | undefined> {
  const prefix = `error: DENORT_BIN=${path} could not be used as the runtime base for ${target}`;
  const fix =
    `point DENORT_BIN at the denort unzipped from denort-${target}.zip of Deno ${Deno.version.deno}`;
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound ? "no such file" : (err as Error).message;
    return `${prefix} (${why}); ${fix}`;
  }
  // A denort without a program in it prints an error and exits 1; the CLI prints its version.
  const ran = await tryRun(path, ["--version"], 10_000);
  const verdict = classifyDenortBin(bytes, ran?.stdout);
  return verdict.ok ? undefined : `${prefix}: it ${verdict.reason}; ${fix}`;
}

/**
 * Runs the freshly built binary with `-version`. Undefined when it started
 * as it should (exit 0, and `idetcd-<version>` first when `expect` is given),
 * else one line saying what it did.
 */
export async function checkBuiltBinary(
  path: string,
  expect: string | undefined,
): Promise<string | undefined> {
  const ran = await tryRun(path, ["-version"], 60_000);
  const name = basename(path);
  if (ran === undefined) return `${name} -version could not be run`;
  const first = ran.stdout.split("\n")[0].trim();
  if (ran.code === 0 && (expect === undefined || first === expect)) return undefined;
  const said = (first || ran.stderr.trim().split("\n")[0]).slice(0, 200);
  return `${name} -version exited ${ran.code} and printed ${
    said ? JSON.stringify(said) : "nothing"
  }${expect ? `, not ${expect}` : ""}`;
}

async function sha256Hex(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Runs `deno compile`, passing its output through and keeping stderr for the diagnosis. */
async function runCompile(
  job: CompileJob,
  projectRoot: string,
): Promise<{ code: number; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: compileArgs(job),
    cwd: projectRoot, // so deno.json, its import map and deno.lock apply
    stdin: "null",
    stdout: "inherit",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stderr) {
    await Deno.stderr.write(chunk);
    stderr += decoder.decode(chunk, { stream: true });
  }
  const { code } = await child.status;
  return { code, stderr };
}

/** Hashes every idetcd binary in `outDir`, so SHA256SUMS always describes the folder (builds one target at a time add up). */
async function writeChecksums(outDir: string): Promise<string> {
  const sums = new Map<string, string>();
  for await (const entry of Deno.readDir(outDir)) {
    if (entry.isFile && /^idetcd(-[a-z0-9_-]+)?(\.exe)?$/.test(entry.name)) {
      sums.set(entry.name, await sha256Hex(join(outDir, entry.name)));
    }
  }
  const path = join(outDir, "SHA256SUMS");
  await Deno.writeTextFile(path, formatChecksums(sums));
  return path;
}

/** deno.json's "version", which main.ts prints as `idetcd-<version>`. */
async function projectVersion(projectRoot: string): Promise<string> {
  const config = JSON.parse(await Deno.readTextFile(join(projectRoot, "deno.json")));
  return String(config.version);
}

async function main(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(
      `Usage: deno task compile [--host | TARGET...] [--out-dir DIR] [--entry FILE]\nTargets: ${
        RELEASE_TARGETS.join(", ")
      }\nEnv: DENORT_BIN=/path/to/denort to build without Deno's download server (one target per run).`,
    );
    return 0;
  }
  const denortBin = Deno.env.get("DENORT_BIN") || undefined;
  let plan: CompilePlan;
  try {
    plan = planCompile(args, { hostTarget: Deno.build.target, denortBin, cwd: Deno.cwd() });
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`compile: ${err.message}`);
      return 2;
    }
    throw err;
  }
  const projectRoot = dirname(dirname(fileURLToPath(import.meta.url)));
  if (denortBin) {
    const problem = await checkDenortBin(denortBin, plan.jobs[0].target);
    if (problem) {
      console.error(problem);
      return 1;
    }
  }
  await Deno.mkdir(plan.outDir, { recursive: true });
  for (const job of plan.jobs) {
    const { code, stderr } = await runCompile(job, projectRoot);
    if (code !== 0) {
      console.error(
        denortFailure(stderr, job.target, denortBin) ??
          `error: deno compile failed for ${job.target} (exit ${code}); see above`,
      );
      return 1;
    }
  }
  // Only this machine's binary can be started here; the release workflow runs on x86_64 Linux.
  const hostJob = plan.jobs.find((j) => j.target === Deno.build.target);
  if (hostJob) {
    const isMain = hostJob.entry === join(projectRoot, "main.ts");
    const problem = await checkBuiltBinary(
      hostJob.output,
      isMain ? `idetcd-${await projectVersion(projectRoot)}` : undefined,
    );
    if (problem) {
      await Deno.remove(hostJob.output).catch(() => {});
      console.error(
        `error: the binary built for ${hostJob.target} does not start as it should (${problem}); removed it and wrote no SHA256SUMS${
          denortBin ? `; is DENORT_BIN=${denortBin} the denort of Deno ${Deno.version.deno}?` : ""
        }`,
      );
      return 1;
    }
    console.log(`compile: ${basename(hostJob.output)} -version starts`);
  } else {
    console.log(
      `compile: not started: no binary was built for this machine (${Deno.build.target})`,
    );
  }
  const sumsPath = await writeChecksums(plan.outDir);
  console.log(
    `compile: wrote ${plan.jobs.map((j) => basename(j.output)).join(", ")} and ${sumsPath}`,
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
