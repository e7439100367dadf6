import assert from "node:assert/strict";
import tls from "node:tls";
import * as cockatiel from "cockatiel";
import {
  cleanEtcdError,
  clientOptions,
  CONNECT_TIMEOUT_MS,
  createClient,
  describeEndpoints,
  EndpointHealth,
  endpointHealth,
  KEEPALIVE_TIME_MS,
  parseEndpoint,
} from "./client.ts";
import { formatDiagnosis, needsProbe } from "./diagnose.ts";
import { createLogger } from "../log.ts";
import { waitFor } from "../../tests/helpers/wait.ts";

Deno.test("parseEndpoint: URLs and bare host:port as CoreDNS accepts them", () => {
  assert.deepEqual(parseEndpoint("http://localhost:2379"), {
    address: "localhost:2379",
    secure: false,
  });
  assert.deepEqual(parseEndpoint("https://10.0.0.1:2379/"), {
    address: "10.0.0.1:2379",
    secure: true,
  });
  assert.deepEqual(parseEndpoint("localhost:300"), { address: "localhost:300", secure: false });
  assert.deepEqual(parseEndpoint("etcd.local"), { address: "etcd.local:2379", secure: false });
  assert.deepEqual(parseEndpoint("HTTP://[::1]:2379"), { address: "[::1]:2379", secure: false });
  assert.deepEqual(parseEndpoint("[fe80::1]"), { address: "[fe80::1]:2379", secure: false });
  assert.deepEqual(parseEndpoint("::1"), { address: "[::1]:2379", secure: false });
  assert.throws(() => parseEndpoint("unix:///run/etcd.sock"), /unsupported etcd endpoint/);
  assert.throws(() => parseEndpoint("http://"), /no host/);
  assert.throws(() => parseEndpoint("host:port"), /bad port/);
});

Deno.test("describeEndpoints: as configured", () => {
  assert.equal(
    describeEndpoints({ endpoints: ["http://a:2379", "b:2379"] }),
    "http://a:2379, b:2379",
  );
});

Deno.test("clientOptions: credentials only with both username and password", () => {
  assert.equal(clientOptions({ endpoints: ["a:1"], username: "u" }, ".").auth, undefined);
  const options = clientOptions({ endpoints: ["a:1"], username: "u", password: "p" }, ".");
  assert.equal(options.auth?.username, "u");
  assert.equal(options.auth?.password, "p");
  assert.equal(options.credentials, undefined);
  assert.deepEqual(options.hosts, ["a:1"]);
});

Deno.test("clientOptions: TLS from https, from `tls` alone, and files relative to the Corefile", () => {
  assert.ok(clientOptions({ endpoints: ["https://a:1"] }, ".").credentials);
  const systemRoots = clientOptions({ endpoints: ["a:1"], tls: {} }, ".").credentials;
  assert.ok(systemRoots);
  assert.equal(systemRoots.rootCertificate, null);
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(`${dir}/ca.pem`, "CA");
    Deno.writeTextFileSync(`${dir}/c.pem`, "CERT");
    Deno.writeTextFileSync(`${dir}/k.pem`, "KEY");
    const files = clientOptions({
      endpoints: ["http://a:1"],
      tls: { cert: "c.pem", key: "k.pem", ca: `${dir}/ca.pem` },
    }, dir).credentials!;
    assert.equal(files.rootCertificate.toString(), "CA");
    assert.equal(files.certChain?.toString(), "CERT");
    assert.equal(files.privateKey?.toString(), "KEY");
    assert.throws(
      () => clientOptions({ endpoints: ["a:1"], tls: { ca: "missing.pem" } }, dir),
      /cannot read CA file .*missing\.pem/,
    );
    assert.throws(
      () => clientOptions({ endpoints: ["a:1"], tls: { cert: "c.pem" } }, dir),
      /needs both a cert and a key/,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("clientOptions: unary calls get a deadline, streams do not", () => {
  const options = clientOptions({ endpoints: ["a:1"] }, ".");
  const factory = options.defaultCallOptions as (c: { isStream: boolean }) => {
    deadline?: number;
  };
  const deadline = factory({ isStream: false }).deadline!;
  assert.ok(deadline > Date.now() && deadline <= Date.now() + 5_000);
  assert.equal(factory({ isStream: true }).deadline, undefined);
});

Deno.test("createClient: lazy, needs no reachable etcd", () => {
  const client = createClient({ endpoints: ["localhost:300"] }, ".");
  client.close();
  assert.throws(() => createClient({ endpoints: [] }, "."), /no endpoint/);
});

Deno.test("cleanEtcdError: one line, no empty gRPC suffixes", () => {
  const bare = "14 UNAVAILABLE: No connection established. Last error: null. Resolution note: ";
  assert.equal(cleanEtcdError(new Error(bare)), "14 UNAVAILABLE: No connection established");
  assert.equal(
    cleanEtcdError(
      new Error(
        "14 UNAVAILABLE: No connection established. Last error: Failed to connect (2026-12-01T17:25:35.005Z). Resolution note: ",
      ),
    ),
    "14 UNAVAILABLE: No connection established. Last error: Failed to connect",
  );
  assert.equal(
    cleanEtcdError(
      new Error(
        "14 UNAVAILABLE: No connection established. Last error: Error: unable to verify the first certificate. Resolution note: ",
      ),
    ),
    "14 UNAVAILABLE: No connection established. Last error: unable to verify the first certificate",
  );
  assert.equal(
    cleanEtcdError(
      new Error("4 DEADLINE_EXCEEDED: Deadline exceeded after 0.000s,waiting for name resolution"),
    ),
    "4 DEADLINE_EXCEEDED: Deadline exceeded after 0.000s, waiting for name resolution",
  );
  assert.equal(cleanEtcdError(new Error("first\nstack")), "first");
  assert.equal(
    cleanEtcdError("14 UNAVAILABLE: etcd at http://a:1: x; check y"),
    "etcd at http://a:1: x; check y",
  );
  // etcd's own answers stay as they are.
  const auth = "3 INVALID_ARGUMENT: etcdserver: authentication failed, invalid user ID or password";
  assert.equal(cleanEtcdError(new Error(auth)), auth);
  assert.ok(needsProbe(new Error(bare)));
  assert.ok(!needsProbe(new Error(auth)));
  assert.ok(!needsProbe(new Error("14 UNAVAILABLE: etcdserver: no leader")));
  assert.equal(
    formatDiagnosis({ endpoint: "https://h:1", ok: false, cause: "c", check: "d" }),
    "etcd at https://h:1: c; check d",
  );
});

Deno.test("clientOptions: pings etcd accepts, short reconnect backoff, a connection per channel", () => {
  const grpc = clientOptions({ endpoints: ["a:1"] }, ".").grpcOptions!;
  // etcd 3.4 refuses pings closer than --grpc-keepalive-min-time (5 s by default).
  assert.ok(KEEPALIVE_TIME_MS > 5_000);
  assert.equal(grpc["grpc.keepalive_time_ms"], KEEPALIVE_TIME_MS);
  assert.equal(grpc["grpc.keepalive_permit_without_calls"], undefined, "no pings without calls");
  assert.ok((grpc["grpc.max_reconnect_backoff_ms"] as number) <= 1_000);
  assert.equal(grpc["grpc.use_local_subchannel_pool"], 1);
  assert.ok(CONNECT_TIMEOUT_MS < 1_000);
});

/** An error as etcd3 raises it when a host does not answer. */
function unavailable(): Error {
  return Object.assign(new Error("14 UNAVAILABLE: Connection dropped"), { code: 14 });
}

Deno.test("EndpointHealth: a failing member is avoided, logged once down and once back", async () => {
  const lines: string[] = [];
  const log = createLogger("", (_level, line) => lines.push(line));
  let answers = false;
  let checks = 0;
  const health = new EndpointHealth(
    [{ endpoint: "http://a:1", address: "a:1" }, { endpoint: "http://b:1", address: "b:1" }],
    {
      log,
      probeIntervalMs: 10,
      probe: (address) => {
        if (address === "a:1") checks++;
        return Promise.resolve(address !== "a:1" || answers);
      },
    },
  );
  try {
    const a = health.policy("a:1");
    const b = health.policy("b:1");
    await assert.rejects(a.execute(() => Promise.reject(unavailable())), /Connection dropped/);
    assert.equal(health.status()[0].state, "suspect");
    // While b answers, calls to a are refused without running.
    let ran = false;
    await assert.rejects(
      a.execute(() => (ran = true)),
      (err) => cockatiel.isBrokenCircuitError(err),
    );
    assert.equal(ran, false);
    assert.equal(await b.execute(() => "ok"), "ok");
    await waitFor(() => health.status()[0].state === "down", { what: "a down" });
    // Many more failures and checks: still one line.
    for (let i = 0; i < 5; i++) health.report("a:1", unavailable());
    const seen = checks;
    await waitFor(() => checks >= seen + 3, { what: "more checks" });
    assert.deepEqual(lines.filter((l) => /is not answering/.test(l)), [
      "[WARNING] etcd member http://a:1 is not answering (14 UNAVAILABLE: Connection dropped); calls go to the other endpoints until it is back",
    ]);
    answers = true;
    await waitFor(() => health.status()[0].state === "up", { what: "a up" });
    assert.equal(lines.length, 2);
    assert.match(
      lines[1],
      /^\[INFO\] etcd member http:\/\/a:1 answers again \(not answering for \d+\.\ds\)$/,
    );
    // Answers from etcd (refusals) and the client's own cancellations say nothing bad about a host.
    health.report("a:1", new Error("7 PERMISSION_DENIED: etcdserver: permission denied"));
    health.report("a:1", new Error("1 CANCELLED: Cancelled on client"));
    assert.equal(health.status()[0].state, "up");
  } finally {
    health.close();
  }
});

Deno.test("EndpointHealth: with no member up, calls go everywhere; one endpoint logs nothing", async () => {
  const lines: string[] = [];
  const log = createLogger("", (_level, line) => lines.push(line));
  const two = new EndpointHealth(
    [{ endpoint: "a", address: "a:1" }, { endpoint: "b", address: "b:1" }],
    { log, probe: () => Promise.resolve(false), probeIntervalMs: 10 },
  );
  const one = new EndpointHealth([{ endpoint: "c", address: "c:1" }], {
    log,
    probe: () => Promise.resolve(false),
    probeIntervalMs: 10,
  });
  try {
    two.report("a:1", unavailable());
    two.report("b:1", unavailable());
    await waitFor(() => two.status().every((s) => s.state === "down"), { what: "both down" });
    assert.equal(await two.policy("a:1").execute(() => "through"), "through");
    one.report("c:1", unavailable());
    await waitFor(() => one.status()[0].state === "down", { what: "c down" });
    assert.ok(lines.every((l) => !l.includes("member c ")), lines.join("\n"));
  } finally {
    two.close();
    one.close();
  }
});

Deno.test("createClient: has a health tracker, stopped by close()", () => {
  const client = createClient({ endpoints: ["127.0.0.1:1", "127.0.0.1:2"] }, ".");
  const health = endpointHealth(client)!;
  assert.deepEqual(health.status().map((s) => [s.endpoint, s.state]), [
    ["127.0.0.1:1", "up"],
    ["127.0.0.1:2", "up"],
  ]);
  client.close();
});

Deno.test("createClient: node:tls gets the IP server-name patch once, however many TLS clients", () => {
  const first = createClient({ endpoints: ["https://127.0.0.1:1"] }, ".");
  const patched = tls.connect;
  const second = createClient({ endpoints: ["https://127.0.0.1:2"] }, ".");
  try {
    // A second patch would wrap the first (each TLS connect walking both).
    assert.equal(tls.connect, patched);
  } finally {
    second.close();
    first.close();
  }
});
