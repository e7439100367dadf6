/**
 * Corefile.example is what users copy: it must parse, start, claim a name
 * and serve health, readiness and metrics as its comments say.
 */

import assert from "node:assert/strict";
import { startEtcd } from "./helpers/etcd.ts";
import { queryUdp, startServer, writeCorefile } from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";
import { Rcode, Type } from "../lib/dns/types.ts";

Deno.test("Corefile.example starts, claims worker1 and serves /health, /ready and /metrics", async () => {
  await using etcd = await startEtcd();
  const [dns, health, ready, metrics] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const example = await Deno.readTextFile(new URL("../Corefile.example", import.meta.url));
  assert.match(example, /endpoint http:\/\/localhost:2379/);
  const text = example
    .replaceAll("http://localhost:2379", etcd.endpoint)
    .replace("health :8080", `health 127.0.0.1:${health}`)
    .replace("ready :8181", `ready 127.0.0.1:${ready}`)
    .replace("prometheus :9153", `prometheus 127.0.0.1:${metrics}`)
    .replace(/^(\s*)idetcd \{$/m, "$1idetcd {\n$1    address 127.0.0.9");
  const conf = await writeCorefile(text);
  await using server = await startServer(conf, { args: ["-dns.port", String(dns)] });
  await server.waitForOutput("claimed worker1.tf.local. (ID 1)");

  const a = await queryUdp("127.0.0.1", dns, "worker1.tf.local.", Type.A);
  assert.deepEqual(a.answer.map((r) => r.data), ["127.0.0.9"]);
  const srv = await queryUdp("127.0.0.1", dns, "_nodes.tf.local.", Type.SRV);
  assert.deepEqual(srv.answer.map((r) => r.data), [
    { priority: 0, weight: 100, port: 2222, target: "worker1.tf.local." },
  ]);
  assert.equal(
    (await queryUdp("127.0.0.1", dns, "worker2.tf.local.", Type.A)).rcode,
    Rcode.NameError,
  );

  const get = async (port: number, path: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: res.status, body: await res.text() };
  };
  assert.deepEqual(await get(health, "/health"), { status: 200, body: "OK" });
  await waitFor(async () => (await get(ready, "/ready")).status === 200, { what: "/ready 200" });
  const scraped = (await get(metrics, "/metrics")).body;
  assert.match(scraped, /^idetcd_claimed_id\{pattern="worker\{\{\.ID\}\}\.tf\.local\."\} 1$/m);
  assert.match(scraped, /^coredns_dns_requests_total\{.*zone="\.".*\} \d+$/m);
  assert.match(scraped, /^idetcd_lease_state\{pattern="worker\{\{\.ID\}\}\.tf\.local\."\} 1$/m);
  // Both etcd-backed plugins report their copy: its revision, that it is connected, no errors.
  assert.match(scraped, /^idetcd_etcd_watch_revision\{prefix="\/skydns\/local\/tf\/"\} [1-9]\d*$/m);
  assert.match(scraped, /^idetcd_etcd_connected\{prefix="\/skydns"\} 1$/m);
  assert.match(scraped, /^idetcd_etcd_errors_total\{prefix="\/skydns\/local\/tf\/"\} 0$/m);
  assert.match(scraped, /^idetcd_claims_total\{pattern="[^"]+"\} 1$/m);
});
