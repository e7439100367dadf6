/**
 * The architecture's rules that a grep can check: no module-level mutable
 * state in lib/ beyond the reviewed allow-list (scripts/check_globals.ts,
 * also run by `deno task check`).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ALLOWED,
  checkGlobals,
  describeReport,
  findModuleState,
} from "../scripts/check_globals.ts";

Deno.test("architecture: lib/ keeps no module-level mutable state beyond the allow-list", () => {
  const report = checkGlobals();
  assert.deepEqual(report, { unexpected: [], stale: [] }, describeReport(report));
});

Deno.test("architecture: every allowed piece of module state says why", () => {
  for (const entry of ALLOWED) {
    assert.ok(entry.reason.length > 20, `${entry.file} ${entry.name}: no real reason`);
  }
  const keys = ALLOWED.map((a) => `${a.file} ${a.name}`);
  assert.equal(new Set(keys).size, keys.length, "an entry is listed twice");
});

Deno.test("architecture: what counts as module state, and what does not", () => {
  const source = [
    "let counter = 0;",
    "export let exported: string | undefined;",
    "var old = 1;",
    "const cache = new Map<string, number>();",
    "export const seen = new Set<string>();",
    "const weak = new WeakMap<object, number>();",
    "const list: number[] = [];",
    // Typed read-only: a table filled once at load.
    "const TABLE: ReadonlyMap<number, string> = new Map([[1, 'a']]);",
    "const NAMES: readonly string[] = [];",
    // Not containers, or not at module level.
    "const encoder = new TextEncoder();",
    "const LIMIT = 5;",
    "function f() {",
    "  let local = 0;",
    "  const m = new Map();",
    "  return [local, m];",
    "}",
    "const text = `",
    "let inside = 'a template, not code';",
    "`;",
    "let after = 1;",
  ].join("\n");
  assert.deepEqual(
    findModuleState("lib/x.ts", source).map((s) => [s.line, s.kind, s.name]),
    [
      [1, "let", "counter"],
      [2, "let", "exported"],
      [3, "var", "old"],
      [4, "const", "cache"],
      [5, "const", "seen"],
      [6, "const", "weak"],
      [7, "const", "list"],
      [20, "let", "after"],
    ],
  );
});

Deno.test("architecture: a new module-level let fails the check, a gone entry is stale", async () => {
  const root = await Deno.makeTempDir({ prefix: "idetcd-globals-test-" });
  try {
    await Deno.mkdir(join(root, "lib/sub"), { recursive: true });
    await Deno.writeTextFile(
      join(root, "lib/sub/a.ts"),
      "let hits = 0;\nexport const f = () => hits++;\n",
    );
    await Deno.writeTextFile(join(root, "lib/sub/a_test.ts"), "let inTests = 0;\n");
    await Deno.writeTextFile(join(root, "lib/b.ts"), "let allowed = 0;\n");
    const report = checkGlobals(root, [
      { file: "lib/b.ts", name: "allowed", reason: "a reason long enough to count" },
      { file: "lib/gone.ts", name: "was", reason: "its declaration was removed" },
      { file: "lib/moving.ts", name: "soon", reason: "removal under way elsewhere", pending: true },
    ]);
    assert.deepEqual(report.unexpected, [{
      file: "lib/sub/a.ts",
      line: 1,
      name: "hits",
      kind: "let",
    }]);
    assert.deepEqual(report.stale.map((a) => a.name), ["was"]);
    assert.match(describeReport(report), /lib\/sub\/a\.ts:1: module-level let hits/);
    assert.match(describeReport(report), /lib\/gone\.ts: was is gone: delete its ALLOWED entry/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
