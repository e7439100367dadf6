import assert from "node:assert/strict";
import { render } from "../../server/metrics.ts";
import type { ServerControl } from "../../server/plugin.ts";
import { Resources } from "../../server/resources.ts";
import { waitFor } from "../../../tests/helpers/wait.ts";
import { assertSetupError, configView, parseSnippet, setupContext } from "../health/testing.ts";
import { corefileDigest, jitteredInterval, parseReload, reloadPlugin } from "./mod.ts";

Deno.test("reload: syntax and limits as CoreDNS", () => {
  const parse = (text: string) => parseReload(parseSnippet(text)[0].directives);
  assert.deepEqual(parse(". {\n reload\n}"), { interval: 30, jitter: 15 });
  assert.deepEqual(parse(". {\n reload 10s\n}"), { interval: 10, jitter: 5 }, "jitter capped");
  assert.deepEqual(parse(". {\n reload 2s 0\n}"), { interval: 2, jitter: 0 });
  assert.deepEqual(parse(". {\n reload 1m 1s\n}"), { interval: 60, jitter: 1 });
  assert.deepEqual(
    parse(". {\n reload 5s\n reload 1m\n}"),
    { interval: 5, jitter: 2.5 },
    "first wins",
  );
  const fails = (text: string, message: string) => assertSetupError(() => parse(text), message);
  fails(
    ". {\n reload 1s\n}",
    "plugin/reload: Corefile:2 - Error during parsing: interval value must be greater or equal to 2s",
  );
  fails(
    ". {\n reload 10s 500ms\n}",
    "plugin/reload: Corefile:2 - Error during parsing: jitter value must be greater or equal to 1s",
  );
  fails(
    ". {\n reload often\n}",
    `plugin/reload: Corefile:2 - Error during parsing: time: invalid duration "often"`,
  );
  fails(
    ". {\n reload 1s 2s 3s\n}",
    "plugin/reload: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after '3s'",
  );
});

Deno.test("reload: the period is INTERVAL ± JITTER/2", () => {
  assert.equal(jitteredInterval({ interval: 30, jitter: 15 }, () => 0), 22.5);
  assert.equal(jitteredInterval({ interval: 30, jitter: 15 }, () => 0.5), 30);
  assert.ok(jitteredInterval({ interval: 30, jitter: 15 }, () => 0.999999) < 37.5);
  assert.equal(jitteredInterval({ interval: 2, jitter: 0 }, () => 0.9), 2);
});

Deno.test("reload: a changed Corefile asks for a reload; a broken one is reported, not retried", async () => {
  const dir = await Deno.makeTempDir({ prefix: "idetcd-reload-" });
  const path = `${dir}/Corefile`;
  const write = (text: string) => Deno.writeTextFile(path, text);
  await write(". {\n reload 2s 0\n whoami\n}\n");
  let reads = 0;
  const initial = parseSnippet(await Deno.readTextFile(path));
  const requests: string[] = [];
  let outcome = true;
  // The server the plugin reads the Corefile and reloads through (an Instance's SetupContext.server).
  const server: ServerControl = {
    readCorefile: async () => {
      reads++;
      return parseSnippet(await Deno.readTextFile(path));
    },
    reload: (why) => {
      requests.push(why);
      return Promise.resolve(outcome);
    },
  };
  const resources = new Resources();
  const scope = resources.scope();
  try {
    const setup = setupContext(await Deno.readTextFile(path), "reload", resources, { server });
    assert.equal(await reloadPlugin.setup(setup.ctx), null);
    // The startup hook hashes the Corefile of the configuration it starts.
    for (const fn of setup.startup) await fn(configView({ corefile: initial }));
    const digest = await corefileDigest(initial);
    assert.match(digest, /^[0-9a-f]{128}$/);
    assert.deepEqual(setup.lines, [
      `[INFO] plugin/reload: Running configuration SHA512 = ${digest}`,
    ]);
    assert.match(
      render(),
      new RegExp(`^coredns_reload_version_info\\{hash="sha512",value="${digest}"\\} 1$`, "m"),
    );

    // Same tokens, other spacing: no reload (the parsed blocks are hashed, as CoreDNS).
    await write(". {\n reload 2s 0\n whoami   \n}\n");
    const seen = reads;
    await waitFor(() => reads > seen, { what: "a check", timeoutMs: 5000 });
    assert.deepEqual(requests, []);

    await write(". {\n reload 2s 0\n whoami\n log\n}\n");
    await waitFor(() => requests.length === 1, { what: "a reload request", timeoutMs: 5000 });
    assert.deepEqual(requests, ["Corefile changed"]);

    // A file that does not parse: reported once, no reload asked.
    await write(". {\n reload 2s 0\n whoami\n");
    await waitFor(
      () =>
        setup.lines.some((l) => l.startsWith("[WARNING] plugin/reload: Corefile parse failed:")),
      {
        what: "the parse warning",
        timeoutMs: 5000,
      },
    );
    assert.equal(requests.length, 1);

    // A reload that fails is counted and not retried until the file changes again.
    const failedBefore = Number(/^coredns_reload_failed_total (\S+)$/m.exec(render())?.[1] ?? 0);
    outcome = false;
    await write(". {\n reload 2s 0\n whoami\n errors\n}\n");
    await waitFor(() => requests.length === 2, {
      what: "a second reload request",
      timeoutMs: 5000,
    });
    await waitFor(
      () => Number(/^coredns_reload_failed_total (\S+)$/m.exec(render())?.[1]) === failedBefore + 1,
      { what: "the failure count" },
    );
    const after = reads;
    await waitFor(() => reads > after, { what: "another check", timeoutMs: 5000 });
    assert.equal(requests.length, 2);
  } finally {
    await scope.release();
    await Deno.remove(dir, { recursive: true });
  }
});
