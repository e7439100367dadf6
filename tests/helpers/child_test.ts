/** The one child-process harness (tests, demo, bench): lines stamped as they arrive, waits, stop. */

import assert from "node:assert/strict";
import { Child } from "./child.ts";

/** A shell that prints `first`, waits for a file to exist, then prints `second` and a partial line. */
const SCRIPT = 'echo first; echo err-line >&2; while [ ! -e "$GO" ]; do sleep 0.01; done; ' +
  "echo second; printf tail";

Deno.test("child: lines are stamped as they arrive, waitForLine returns the line, the partial last one is kept", async () => {
  const dir = await Deno.makeTempDir({ prefix: "idetcd-child-test-" });
  const go = `${dir}/go`;
  const child = Child.spawnSync("sh", ["-c", SCRIPT], { env: { GO: go }, lines: true });
  try {
    const first = await child.waitForLine(/^first$/);
    assert.ok(first.at >= child.spawnedAt);
    await child.waitForLine(/^err-line$/);
    assert.equal(child.lines.some((l) => l.text === "second"), false);
    const before = performance.now();
    await Deno.writeTextFile(go, "");
    const second = await child.waitForLine(/^second$/);
    assert.ok(second.at >= before, "stamped when it arrived, not when asked for");
    assert.equal((await child.status).code, 0);
    assert.deepEqual(child.lines.map((l) => l.text).sort(), [
      "err-line",
      "first",
      "second",
      "tail",
    ]);
    assert.equal(child.lines.at(-1)?.text, "tail");
    await assert.rejects(
      child.waitForLine(/never/),
      /sh \(process \d+\) exited \(exit code 0\) before printing \/never\//,
    );
  } finally {
    await child.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("child: without `lines` no lines are kept; waitForLine gives up at its deadline", async () => {
  const child = await Child.spawn("sh", ["-c", "echo hello; exec sleep 30"]);
  try {
    await child.waitForOutput("hello");
    assert.deepEqual(child.lines, []);
    await assert.rejects(child.waitForLine(/hello/, 50), /timed out waiting for \/hello\/ from sh/);
  } finally {
    await child.stop();
  }
  assert.equal(child.describeExit(), "killed by SIGTERM");
});
