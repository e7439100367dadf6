/**
 * `ready` logs its state changes, not every request: the real program with
 * an `etcd` block on an etcd that starts later, polled on /ready as a probe
 * would poll it.
 */

import assert from "node:assert/strict";
import { startEtcd } from "./helpers/etcd.ts";
import { startServer, writeCorefile } from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";

async function get(url: string): Promise<[number, string]> {
  const res = await fetch(url);
  return [res.status, await res.text()];
}

/** The server's `ready` log lines so far. */
function readyLines(output: string): string[] {
  return output.split("\n").filter((l) => l.includes("plugin/ready:"));
}

Deno.test("ready: a real server logs not ready once and ready once over many /ready requests", async () => {
  const etcdPort = await freePort();
  const port = await freePort();
  const readyPort = await freePort();
  const conf = await writeCorefile(
    [
      `.:${port} {`,
      `    whoami`,
      `    ready 127.0.0.1:${readyPort}`,
      `}`,
      `skydns.local:${port} {`,
      `    etcd {`,
      `        endpoint http://127.0.0.1:${etcdPort}`,
      `    }`,
      `}`,
      ``,
    ].join("\n"),
  );
  await using server = await startServer(conf);
  const url = `http://127.0.0.1:${readyPort}/ready`;
  // etcd is not running: not ready, asked ten times.
  for (let i = 0; i < 10; i++) assert.deepEqual(await get(url), [503, "etcd"]);
  assert.deepEqual(readyLines(server.output()), [
    `[INFO] plugin/ready: Plugins not ready: "etcd"`,
  ]);

  await using _etcd = await startEtcd({ clientPort: etcdPort });
  await waitFor(async () => (await get(url))[0] === 200, {
    timeoutMs: 20_000,
    what: "/ready to answer 200 once etcd is up",
  });
  for (let i = 0; i < 10; i++) assert.deepEqual(await get(url), [200, "OK"]);
  // The waitFor above may have asked many times while not ready: still one line each.
  assert.deepEqual(readyLines(server.output()), [
    `[INFO] plugin/ready: Plugins not ready: "etcd"`,
    `[INFO] plugin/ready: Plugins ready: "etcd"`,
  ]);
});
