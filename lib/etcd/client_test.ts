import assert from "node:assert/strict";
import { clientOptions, createClient, describeEndpoints, parseEndpoint } from "./client.ts";

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
