import assert from "node:assert/strict";
import { createLogger } from "../log.ts";
import { Resources } from "../server/resources.ts";
import { acquireClient, acquireMirror, canonicalJson, clientKey } from "./pool.ts";

const silent = createLogger("test", () => {});

Deno.test("canonicalJson: key order and undefined members do not matter", () => {
  assert.equal(
    canonicalJson({ b: 1, a: [2, { d: undefined, c: "x" }] }),
    '{"a":[2,{"c":"x"}],"b":1}',
  );
  assert.equal(canonicalJson({ a: 1, b: 2 }), canonicalJson({ b: 2, a: 1 }));
});

Deno.test("clientKey: TLS paths are resolved against the Corefile folder", () => {
  const relative = clientKey({ endpoints: ["a:1"], tls: { ca: "ca.pem" } }, "/etc/coredns");
  const absolute = clientKey({ endpoints: ["a:1"], tls: { ca: "/etc/coredns/ca.pem" } }, "/");
  assert.equal(relative, absolute);
  assert.notEqual(clientKey({ endpoints: ["a:1"] }, "/"), clientKey({ endpoints: ["a:2"] }, "/"));
  assert.notEqual(
    clientKey({ endpoints: ["a:1"], username: "u", password: "p" }, "/"),
    clientKey({ endpoints: ["a:1"], username: "u", password: "q" }, "/"),
  );
});

Deno.test("acquireClient/acquireMirror: shared per options and prefix, closed with the last scope", async () => {
  const resources = new Resources();
  const scope = resources.scope();
  const options = { endpoints: ["127.0.0.1:1"] };
  const client = acquireClient(resources, options, "/");
  assert.equal(acquireClient(resources, { endpoints: ["127.0.0.1:1"] }, "/"), client);
  const mirror = acquireMirror(resources, options, "/skydns/", "/", silent);
  assert.equal(acquireMirror(resources, options, "/skydns/", "/", silent), mirror);
  assert.notEqual(acquireMirror(resources, options, "/other/", "/", silent), mirror);
  assert.notEqual(acquireClient(resources, { endpoints: ["127.0.0.1:2"] }, "/"), client);
  assert.equal(resources.size, 4);
  await scope.release();
  assert.equal(resources.size, 0);
});
