import assert from "node:assert/strict";
import { render } from "../../server/metrics.ts";
import { Resources } from "../../server/resources.ts";
import { freePort, waitFor } from "../../../tests/helpers/wait.ts";
import { formatGoDuration } from "../../go/time.ts";
import { splitHostPort } from "../../go/net.ts";
import { healthPlugin, parseHealth } from "./mod.ts";
import { assertSetupError, parseSnippet, setupContext } from "./testing.ts";

async function get(url: string): Promise<[number, string]> {
  const res = await fetch(url);
  return [res.status, await res.text()];
}

Deno.test("health: GET /health answers 200 OK while up; other paths 404; closed with its configuration", async () => {
  const port = await freePort();
  const resources = new Resources();
  const scope = resources.scope();
  const { ctx } = setupContext(`. {\n health 127.0.0.1:${port}\n}`, "health", resources);
  assert.equal(await healthPlugin.setup(ctx), null);
  assert.deepEqual(await get(`http://127.0.0.1:${port}/health`), [200, "OK"]);
  assert.deepEqual(await get(`http://127.0.0.1:${port}/nope`), [404, "404 page not found\n"]);
  await scope.release();
  await assert.rejects(fetch(`http://127.0.0.1:${port}/health`));
});

Deno.test("health: blocks and configurations naming one address share its server", async () => {
  const port = await freePort();
  const resources = new Resources();
  const first = resources.scope();
  const text = `. {\n health 127.0.0.1:${port}\n}`;
  await healthPlugin.setup(setupContext(text, "health", resources).ctx);
  await healthPlugin.setup(setupContext(text, "health", resources).ctx); // a second block: no bind error
  const second = resources.scope(); // a reload keeping the address
  await healthPlugin.setup(setupContext(text, "health", resources).ctx);
  await first.release();
  assert.deepEqual(await get(`http://127.0.0.1:${port}/health`), [200, "OK"]);
  await second.release();
  assert.equal(resources.size, 0);
});

Deno.test("health: lameduck keeps answering 200 while a stop waits it out; a reload does not wait", async () => {
  const port = await freePort();
  const resources = new Resources();
  const scope = resources.scope();
  const setup = setupContext(
    `. {\n health 127.0.0.1:${port} {\n  lameduck 400ms\n }\n}`,
    "health",
    resources,
  );
  await healthPlugin.setup(setup.ctx);
  assert.equal(setup.shutdown.length, 1);

  // A reload: the configuration gives way to another (not final), so no lameduck.
  {
    const started = performance.now();
    await setup.shutdown[0]({ final: false });
    assert.ok(performance.now() - started < 300);
  }

  // A stop: the server goes away for good.
  const started = performance.now();
  let done = false;
  const stopping = Promise.resolve(setup.shutdown[0]({ final: true })).then(() => (done = true));
  assert.deepEqual(await get(`http://127.0.0.1:${port}/health`), [200, "OK"]);
  assert.equal(done, false);
  await stopping;
  assert.ok(performance.now() - started >= 390, "lameduck waited");
  assert.deepEqual(setup.lines, ["[INFO] plugin/health: Going into lameduck mode for 400ms"]);
  await scope.release();
});

Deno.test("health: the once-a-second self-check feeds coredns_health_request_duration_seconds", async () => {
  const port = await freePort();
  const resources = new Resources();
  const scope = resources.scope();
  await healthPlugin.setup(
    setupContext(`. {\n health 127.0.0.1:${port}\n}`, "health", resources).ctx,
  );
  try {
    await waitFor(() => /^coredns_health_request_duration_seconds_count [1-9]/m.test(render()), {
      timeoutMs: 5000,
      what: "a self-check",
    });
    assert.match(render(), /^# TYPE coredns_health_request_failures_total counter$/m);
  } finally {
    await scope.release();
  }
});

Deno.test("health: syntax as CoreDNS (default :8080, last address wins, errors)", () => {
  const parse = (text: string) => parseHealth(parseSnippet(text)[0].directives);
  assert.deepEqual(parse(". {\n health\n}"), {
    address: { text: ":8080", host: "", port: 8080 },
    lameduck: 0,
  });
  assert.equal(parse(". {\n health :1\n health [::1]:2\n}").address.host, "::1");
  assert.equal(parse(". {\n health { \n lameduck 1m30s\n }\n}").lameduck, 90);
  const fails = (text: string, message: string) => assertSetupError(() => parse(text), message);
  fails(
    ". {\n health a:1 b:2\n}",
    "plugin/health: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'b:2'",
  );
  fails(
    ". {\n health localhost\n}",
    "plugin/health: Corefile:2 - Error during parsing: address localhost: missing port in address",
  );
  fails(
    ". {\n health {\n  lameduck soon\n }\n}",
    `plugin/health: Corefile:3 - Error during parsing: unable to parse lameduck duration value: 'soon' : time: invalid duration "soon"`,
  );
  fails(
    ". {\n health {\n  lame 1s\n }\n}",
    "plugin/health: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'lame'",
  );
});

Deno.test("health: Go's SplitHostPort and Duration.String", () => {
  assert.deepEqual(splitHostPort(":8080"), { host: "", port: "8080" });
  assert.deepEqual(splitHostPort("[::1]:80"), { host: "::1", port: "80" });
  assert.throws(() => splitHostPort("::1:80"), /address ::1:80: too many colons in address/);
  assert.throws(() => splitHostPort("[::1]"), /address \[::1\]: missing port in address/);
  assert.throws(() => splitHostPort("[::1:80"), /missing '\]' in address/);
  assert.equal(formatGoDuration(5), "5s");
  assert.equal(formatGoDuration(90), "1m30s");
  assert.equal(formatGoDuration(3725.5), "1h2m5.5s");
  assert.equal(formatGoDuration(0.25), "250ms");
});
