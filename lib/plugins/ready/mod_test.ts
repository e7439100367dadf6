import assert from "node:assert/strict";
import type { BlockView, ConfigView, Plugin } from "../../server/plugin.ts";
import { Resources } from "../../server/resources.ts";
import { freePort } from "../../../tests/helpers/wait.ts";
import { assertSetupError, configView, parseSnippet, setupContext } from "../health/testing.ts";
import { parseReady, readyPlugin } from "./mod.ts";

/** A chain plugin whose readiness the test controls, counting how often it is asked. */
function gated(name: string): Plugin & { open: boolean; asked: number } {
  const p = {
    name,
    open: false,
    asked: 0,
    serve: () => Promise.reject(new Error("not used")),
    ready() {
      p.asked++;
      return p.open;
    },
  };
  return p;
}

function block(plugins: Plugin[]): BlockView {
  return { zones: ["."], port: 53, bind: [], plugins };
}

async function get(url: string): Promise<[number, string]> {
  const res = await fetch(url);
  return [res.status, await res.text()];
}

Deno.test("ready: 503 names the plugins not ready (sorted, every block), then 200 OK", async () => {
  const port = await freePort();
  const resources = new Resources();
  const scope = resources.scope();
  const setup = setupContext(`. {\n ready 127.0.0.1:${port}\n}`, "ready", resources);
  assert.equal(await readyPlugin.setup(setup.ctx), null);
  const zeta = gated("zeta");
  const alpha = gated("alpha");
  const plain: Plugin = { name: "whoami", serve: () => Promise.reject(new Error("not used")) };
  // Two blocks (one without `ready`) and a plugin shared by two ports of one block.
  const config = configView({
    blocks: [block([zeta, plain]), block([alpha, plain]), block([alpha])],
  });
  try {
    // The startup hook receives the whole configuration, as Instance passes it.
    for (const fn of setup.startup) await fn(config);
    const url = `http://127.0.0.1:${port}/ready`;
    // Each state is logged once, however often it is asked for.
    for (let i = 0; i < 3; i++) assert.deepEqual(await get(url), [503, "alpha,zeta"]);
    alpha.open = true;
    for (let i = 0; i < 3; i++) assert.deepEqual(await get(url), [503, "zeta"]);
    zeta.open = true;
    assert.deepEqual(await get(url), [200, "OK"]);
    // until-ready (the default): once ready, never asked again.
    const asked = zeta.asked;
    zeta.open = false;
    assert.deepEqual(await get(url), [200, "OK"]);
    assert.equal(zeta.asked, asked);
    assert.deepEqual(setup.lines.filter((l) => l.includes("plugin/ready")), [
      `[INFO] plugin/ready: Plugins not ready: "alpha,zeta"`,
      `[INFO] plugin/ready: Plugins not ready: "zeta"`,
      `[INFO] plugin/ready: Plugins ready: "alpha,zeta"`,
    ]);
    assert.deepEqual(await get(`http://127.0.0.1:${port}/health`), [404, "404 page not found\n"]);
  } finally {
    await scope.release();
  }
});

Deno.test("ready: monitor continuously asks every time; stopping answers 503 Shutting down", async () => {
  const port = await freePort();
  const resources = new Resources();
  const scope = resources.scope();
  const setup = setupContext(
    `. {\n ready 127.0.0.1:${port} {\n  monitor continuously\n }\n}`,
    "ready",
    resources,
  );
  await readyPlugin.setup(setup.ctx);
  const url = `http://127.0.0.1:${port}/ready`;
  // Before any configuration is current, it is not ready (and not shutting down either).
  assert.deepEqual(await get(url), [503, ""]);
  const etcd = gated("etcd");
  const config = configView({ blocks: [block([etcd])] });
  for (const fn of setup.startup) await fn(config);
  try {
    etcd.open = true;
    assert.deepEqual(await get(url), [200, "OK"]);
    etcd.open = false;
    assert.deepEqual(await get(url), [503, "etcd"]);
    assert.deepEqual(await get(url), [503, "etcd"]);
    etcd.open = true;
    assert.deepEqual(await get(url), [200, "OK"]);
    // A node that turns not ready and back is logged at each change, once.
    assert.deepEqual(setup.lines.filter((l) => l.includes("plugin/ready")), [
      `[INFO] plugin/ready: Plugins ready: "etcd"`,
      `[INFO] plugin/ready: Plugins not ready: "etcd"`,
      `[INFO] plugin/ready: Plugins ready: "etcd"`,
    ]);
  } finally {
    // Instance.stop() runs the shutdown hooks as final: from then on we are going away.
    for (const fn of setup.shutdown) await fn({ final: true });
  }
  assert.deepEqual(await get(url), [503, "Shutting down"]);
  await scope.release();
});

Deno.test("ready: a reload asks the new configuration; a failed one puts the running one back", async () => {
  const port = await freePort();
  const resources = new Resources();
  const text = `. {\n ready 127.0.0.1:${port} {\n  monitor continuously\n }\n}`;
  const url = `http://127.0.0.1:${port}/ready`;
  const first = resources.scope();
  const running = setupContext(text, "ready", resources);
  await readyPlugin.setup(running.ctx);
  const old = gated("old");
  const runningConfig: ConfigView = configView({ blocks: [block([old])] });
  for (const fn of running.startup) await fn(runningConfig);
  assert.deepEqual(await get(url), [503, "old"]);

  // A reload's configuration shares the address (and so the server).
  const second = resources.scope();
  const next = setupContext(text, "ready", resources);
  await readyPlugin.setup(next.ctx);
  const fresh = gated("fresh");
  for (const fn of next.startup) await fn(configView({ blocks: [block([fresh])] }));
  assert.deepEqual(await get(url), [503, "fresh"]);

  // It fails after its startup: its shutdown hooks (not final) put the running one back.
  for (const fn of next.shutdown) await fn({ final: false });
  await second.release();
  assert.deepEqual(await get(url), [503, "old"]);
  old.open = true;
  assert.deepEqual(await get(url), [200, "OK"]);
  await first.release();
});

Deno.test("ready: syntax as CoreDNS (default :8181, once per block, errors)", () => {
  const parse = (text: string) => parseReady(parseSnippet(text)[0].directives);
  assert.deepEqual(parse(". {\n ready\n}"), {
    address: { text: ":8181", host: "", port: 8181 },
    monitor: "until-ready",
  });
  assert.equal(parse(". {\n ready :1 {\n monitor continuously\n }\n}").monitor, "continuously");
  const fails = (text: string, message: string) => assertSetupError(() => parse(text), message);
  fails(
    ". {\n ready\n ready :2\n}",
    "plugin/ready: Corefile:3 - Error during parsing: this plugin can only be used once per Server Block",
  );
  fails(
    ". {\n ready :1 :2\n}",
    "plugin/ready: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after ':2'",
  );
  fails(
    ". {\n ready 8181\n}",
    "plugin/ready: Corefile:2 - Error during parsing: address 8181: missing port in address",
  );
  fails(
    ". {\n ready {\n monitor sometimes\n }\n}",
    "plugin/ready: Corefile:3 - Error during parsing: monitor type must be 'until-ready' or 'continuously', got 'sometimes'",
  );
  fails(
    ". {\n ready {\n watch\n }\n}",
    "plugin/ready: Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'watch'",
  );
});
