import assert from "node:assert/strict";
import { Dispenser } from "../../corefile/dispenser.ts";
import { parseCorefile } from "../../corefile/parser.ts";
import { CorefileError, type Directive } from "../../corefile/types.ts";
import { Rcode, Type } from "../../dns/types.ts";
import { createLogger } from "../../log.ts";
import type { Request, ResourcePool, SetupContext, StartupHook } from "../../server/plugin.ts";
import { configView, NO_SERVER } from "../health/testing.ts";
import { etcdPlugin } from "./mod.ts";
import { parseEtcdConnectionOption } from "./options.ts";
import { type EtcdConfig, mirrorPrefix, parseEtcdConfig } from "./setup.ts";
import { MemorySource } from "./testing.ts";

/** The `etcd` directives of `. { <body> }`, as the server hands them to setup. */
function etcdDirectives(body: string): Directive[] {
  const blocks = parseCorefile(`. {\n${body}\n}\n`, "Corefile", { isDirective: () => true });
  return blocks[0].directives.filter((d) => d.name.text === "etcd");
}

function parse(body: string, blockZones = ["."], configDir = "/nonexistent"): EtcdConfig {
  return parseEtcdConfig(etcdDirectives(body)[0], blockZones, configDir);
}

function parseError(body: string, configDir = "/nonexistent"): CorefileError {
  try {
    parse(body, ["."], configDir);
  } catch (err) {
    assert.ok(err instanceof CorefileError, String(err));
    assert.equal(err.plugin, "etcd");
    return err;
  }
  assert.fail(`expected an error for ${body}`);
}

Deno.test("TestSetupEtcd: the CoreDNS table", () => {
  const ok: [string, Partial<EtcdConfig> & { username?: string; password?: string }][] = [
    ["etcd", { pathPrefix: "skydns", etcd: { endpoints: ["http://localhost:2379"] } }],
    [
      "etcd {\n endpoint http://localhost:2379 http://localhost:3379 http://localhost:4379\n\n}",
      {
        pathPrefix: "skydns",
        etcd: {
          endpoints: ["http://localhost:2379", "http://localhost:3379", "http://localhost:4379"],
        },
      },
    ],
    [
      "etcd skydns.local {\n endpoint localhost:300\n}",
      { pathPrefix: "skydns", zones: ["skydns.local."], etcd: { endpoints: ["localhost:300"] } },
    ],
    [
      "etcd {\n endpoint http://localhost:2379\n credentials username password\n}",
      {
        etcd: { endpoints: ["http://localhost:2379"], username: "username", password: "password" },
      },
    ],
    ["etcd {\n endpoint http://localhost:2379\n min-lease-ttl 60\n}", { minLeaseTTL: 60 }],
    ["etcd {\n endpoint http://localhost:2379\n max-lease-ttl 1h\n}", { maxLeaseTTL: 3600 }],
    [
      "etcd {\n endpoint http://localhost:2379\n min-lease-ttl 120\n max-lease-ttl 7200\n}",
      { minLeaseTTL: 120, maxLeaseTTL: 7200 },
    ],
  ];
  for (const [body, want] of ok) {
    const got = parse(body);
    for (const [field, value] of Object.entries(want)) {
      assert.deepEqual(got[field as keyof EtcdConfig], value, `${body}: ${field}`);
    }
  }
  const bad: [string, string][] = [
    ["etcd {\n endpoints localhost:300\n}", "unknown property 'endpoints'"],
    [
      "etcd {\n endpoint http://localhost:2379\n credentials username\n}",
      "credentials requires 2 arguments, username and password",
    ],
    [
      "etcd {\n endpoint http://localhost:2379\n credentials\n}",
      "Wrong argument count or unexpected line ending after 'credentials'",
    ],
  ];
  for (const [body, want] of bad) assert.equal(parseError(body).message, want, body);
});

Deno.test("setup: defaults", () => {
  assert.deepEqual(parse("etcd", ["example.org."]), {
    zones: ["example.org."],
    pathPrefix: "skydns",
    fallthrough: [],
    minLeaseTTL: 0,
    maxLeaseTTL: 0,
    etcd: { endpoints: ["http://localhost:2379"] },
  });
});

Deno.test("setup: zones are normalised; CIDRs become reverse zones; bad ones dropped", () => {
  assert.deepEqual(
    parse("etcd dns://Example.ORG:53 10.0.0.0/24 skydns.local").zones,
    ["example.org.", "0.0.10.in-addr.arpa.", "skydns.local."],
  );
  assert.deepEqual(parse("etcd", ["a.org.", "b.org."]).zones, ["a.org.", "b.org."]);
});

Deno.test("setup: fallthrough, path, legacy options", () => {
  assert.deepEqual(parse("etcd {\n fallthrough\n}").fallthrough, ["."]);
  assert.deepEqual(parse("etcd {\n fallthrough A.org b.org.\n}").fallthrough, ["a.org.", "b.org."]);
  assert.equal(parse("etcd {\n path /skydns/ka2\n}").pathPrefix, "/skydns/ka2");
  const legacy = parse("etcd {\n stubzones\n debug\n upstream 8.8.8.8 1.1.1.1\n}");
  assert.equal(legacy.pathPrefix, "skydns");
});

Deno.test("setup: errors read as CoreDNS's", () => {
  const cases: [string, string][] = [
    ["etcd {\n path\n}", "Wrong argument count or unexpected line ending after 'path'"],
    // The extra token is read as the next property.
    ["etcd {\n path /a b\n}", "unknown property 'b'"],
    ["etcd {\n stubzones foo\n}", "unknown property 'foo'"],
    ["etcd {\n debug on\n}", "unknown property 'on'"],
    ["etcd {\n endpoint\n}", "Wrong argument count or unexpected line ending after 'endpoint'"],
    ["etcd {\n credentials a b c\n}", "credentials requires 2 arguments, username and password"],
    ["etcd {\n tls a b c d\n}", "maximum of three arguments allowed for TLS config, found 4"],
    [
      "etcd {\n min-lease-ttl\n}",
      "Wrong argument count or unexpected line ending after 'min-lease-ttl'",
    ],
    [
      "etcd {\n min-lease-ttl abc\n}",
      "invalid min-lease-ttl value: invalid TTL format, use format like '30', '30s', '5m', '1h', or '2h30m'",
    ],
    [
      "etcd {\n max-lease-ttl -30s\n}",
      "invalid max-lease-ttl value: TTL must be non-negative",
    ],
  ];
  for (const [body, want] of cases) assert.equal(parseError(body).message, want, body);
  const err = parseError("etcd {\n endpoint http://localhost:2379\n endpoints localhost:300\n}");
  assert.equal(
    err.describe(),
    "plugin/etcd: Corefile:4 - Error during parsing: unknown property 'endpoints'",
  );
});

Deno.test("setup: a path property followed by a known one runs both (Caddy's dispenser)", () => {
  const config = parse("etcd {\n path /a endpoint http://x:1 http://y:2\n}");
  assert.equal(config.pathPrefix, "/a");
  assert.deepEqual(config.etcd.endpoints, ["http://x:1", "http://y:2"]);
});

Deno.test("setup: only the first etcd line of a block counts", () => {
  const directives = etcdDirectives("etcd a.org {\n path first\n}\netcd b.org {\n bogus\n}");
  assert.equal(directives.length, 2);
  const config = parseEtcdConfig(directives[0], ["."], "/");
  assert.deepEqual(config.zones, ["a.org."]);
  assert.equal(config.pathPrefix, "first");
});

Deno.test("setup: credentials need both parts non-empty; the last line wins", () => {
  const both = parse('etcd {\n credentials "" secret\n}');
  assert.equal(both.etcd.username, undefined);
  assert.equal(both.etcd.password, undefined);
  const last = parse("etcd {\n credentials a b\n credentials c d\n}");
  assert.equal(last.etcd.username, "c");
  assert.equal(last.etcd.password, "d");
});

Deno.test("setup: tls arguments and file checks", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    const key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
    await Deno.writeTextFile(`${dir}/cert.pem`, cert);
    await Deno.writeTextFile(`${dir}/key.pem`, key);
    await Deno.writeTextFile(`${dir}/ca.pem`, cert);
    await Deno.writeTextFile(`${dir}/junk.pem`, "junk");
    assert.deepEqual(parse("etcd {\n tls\n}", ["."], dir).etcd.tls, {});
    assert.deepEqual(parse("etcd {\n tls ca.pem\n}", ["."], dir).etcd.tls, { ca: "ca.pem" });
    assert.deepEqual(parse("etcd {\n tls cert.pem key.pem\n}", ["."], dir).etcd.tls, {
      cert: "cert.pem",
      key: "key.pem",
    });
    assert.deepEqual(parse(`etcd {\n tls cert.pem key.pem ${dir}/ca.pem\n}`, ["."], dir).etcd.tls, {
      cert: "cert.pem",
      key: "key.pem",
      ca: `${dir}/ca.pem`,
    });
    const errors: [string, string][] = [
      ["tls missing.pem", "error reading missing.pem: open missing.pem: no such file or directory"],
      ["tls junk.pem", "could not read root certs from junk.pem"],
      ["tls nope.pem key.pem", "could not load TLS cert: open nope.pem: no such file or directory"],
      [
        "tls cert.pem nope.pem",
        "could not load TLS cert: open nope.pem: no such file or directory",
      ],
      [
        "tls junk.pem key.pem",
        "could not load TLS cert: tls: failed to find any PEM data in certificate input",
      ],
      [
        "tls cert.pem junk.pem",
        "could not load TLS cert: tls: failed to find any PEM data in key input",
      ],
      [
        "tls key.pem key.pem",
        'could not load TLS cert: tls: failed to find "CERTIFICATE" PEM block in certificate input after skipping PEM blocks of the following types: [PRIVATE KEY]',
      ],
      ["tls cert.pem key.pem junk.pem", "could not read root certs from junk.pem"],
    ];
    for (const [line, want] of errors) {
      assert.equal(parseError(`etcd {\n ${line}\n}`, dir).message, want, line);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseEtcdConnectionOption: owns endpoint/credentials/tls only", () => {
  const [directive] = etcdDirectives("etcd {\n limit 5\n endpoint a:1\n}");
  const options = { endpoints: ["x"] };
  assert.equal(
    parseEtcdConnectionOption(new Dispenser("idetcd", directive.block![0]), options),
    false,
  );
  assert.equal(
    parseEtcdConnectionOption(new Dispenser("idetcd", directive.block![1]), options),
    true,
  );
  assert.deepEqual(options.endpoints, ["a:1"]);
  const [bad] = etcdDirectives("etcd {\n endpoint\n}");
  try {
    parseEtcdConnectionOption(new Dispenser("idetcd", bad.block![0]), options);
    assert.fail("expected an error");
  } catch (err) {
    assert.ok(err instanceof CorefileError);
    assert.equal(err.plugin, "idetcd");
    assert.equal(err.line, 3);
  }
});

Deno.test("mirrorPrefix: the narrowest prefix holding every key the zones read", () => {
  assert.equal(mirrorPrefix(["skydns.test."], "skydns"), "/skydns/test/skydns");
  assert.equal(mirrorPrefix(["skydns.test.", "in-addr.arpa."], "skydns"), "/skydns/");
  assert.equal(mirrorPrefix(["b.example.", "a.example."], "/skydns/"), "/skydns/example/");
  assert.equal(mirrorPrefix(["example.", "sub.example."], "skydns"), "/skydns/example");
  assert.equal(mirrorPrefix(["."], "skydns"), "/skydns");
  assert.equal(mirrorPrefix(["x.any.test."], "skydns"), "/skydns/test");
  assert.equal(mirrorPrefix(["a.", "b."], ""), "/");
});

Deno.test("etcdPlugin.setup: builds a handler over a pooled mirror and starts it at startup", async () => {
  const source = new MemorySource();
  source.set("a.example.", { host: "10.0.0.1" });
  let started = 0;
  const acquired: string[] = [];
  const resources: ResourcePool = {
    acquire<T extends { close(): Promise<void> | void }>(key: string, _create: () => T): T {
      acquired.push(key);
      const mirror = {
        range: (p: string) => source.range(p),
        get: (k: string) => source.get(k),
        leaseRemaining: (l: string) => source.leaseRemaining(l),
        generation: 0,
        start: () => {
          started++;
          return Promise.resolve();
        },
        isReady: () => started > 0,
        close() {},
      };
      return mirror as unknown as T;
    },
  };
  const startup: StartupHook[] = [];
  const ctx: SetupContext = {
    directives: etcdDirectives("etcd example. {\n endpoint http://127.0.0.1:1\n}"),
    zones: ["."],
    port: 53,
    configDir: "/",
    serverOptions: { bind: [] },
    resources,
    log: createLogger("plugin/etcd", () => {}),
    server: NO_SERVER,
    onStartup: (fn) => startup.push(fn),
    onShutdown: () => {},
    fatal: (err) => {
      throw err;
    },
  };
  const plugin = await etcdPlugin.setup(ctx);
  assert.ok(plugin);
  assert.equal(plugin.name, "etcd");
  assert.ok(acquired.some((k) => k.includes('"prefix":"/skydns/example"')), acquired.join("\n"));
  assert.equal(plugin.ready?.(), false);
  for (const fn of startup) await fn(configView({}));
  assert.equal(started, 1);
  assert.equal(plugin.ready?.(), true);
  const req = {
    question: { name: "a.example.", type: Type.A, class: 1 },
    qname: "a.example.",
    lookup: () => Promise.reject(new Error("none")),
    observe: () => {},
  } as unknown as Request;
  const reply = await plugin.serve(req, () => Promise.reject(new Error("not reached")));
  assert.equal(reply.rcode, Rcode.Success);
  assert.equal(reply.answer[0].data, "10.0.0.1");
});
