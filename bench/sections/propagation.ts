/**
 * 3. Propagation: how long after a write to etcd (a SkyDNS put, or another
 * node's claim) a running node answers the new name. The node is polled in a
 * closed loop of UDP queries (the next query as soon as a reply arrives).
 *
 * @module
 */

import type { Etcd3 } from "etcd3";
import { freePort } from "../../tests/helpers/wait.ts";
import { claimerIn } from "../lib/claimers.ts";
import { Scope } from "../lib/cleanup.ts";
import type { Context } from "../lib/context.ts";
import { hasAddress, Probe } from "../lib/dns.ts";
import { clientIn, etcdIn } from "../lib/etcd.ts";
import { CLAIMED, corefile, etcdDirective, idetcdDirective, startNode } from "../lib/node.ts";
import type { Table } from "../lib/report.ts";
import { ms, percentile } from "../lib/stats.ts";

const TARGET_P99_MS = 50;
const A = 1;

/** A short random pause, so samples do not fall into one rhythm with the watch. */
function pause(): Promise<void> {
  return new Promise((r) => setTimeout(r, 2 + Math.random() * 8));
}

/** The address of sample `i` in 10.NET.0.0/16. */
function address(net: number, i: number): string {
  return `10.${net}.${(i >> 8) & 255}.${i & 255}`;
}

/** put -> answer: the key is written by a client in this process (as etcdctl would). */
async function putSamples(ctx: Context, client: Etcd3, probe: Probe, n: number) {
  const total: number[] = [];
  const write: number[] = [];
  for (let i = 0; i < n; i++) {
    const name = `p${i}.prop.example.local.`;
    const host = address(20, i + 1);
    const started = performance.now();
    const put = client.put(`/skydns/local/example/prop/p${i}`).value(JSON.stringify({ host }))
      .exec()
      .then(() => performance.now());
    const answered = await probe.pollUntil(name, A, (m) => hasAddress(m, host), 10_000);
    total.push(answered - started);
    write.push((await put) - started);
    await pause();
  }
  ctx.log(
    `propagation: put -> answer p50 ${ms(percentile(total, 50))}, p99 ${ms(percentile(total, 99))}`,
  );
  return { total, write };
}

/** claim -> answer: a new claimer (this process, one shared client) claims the next ID. */
async function claimSamples(
  ctx: Context,
  scope: Scope,
  endpoint: string,
  client: Etcd3,
  probe: Probe,
  nodeId: number,
  n: number,
) {
  const total: number[] = [];
  const claimCall: number[] = [];
  const taken = new Set([nodeId]);
  for (let i = 0; i < n; i++) {
    const host = address(30, i + 1);
    const claimer = claimerIn(scope, {
      endpoint,
      identity: `prop-claimer-${i + 1}`,
      address: host,
      limit: 1000,
      client,
    });
    // Claims take the lowest free ID, so the next name is known before the claim.
    let expected = 1;
    while (taken.has(expected)) expected++;
    const started = performance.now();
    const claim = claimer.claim().then((c) => ({ claimed: c, at: performance.now() }));
    let answered = await probe.pollUntil(
      `worker${expected}.tf.local.`,
      A,
      (m) => hasAddress(m, host),
      10_000,
    ).catch(() => undefined);
    const { claimed, at } = await claim;
    taken.add(claimed.id);
    if (claimed.id !== expected || answered === undefined) {
      // Another ID after all: poll the name it got (a little late, so slightly pessimistic).
      answered = await probe.pollUntil(claimed.name, A, (m) => hasAddress(m, host), 10_000);
    }
    total.push(answered - started);
    claimCall.push(at - started);
    await pause();
  }
  ctx.log(
    `propagation: claim -> answer p50 ${ms(percentile(total, 50))}, p99 ${
      ms(percentile(total, 99))
    }`,
  );
  return { total, claimCall };
}

/** Runs the propagation measurement. */
export async function propagation(ctx: Context): Promise<Table[]> {
  const { propagationPuts, propagationClaims } = ctx.settings;
  await using scope = new Scope();
  const etcd = await etcdIn(scope);
  const client = clientIn(scope, etcd.endpoint);
  await client.put("/skydns/local/example/prop/warmup").value(
    JSON.stringify({ host: "10.20.0.0" }),
  );

  const port = await freePort();
  const dir = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "propagation-" });
  const node = await startNode(
    scope,
    `${dir}/Corefile`,
    corefile(
      "127.0.0.1",
      idetcdDirective({
        endpoint: etcd.endpoint,
        limit: 1000,
        address: "127.0.0.1",
        identity: "bench-propagation-node",
      }),
      etcdDirective(["example.local"], etcd.endpoint),
    ),
    port,
  );
  const nodeId = Number(CLAIMED.exec((await node.waitForLine(CLAIMED, 30_000)).text)![2]);
  const probe = new Probe("127.0.0.1", port);
  scope.defer(() => probe.close());
  await probe.pollUntil("warmup.prop.example.local.", A, (m) => hasAddress(m, "10.20.0.0"), 20_000);

  ctx.log(`propagation: ${propagationPuts} skydns puts`);
  const puts = await putSamples(ctx, client, probe, propagationPuts);
  ctx.log(`propagation: ${propagationClaims} claims`);
  const claims = await claimSamples(
    ctx,
    scope,
    etcd.endpoint,
    client,
    probe,
    nodeId,
    propagationClaims,
  );

  const pair = (values: number[]) =>
    `${ms(percentile(values, 50))} / ${ms(percentile(values, 99))}`;
  const row = (label: string, total: number[], write: number[]) => {
    const p99 = percentile(total, 99);
    // The node's own share: from the write call's return to the answer (0 if it answered first).
    const after = total.map((t, i) => Math.max(0, t - write[i]));
    return [
      label,
      String(total.length),
      ms(percentile(total, 50)),
      ms(p99) + (p99 < TARGET_P99_MS ? "" : ` (over ${TARGET_P99_MS} ms)`),
      ms(Math.max(...total)),
      pair(write),
      pair(after),
    ];
  };
  return [{
    title: "3. Propagation (write in etcd -> the name answers on a running node)",
    header: [
      "event",
      "samples",
      "p50",
      "p99",
      "max",
      "write call p50 / p99",
      "answer after the write returned p50 / p99",
    ],
    rows: [
      row("skydns put -> A answer", puts.total, puts.write),
      row("claim by another node -> A answer", claims.total, claims.claimCall),
    ],
    notes: [
      `Target: p99 < ${TARGET_P99_MS} ms on loopback. Time from just before the write is sent (an ` +
      `etcd3 put from this process, or \`Claimer.claim()\` of a new claimer) until the node ` +
      `(a separate process, idetcd + etcd plugins) answers the name with the new address; the ` +
      `node is polled with back-to-back UDP queries. "write call": until the put (or claim()) ` +
      `returned, which is etcd's part (a claim is several requests: lease, queue, claim ` +
      `transaction); "after the write returned": the rest, which is the node's part (watch ` +
      `delivery, applying the event, answering).`,
    ],
  }];
}
