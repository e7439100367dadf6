import assert from "node:assert/strict";
import { join } from "node:path";
import { describeCycle, findCycles, type Graph, projectGraph } from "../scripts/check_cycles.ts";

Deno.test("check_cycles: one cycle per tangle, shortest way round, type-only and self imports too", () => {
  const graph: Graph = new Map([
    ["file:///p/a.ts", [{ to: "file:///p/b.ts", kind: "value" as const }]],
    ["file:///p/b.ts", [
      { to: "file:///p/c.ts", kind: "value" as const },
      { to: "file:///p/a.ts", kind: "type" as const },
    ]],
    ["file:///p/c.ts", [{ to: "file:///p/a.ts", kind: "dynamic" as const }]],
    ["file:///p/self.ts", [{ to: "file:///p/self.ts", kind: "value" as const }]],
    ["file:///p/leaf.ts", []],
    ["file:///p/user.ts", [{ to: "file:///p/leaf.ts", kind: "value" as const }]],
  ]);
  const cycles = findCycles(graph);
  assert.deepEqual(cycles.map((c) => c.path), [
    ["file:///p/a.ts", "file:///p/b.ts", "file:///p/a.ts"],
    ["file:///p/self.ts", "file:///p/self.ts"],
  ]);
  assert.deepEqual(cycles[0].kinds, ["value", "type"]);
  assert.deepEqual(cycles[0].component, ["file:///p/a.ts", "file:///p/b.ts", "file:///p/c.ts"]);
  assert.equal(
    describeCycle(cycles[0], "/p"),
    "  a.ts\n    imports b.ts\n    imports (type) a.ts\n  also in this tangle: c.ts",
  );
  assert.deepEqual(findCycles(new Map([["file:///p/x.ts", []]])), []);
});

Deno.test("check_cycles: reads Deno's graph of a project (import type counts)", async () => {
  const root = await Deno.makeTempDir({ prefix: "idetcd-cycles-test-" });
  try {
    await Deno.mkdir(join(root, "lib"));
    await Deno.writeTextFile(join(root, "deno.json"), "{}\n");
    await Deno.writeTextFile(join(root, "main.ts"), 'import { a } from "./lib/a.ts";\na();\n');
    await Deno.writeTextFile(
      join(root, "lib/a.ts"),
      'import type { B } from "./b.ts";\nexport function a(b?: B) {\n  return b;\n}\n',
    );
    await Deno.writeTextFile(
      join(root, "lib/b.ts"),
      'import { a } from "./a.ts";\nexport type B = ReturnType<typeof a>;\n',
    );
    const cycles = findCycles(await projectGraph(root));
    assert.equal(cycles.length, 1);
    assert.equal(
      describeCycle(cycles[0], root),
      "  lib/a.ts\n    imports (type) lib/b.ts\n    imports lib/a.ts",
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("check_cycles: this project has no import cycle", async () => {
  const cycles = findCycles(await projectGraph());
  assert.deepEqual(cycles.map((c) => describeCycle(c)), []);
});
