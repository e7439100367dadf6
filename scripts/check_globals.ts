/**
 * `deno run --allow-read scripts/check_globals.ts`: fails when a module
 * under lib/ keeps mutable state at module level that is not on the
 * allow-list below, and when an allow-list entry no longer matches.
 *
 * State a module keeps for itself is shared by every server, client and
 * test in the process, outlives the thing it was about, and is invisible at
 * the call site; issue #10 asks for state owned by an instance and passed
 * in, except what is process-wide by nature (the logger). What counts:
 *
 * - a top-level `let` or `var` (`export` or not);
 * - a top-level `const` holding a new Map, Set, WeakMap, WeakSet or Array
 *   (or `[]`), unless it is typed read-only (`ReadonlyMap`, `ReadonlySet`,
 *   `readonly T[]`): a table filled once at load says so in its type.
 *
 * Top level means at column 0, which `deno fmt` (checked first by
 * `deno task check`) guarantees for declarations outside any block.
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { join, relative } from "node:path";

/** The project root (this file is scripts/check_globals.ts). */
const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** One module-level declaration of mutable state. */
export interface ModuleState {
  /** The file, relative to the project root, with `/` separators. */
  file: string;
  /** 1-based line of the declaration. */
  line: number;
  /** The declared name. */
  name: string;
  /** `let`, `var` or `const` (a mutable container). */
  kind: "let" | "var" | "const";
}

/** Why a piece of module state may stay: the reason is the review of it. */
export interface Allowed {
  /** The file, relative to the project root. */
  file: string;
  /** The declared name. */
  name: string;
  /** Why it is process-wide by nature, or what makes it safe. */
  reason: string;
  /**
   * Its removal is under way elsewhere (another change of issue #10): the
   * entry may go stale without failing the check until it is deleted.
   */
  pending?: true;
}

/** The module state lib/ may keep, and why. Shrink it; grow it only with a reason. */
export const ALLOWED: readonly Allowed[] = [
  {
    file: "lib/log.ts",
    name: "debugEnabled",
    reason: "the logger's -debug switch: the logger is process-wide (issue #10's one exception)",
  },
  {
    file: "lib/dns/wire.ts",
    name: "shared",
    reason: "encodeMessage's work buffer, per process for speed; safe because an encode is " +
      "synchronous, clears it first and copies out (its doc comment; tests in wire_test.ts)",
  },
  {
    file: "lib/server/udp/ffi.ts",
    name: "opened",
    reason: "libc opened once per process (a dlopen handle is per process, and whether it " +
      "can be opened does not change while the process runs)",
  },
  {
    file: "lib/etcd/endpoint_health.ts",
    name: "announcedDown",
    reason: "members announced down on the one process log, so clients from unrelated " +
      "places (pool, subcommands, exec) log each member once each way (its doc comment)",
  },
  {
    file: "lib/server/udp/abi.ts",
    name: "ERRNO_NAMES",
    reason: "a read-only errno table filled once at load",
  },
  { file: "lib/dns/types.ts", name: "typeNames", reason: "a read-only table filled once at load" },
  { file: "lib/dns/types.ts", name: "rcodeNames", reason: "a read-only table filled once at load" },
  {
    file: "lib/plugins/etcd/service.ts",
    name: "decodedByKeyValue",
    reason: "a WeakMap memo keyed by immutable KeyValue objects: the decoding is a function " +
      "of the object alone, so every instance may share it, and it is collected with the object",
  },
];

const LET = /^(?:export\s+)?(let|var)\s+([A-Za-z_$][\w$]*)/;
const CONTAINER =
  /^(?:export\s+)?const\s+([A-Za-z_$][\w$]*)\s*(?::\s*([^=]+?))?\s*=\s*(?:new\s+(?:Map|Set|WeakMap|WeakSet|Array)\b|\[\s*\])/;
const READ_ONLY_TYPE = /^(?:Readonly(?:Map|Set|Array)\b|readonly\s)/;

/**
 * The module-level mutable state declared in `source` (the text of `file`).
 * Lines inside a template literal that spans lines are skipped.
 */
export function findModuleState(file: string, source: string): ModuleState[] {
  const found: ModuleState[] = [];
  const lines = source.split("\n");
  let inTemplate = false;
  for (const [i, text] of lines.entries()) {
    const startsInTemplate = inTemplate;
    // Backticks not escaped toggle a template literal (good enough for fmt'd code).
    const ticks = text.replace(/\\./g, "").split("`").length - 1;
    if (ticks % 2 === 1) inTemplate = !inTemplate;
    if (startsInTemplate) continue;
    const asLet = LET.exec(text);
    if (asLet) {
      found.push({ file, line: i + 1, name: asLet[2], kind: asLet[1] as "let" | "var" });
      continue;
    }
    const asConst = CONTAINER.exec(text);
    if (asConst && !READ_ONLY_TYPE.test(asConst[2]?.trim() ?? "")) {
      found.push({ file, line: i + 1, name: asConst[1], kind: "const" });
    }
  }
  return found;
}

/** Every non-test TypeScript module under `dir`, as absolute paths, in a stable order. */
function modules(dir: string): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) out.push(...modules(path));
    else if (entry.isFile && /\.ts$/.test(entry.name) && !/_test\.ts$/.test(entry.name)) {
      out.push(path);
    }
  }
  return out.sort();
}

/** What the check found: state not allowed, and allow-list entries that match nothing. */
export interface GlobalsReport {
  /** Module state with no allow-list entry. */
  unexpected: ModuleState[];
  /** Entries (not pending) whose declaration is gone: delete them. */
  stale: Allowed[];
}

/** Scans lib/ under `root` against `allowed`. */
export function checkGlobals(
  root: string = ROOT,
  allowed: readonly Allowed[] = ALLOWED,
): GlobalsReport {
  const found: ModuleState[] = [];
  for (const path of modules(join(root, "lib"))) {
    const file = relative(root, path).split("\\").join("/");
    found.push(...findModuleState(file, Deno.readTextFileSync(path)));
  }
  const key = (x: { file: string; name: string }) => `${x.file} ${x.name}`;
  const allowedKeys = new Set(allowed.map(key));
  const foundKeys = new Set(found.map(key));
  return {
    unexpected: found.filter((s) => !allowedKeys.has(key(s))),
    stale: allowed.filter((a) => !a.pending && !foundKeys.has(key(a))),
  };
}

/** The report as text for a person: what to do about each finding. */
export function describeReport(report: GlobalsReport): string {
  const lines: string[] = [];
  for (const s of report.unexpected) {
    lines.push(
      `  ${s.file}:${s.line}: module-level ${s.kind} ${s.name}: ` +
        "make it state of an instance, passed in (or, if it is process-wide by nature, " +
        "say why in a comment and add it to ALLOWED in scripts/check_globals.ts)",
    );
  }
  for (const a of report.stale) {
    lines.push(`  ${a.file}: ${a.name} is gone: delete its ALLOWED entry`);
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const report = checkGlobals();
  if (report.unexpected.length || report.stale.length) {
    console.error(`check_globals: module-level mutable state in lib/:\n${describeReport(report)}`);
    Deno.exit(1);
  }
  console.log(
    `check_globals: no module-level mutable state in lib/ beyond ${ALLOWED.length} allowed`,
  );
}
