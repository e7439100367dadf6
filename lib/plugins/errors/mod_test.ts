/**
 * The errors plugin through its real setup and handler, with a captured
 * logger: the line of each error, consolidation (counts, levels, show_first,
 * the period as Go prints it, the flush at shutdown) and CoreDNS's setup errors.
 */

import assert from "node:assert/strict";
import { Rcode, Type } from "../../dns/types.ts";
import { createLogger, type Level } from "../../log.ts";
import type { Plugin, Reply } from "../../server/plugin.ts";
import { directivesOf, fakeRequest, setupContext } from "../forward/testkit.ts";
import { waitFor } from "../../../tests/helpers/wait.ts";
import { errorsPlugin } from "./mod.ts";

/** What the plugin logged, as [level, line]. */
type Lines = [Level, string][];

/** The errors plugin set up from `body` (the `errors` directive and its block). */
async function errorsFrom(body: string) {
  const lines: Lines = [];
  const ctx = setupContext(directivesOf("errors", body), {
    log: createLogger("plugin/errors", (level, line) => lines.push([level, line])),
  });
  const plugin = (await errorsPlugin.setup(ctx)) as Plugin;
  assert.equal(plugin.name, "errors");
  return { plugin, lines, shutdown: () => ctx.shutdown() };
}

/** A next handler whose reply carries `error` (a SERVFAIL, as the etcd plugin's). */
function failing(error?: string, rcode: number = Rcode.ServerFailure) {
  return (): Promise<Reply> =>
    Promise.resolve({
      rcode,
      authoritative: false,
      answer: [],
      authority: [],
      additional: [],
      ...(error === undefined ? {} : { error }),
    });
}

Deno.test("errors: each reported error is one ERROR line `RCODE NAME TYPE: TEXT`, the name lower-cased", async () => {
  const { plugin, lines, shutdown } = await errorsFrom("errors");
  try {
    const next = failing("/skydns/org/example/bad: json: cannot unmarshal string");
    const reply = await plugin.serve(fakeRequest("Bad.Example.ORG.", Type.SRV), next);
    // The reply is passed on untouched.
    assert.equal(reply.rcode, Rcode.ServerFailure);
    assert.equal(reply.error, "/skydns/org/example/bad: json: cannot unmarshal string");
    assert.deepEqual(lines, [[
      "ERROR",
      "[ERROR] plugin/errors: 2 bad.example.org. SRV: /skydns/org/example/bad: json: cannot unmarshal string",
    ]]);
    // A reply without an error (any rcode) logs nothing.
    await plugin.serve(fakeRequest("ok.example.org.", Type.A), failing(undefined));
    await plugin.serve(
      fakeRequest("nx.example.org.", Type.A),
      failing(undefined, Rcode.NameError),
    );
    assert.equal(lines.length, 1);
    await plugin.serve(fakeRequest("x.example.org.", 65280), failing("no next plugin", 5));
    assert.deepEqual(lines[1], [
      "ERROR",
      "[ERROR] plugin/errors: 5 x.example.org. TYPE65280: no next plugin",
    ]);
  } finally {
    await shutdown();
  }
});

Deno.test("errors consolidate: a run of matching errors is one summary DURATION after its first; others are logged at once", async () => {
  const { plugin, lines, shutdown } = await errorsFrom(
    `errors {\n    consolidate 250ms "i/o timeout$"\n}`,
  );
  try {
    const started = performance.now();
    for (let i = 0; i < 3; i++) {
      await plugin.serve(
        fakeRequest(`q${i}.example.org.`, Type.A),
        failing("read udp: i/o timeout"),
      );
    }
    await plugin.serve(fakeRequest("other.example.org.", Type.A), failing("connection refused"));
    // Only the error that matches no pattern, and at once.
    assert.deepEqual(lines, [[
      "ERROR",
      "[ERROR] plugin/errors: 2 other.example.org. A: connection refused",
    ]]);
    await waitFor(() => lines.length === 2, { timeoutMs: 5_000, what: "the summary" });
    assert.ok(performance.now() - started >= 240, "not before the period is over");
    assert.deepEqual(lines[1], [
      "ERROR",
      "[ERROR] plugin/errors: 3 errors like 'i/o timeout$' occurred in last 250ms",
    ]);
    // The count starts again: a new run gets its own summary.
    await plugin.serve(fakeRequest("q.example.org.", Type.A), failing("dial: i/o timeout"));
    await waitFor(() => lines.length === 3, { timeoutMs: 5_000, what: "the second summary" });
    assert.deepEqual(lines[2], [
      "ERROR",
      "[ERROR] plugin/errors: 1 errors like 'i/o timeout$' occurred in last 250ms",
    ]);
  } finally {
    await shutdown();
  }
});

Deno.test("errors consolidate: the first matching pattern counts; the level applies to the summary; the period prints as Go's Duration", async () => {
  const { plugin, lines, shutdown } = await errorsFrom(
    [
      "errors {",
      '    consolidate 5m "^timeout" warning',
      '    consolidate 1.5s "timeout" info',
      '    consolidate 90s "refused" debug',
      "}",
    ].join("\n"),
  );
  const ask = (error: string) =>
    plugin.serve(fakeRequest("a.example.org.", Type.A), failing(error));
  try {
    await ask("timeout reading"); // both patterns match: the first takes it
    await ask("timeout again");
    await ask("read timeout"); // only the second
    assert.deepEqual(lines, [], "nothing before the periods end");
    // Stopping the configuration logs what was counted (as CoreDNS's stop()).
    await shutdown();
    assert.deepEqual(lines, [
      ["WARNING", "[WARNING] plugin/errors: 2 errors like '^timeout' occurred in last 5m0s"],
      ["INFO", "[INFO] plugin/errors: 1 errors like 'timeout' occurred in last 1.5s"],
    ]);
    // After the stop nothing is held back: each error is logged at its pattern's level.
    await ask("timeout late");
    await ask("something else");
    assert.deepEqual(lines.slice(2), [
      ["WARNING", "[WARNING] plugin/errors: 2 a.example.org. A: timeout late"],
      ["ERROR", "[ERROR] plugin/errors: 2 a.example.org. A: something else"],
    ]);
  } finally {
    await shutdown();
  }
});

Deno.test("errors consolidate show_first: the first error is logged at the rule's level; the summary only when more followed", async () => {
  const { plugin, lines, shutdown } = await errorsFrom(
    `errors {\n    consolidate 30s "^boom" warning show_first\n}`,
  );
  const ask = () => plugin.serve(fakeRequest("a.example.org.", Type.A), failing("boom"));
  const first = await errorsFrom(`errors {\n    consolidate 30s "^boom" warning show_first\n}`);
  try {
    // One error alone: logged as itself, no summary at the end of its period.
    await first.plugin.serve(fakeRequest("a.example.org.", Type.A), failing("boom"));
    await first.shutdown();
    assert.deepEqual(first.lines, [[
      "WARNING",
      "[WARNING] plugin/errors: 2 a.example.org. A: boom",
    ]]);

    // Three: the first as itself, then one summary counting all three.
    await ask();
    await ask();
    await ask();
    assert.deepEqual(lines, [["WARNING", "[WARNING] plugin/errors: 2 a.example.org. A: boom"]]);
    await shutdown();
    assert.deepEqual(lines.slice(1), [[
      "WARNING",
      "[WARNING] plugin/errors: 3 errors like '^boom' occurred in last 30s",
    ]]);
  } finally {
    await first.shutdown();
    await shutdown();
  }
});

Deno.test("errors setup: CoreDNS's error texts", async () => {
  const fails = async (corefileBody: string, message: string | RegExp) => {
    await assert.rejects(
      async () => {
        await errorsPlugin.setup(setupContext(directivesOf("errors", corefileBody)));
      },
      (err: Error) => {
        if (typeof message === "string") assert.equal(err.message, message);
        else assert.match(err.message, message);
        return true;
      },
      corefileBody,
    );
  };
  await fails("errors\nerrors", /this plugin can only be used once per Server Block/);
  await fails("errors stdout", /Wrong argument count or unexpected line ending after 'errors'/);
  await fails("errors {\n    bogus\n}", /unknown property 'bogus'/);
  await fails(
    "errors {\n    consolidate 1m\n}",
    /Wrong argument count or unexpected line ending after 'consolidate'/,
  );
  await fails('errors {\n    consolidate 1m "(" \n}', /invalid regexp/);
  await fails(
    'errors {\n    consolidate 1m "x" loud\n}',
    /unknown log level argument in consolidate: loud/,
  );
  await fails('errors {\n    consolidate soon "x"\n}', /soon/);
  // stacktrace is accepted (and does nothing).
  const ok = await errorsFrom("errors {\n    stacktrace\n}");
  await ok.shutdown();
});
