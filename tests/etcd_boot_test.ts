/**
 * A server whose `etcd` plugin cannot load etcd at boot still serves DNS:
 * the listeners open at once, the server's other zones answer, the etcd zone
 * answers SERVFAIL (with its SOA) without making each query wait, and the
 * copy keeps loading in the background and answers the moment it arrives,
 * without a restart. Real etcd (started late, on the port the Corefile
 * names), the real program, dig.
 */

import assert from "node:assert/strict";
import { startEtcd } from "./helpers/etcd.ts";
import {
  dig,
  queryTcp,
  type ServerProcess,
  startServer,
  writeCorefile,
} from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";
import { Type } from "../lib/dns/types.ts";

/**
 * `dig` with a single try of `seconds`: a query the server holds longer fails
 * (dig exits non-zero), which is how "answered without waiting" is told apart
 * from "answered after the 5 s first-load wait".
 */
function digOnce(port: number, seconds: number, ...args: string[]): Promise<string> {
  return dig("@127.0.0.1", "-p", String(port), `+time=${seconds}`, "+tries=1", ...args);
}

/** `.:PORT { whoami }` plus an `etcd` block for skydns.local on `etcdEndpoint`. */
function corefile(port: number, etcdEndpoint: string, credentials = ""): string {
  return [
    `.:${port} {`,
    `    whoami`,
    `}`,
    `skydns.local:${port} {`,
    `    etcd {`,
    `        endpoint ${etcdEndpoint}`,
    ...(credentials ? [`        credentials ${credentials}`] : []),
    `    }`,
    `}`,
    ``,
  ].join("\n");
}

/** Checks the server's state while etcd cannot be read: whoami answers, skydns.local SERVFAILs. */
async function assertServesWithoutEtcd(server: ServerProcess, port: number): Promise<void> {
  // The listeners are open once the banner is out: the other zone answers
  // at once (a single one-second try, over UDP and TCP).
  const who = await digOnce(port, 1, "example.org", "A");
  assert.match(who, /status: NOERROR/);
  assert.match(who, /^example\.org\.\s+0\s+IN\s+A\s+127\.0\.0\.1$/m);
  const tcp = await queryTcp("127.0.0.1", port, "example.org.", Type.A);
  assert.equal(tcp.additional[0]?.data, "127.0.0.1");

  // Once a load attempt has failed, every query for the etcd zone answers
  // SERVFAIL with the zone's SOA, each well within the 5 s a query may wait
  // for a first load still in flight.
  await server.waitForOutput(/cannot (reach etcd|read \S+ from etcd) at /, 10_000);
  for (let i = 0; i < 5; i++) {
    const out = await digOnce(port, 2, `x${i}.skydns.local`, "A");
    assert.match(out, /status: SERVFAIL/);
    assert.match(out, /flags: qr aa rd;/);
    assert.match(
      out,
      /^skydns\.local\.\s+30\s+IN\s+SOA\s+ns\.dns\.skydns\.local\. hostmaster\.skydns\.local\. /m,
    );
  }
  // The other zone is still served as usual.
  assert.match(await digOnce(port, 1, "example.org", "A"), /status: NOERROR/);
}

Deno.test("etcd boot: with etcd down the other zone answers, the etcd zone SERVFAILs, then answers once etcd starts", async () => {
  const etcdPort = await freePort();
  const port = await freePort();
  const conf = await writeCorefile(corefile(port, `http://127.0.0.1:${etcdPort}`));
  // Before: the startup hook awaited the first load, so no banner and no
  // listener ever came while etcd was down.
  await using server = await startServer(conf);
  await assertServesWithoutEtcd(server, port);

  // etcd appears on the port the Corefile names; the same process picks it up.
  await using etcd = await startEtcd({ clientPort: etcdPort });
  await etcd.ctl("put", "/skydns/local/skydns/x", '{"host":"10.9.0.1"}');
  await waitFor(async () => {
    const out = await digOnce(port, 1, "+short", "x.skydns.local", "A");
    return out.trim() === "10.9.0.1";
  }, { timeoutMs: 20_000, what: "the record once etcd is up" });
  const out = await digOnce(port, 1, "nx.skydns.local", "A");
  assert.match(out, /status: NXDOMAIN/);
  assert.match(server.output(), /connected to etcd at /);
  assert.doesNotMatch(server.output(), /SIGTERM|exited/);
});

Deno.test("etcd boot: with credentials etcd rejects the etcd zone SERVFAILs; once etcd accepts them, answers arrive", async () => {
  await using etcd = await startEtcd();
  await etcd.ctl("user", "add", "root:root-password");
  await etcd.ctl("auth", "enable");
  const asRoot = (...args: string[]) => etcd.ctl("--user=root:root-password", ...args);
  await asRoot("put", "/skydns/local/skydns/x", '{"host":"10.9.0.2"}');
  const port = await freePort();
  // The user does not exist yet: etcd refuses the password.
  const conf = await writeCorefile(corefile(port, etcd.endpoint, "dns dns-password"));
  await using server = await startServer(conf);
  await assertServesWithoutEtcd(server, port);
  assert.match(server.output(), /authentication failed|invalid user ID or password/i);

  // The operator adds the user on the etcd side: the retrying copy loads.
  await asRoot("user", "add", "dns:dns-password");
  await asRoot("user", "grant-role", "dns", "root");
  await waitFor(async () => {
    const out = await digOnce(port, 1, "+short", "x.skydns.local", "A");
    return out.trim() === "10.9.0.2";
  }, { timeoutMs: 20_000, what: "the record once etcd accepts the credentials" });
});
