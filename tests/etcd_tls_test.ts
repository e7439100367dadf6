/**
 * TLS and auth mistakes against a real etcd: each gives its own one-line
 * message that names the endpoint, the cause and what to check, from the
 * client, from describeEtcdError, and in the real program's log. Wrong
 * passwords and missing permissions keep etcd's own clear words.
 *
 * The PKI is made with openssl (two CAs); etcd runs with --cert-file,
 * --key-file, --trusted-ca-file and --client-cert-auth on an https:// port.
 */

import assert from "node:assert/strict";
import { createClient, describeEtcdError } from "../lib/etcd/client.ts";
import type { EtcdOptions } from "../lib/etcd/options.ts";
import { createTestPki, type TestPki } from "./helpers/certs.ts";
import { startEtcdCluster, type TestEtcdCluster } from "./helpers/etcd_cluster.ts";
import { startServer, writeCorefile } from "./helpers/process.ts";
import { freePort } from "./helpers/wait.ts";

/** One mistake: the options a user would write and what its message must say. */
interface Mistake {
  name: string;
  options: EtcdOptions;
  /** The Corefile's `endpoint` and `tls` lines for the same mistake. */
  corefile: string[];
  /** The cause, as the message must name it. */
  cause: RegExp;
  /** What to check, as the message must name it. */
  check: RegExp;
}

function mistakes(pki: TestPki, tlsEtcd: TestEtcdCluster, plainEtcd: TestEtcdCluster): Mistake[] {
  const tlsPort = tlsEtcd.members[0].clientPort;
  const secure = `https://127.0.0.1:${tlsPort}`;
  return [
    {
      name: "unknown CA (etcd's certificate is not signed by the configured CA)",
      options: {
        endpoints: [secure],
        tls: { cert: pki.client.cert, key: pki.client.key, ca: pki.otherCa.cert },
      },
      corefile: [
        `endpoint ${secure}`,
        `tls ${pki.client.cert} ${pki.client.key} ${pki.otherCa.cert}`,
      ],
      cause: /TLS handshake failed: certificate signed by unknown authority/,
      check: new RegExp(`check the CA file given to tls \\(${pki.otherCa.cert}\\)`),
    },
    {
      name: "client certificate from another CA",
      options: {
        endpoints: [secure],
        tls: { cert: pki.otherClient.cert, key: pki.otherClient.key, ca: pki.ca.cert },
      },
      corefile: [
        `endpoint ${secure}`,
        `tls ${pki.otherClient.cert} ${pki.otherClient.key} ${pki.ca.cert}`,
      ],
      cause: new RegExp(`etcd rejected the client certificate \\(${pki.otherClient.cert}\\)`),
      check:
        /check that the client certificate is signed by a CA etcd trusts \(--trusted-ca-file\)/,
    },
    {
      name: "no client certificate while etcd requires one",
      options: { endpoints: [secure], tls: { ca: pki.ca.cert } },
      corefile: [`endpoint ${secure}`, `tls ${pki.ca.cert}`],
      cause: /etcd requires a client certificate \(--client-cert-auth\) and none was sent/,
      check: /check that tls is given a client certificate and key/,
    },
    {
      name: "http:// endpoint against a TLS-only port",
      options: { endpoints: [`http://127.0.0.1:${tlsPort}`] },
      corefile: [`endpoint http://127.0.0.1:${tlsPort}`],
      cause: new RegExp(
        `etcd serves TLS on 127\\.0\\.0\\.1:${tlsPort}, but the endpoint is plain http://`,
      ),
      check: /check the endpoint's scheme: use https:\/\//,
    },
    {
      name: "https:// endpoint against a plain port",
      options: { endpoints: [`https://${plainEtcd.endpoints[0].slice("http://".length)}`] },
      corefile: [`endpoint https://${plainEtcd.endpoints[0].slice("http://".length)}`],
      cause: /etcd serves plain HTTP on 127\.0\.0\.1:\d+, not TLS/,
      check: /check the endpoint's scheme: use http:\/\//,
    },
  ];
}

/** What gRPC says on its own for all of these: no cause. */
const BARE_GRPC = "14 UNAVAILABLE: No connection established. Last error: null. Resolution note: ";

/** Asserts one line names the endpoint, the cause and what to check, with no dangling gRPC suffix. */
function assertExplains(line: string, mistake: Mistake): void {
  const endpoint = mistake.options.endpoints[0];
  assert.ok(
    line.startsWith(`etcd at ${endpoint}: `),
    `${mistake.name}: names the endpoint: ${line}`,
  );
  assert.match(line, mistake.cause, `${mistake.name}: names the cause`);
  assert.match(line, mistake.check, `${mistake.name}: says what to check`);
  assert.ok(
    !/Resolution note|Last error: null|\n/.test(line),
    `${mistake.name}: one clean line: ${line}`,
  );
}

async function withTlsSetup(
  fn: (pki: TestPki, tlsEtcd: TestEtcdCluster, plainEtcd: TestEtcdCluster) => Promise<void>,
): Promise<void> {
  await using pki = await createTestPki();
  await using tlsEtcd = await startEtcdCluster({
    size: 1,
    tls: {
      cert: pki.server.cert,
      key: pki.server.key,
      ca: pki.ca.cert,
      clientCertAuth: true,
      ctlCert: pki.client.cert,
      ctlKey: pki.client.key,
    },
  });
  await using plainEtcd = await startEtcdCluster({ size: 1 });
  await fn(pki, tlsEtcd, plainEtcd);
}

Deno.test("TLS: the right setup works (the baseline for the mistakes below)", async () => {
  await withTlsSetup(async (pki, tlsEtcd) => {
    const client = createClient({
      endpoints: [tlsEtcd.endpoints[0]],
      tls: { cert: pki.client.cert, key: pki.client.key, ca: pki.ca.cert },
    }, "/");
    try {
      await client.put("tls-ok").value("yes");
      assert.equal(await client.get("tls-ok").string(), "yes");
    } finally {
      client.close();
    }
  });
});

Deno.test("TLS: each mistake gives its own message naming the cause, from the client and describeEtcdError", async () => {
  await withTlsSetup(async (pki, tlsEtcd, plainEtcd) => {
    const lines: string[] = [];
    for (const mistake of mistakes(pki, tlsEtcd, plainEtcd)) {
      // The client's own error already says it: every user of createClient gets it.
      const client = createClient(mistake.options, "/");
      let error: unknown;
      try {
        await client.get("anything").string();
      } catch (err) {
        error = err;
      } finally {
        client.close();
      }
      assert.ok(error instanceof Error, `${mistake.name}: the call fails`);
      const described = await describeEtcdError(error, mistake.options, "/");
      assertExplains(described, mistake);
      // From gRPC's bare message alone, describeEtcdError probes the endpoint itself.
      const probed = await describeEtcdError(new Error(BARE_GRPC), mistake.options, "/");
      assertExplains(probed, mistake);
      lines.push(probed);
    }
    assert.equal(new Set(lines).size, lines.length, `distinct messages:\n${lines.join("\n")}`);
  });
});

Deno.test("TLS: the real program logs each mistake's cause (etcd plugin)", async () => {
  await withTlsSetup(async (pki, tlsEtcd, plainEtcd) => {
    const all = mistakes(pki, tlsEtcd, plainEtcd);
    const port = await freePort();
    await Promise.all(all.map(async (mistake) => {
      const conf = await writeCorefile([
        `.:${port} {`,
        `    bind 127.0.0.1`,
        `    etcd example.test. {`,
        ...mistake.corefile.map((line) => `        ${line}`),
        `    }`,
        `}`,
        ``,
      ].join("\n"));
      await using node = await startServer(conf, { readyText: null });
      await node.waitForOutput(/cannot reach etcd at .*retrying/, 30_000);
      const line = node.output().split("\n").find((l) => /cannot reach etcd at/.test(l))!;
      const reason = line.slice(line.indexOf(": etcd at ") + 2).replace(/; retrying.*$/, "");
      assertExplains(reason, mistake);
    }));
  });
});

Deno.test("auth: a wrong password and a missing permission stay clear", async () => {
  await using etcd = await startEtcdCluster({ size: 1 });
  await etcd.ctl(["user", "add", "root", "--new-user-password=rootpw"]);
  await etcd.ctl(["user", "grant-role", "root", "root"]);
  await etcd.ctl(["role", "add", "reader"]);
  await etcd.ctl(["role", "grant-permission", "reader", "read", "/allowed/", "--prefix=true"]);
  await etcd.ctl(["user", "add", "reader", "--new-user-password=readerpw"]);
  await etcd.ctl(["user", "grant-role", "reader", "reader"]);
  await etcd.ctl(["auth", "enable"]);

  const wrong: EtcdOptions = { endpoints: [...etcd.endpoints], username: "root", password: "nope" };
  const client = createClient(wrong, "/");
  try {
    const err = await client.get("/x").string().then(() => undefined, (e) => e);
    assert.ok(err instanceof Error, "a wrong password fails");
    const line = await describeEtcdError(err, wrong, "/");
    assert.match(line, /etcdserver: authentication failed, invalid user ID or password/);
    assert.match(line, /check the user name and password given to credentials/);
    assert.ok(line.startsWith(`etcd at ${etcd.endpoints[0]}: `), line);
  } finally {
    client.close();
  }

  const reader: EtcdOptions = {
    endpoints: [...etcd.endpoints],
    username: "reader",
    password: "readerpw",
  };
  const readerClient = createClient(reader, "/");
  try {
    assert.equal(await readerClient.get("/allowed/a").string(), null);
    const err = await readerClient.put("/forbidden").value("x").then(() => undefined, (e) => e);
    assert.ok(err instanceof Error, "a write without permission fails");
    assert.match(err.message, /etcdserver: permission denied/, "the client's error is etcd's own");
    const line = await describeEtcdError(err, reader, "/");
    assert.match(line, /etcdserver: permission denied/);
    assert.match(line, /check that the user's roles grant access/);
  } finally {
    readerClient.close();
  }
});
