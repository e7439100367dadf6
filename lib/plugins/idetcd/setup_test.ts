import assert from "node:assert/strict";
import { parseCorefile } from "../../corefile/parser.ts";
import { CorefileError } from "../../corefile/types.ts";
import { DEFAULTS, parseIdetcd } from "./setup.ts";

/** The idetcd directives of `. { BODY }`; the idetcd line is on Corefile line 2. */
function directives(body: string) {
  const blocks = parseCorefile(`. {\n${body}\n}\n`, "Corefile", {
    isDirective: (n) => ["idetcd", "whoami"].includes(n),
  });
  return blocks[0].directives.filter((d) => d.name.text === "idetcd");
}

function parse(body: string) {
  return parseIdetcd(directives(body), "/etc/coredns");
}

function error(body: string): string {
  try {
    parse(body);
  } catch (err) {
    assert.ok(err instanceof CorefileError, `expected CorefileError, got ${err}`);
    return err.describe();
  }
  assert.fail(`expected an error for: ${body}`);
}

Deno.test("idetcd setup: the original's syntax and its defaults", () => {
  const cfg = parse(`idetcd {
    endpoint http://10.0.0.1:2379 http://10.0.0.2:2379
    limit 5
    pattern worker{{.ID}}.tf.local.
  }`);
  assert.deepEqual(cfg.etcd, { endpoints: ["http://10.0.0.1:2379", "http://10.0.0.2:2379"] });
  assert.equal(cfg.limit, 5);
  assert.equal(cfg.pattern.zone, "tf.local.");
  assert.equal(cfg.pattern.render(5), "worker5.tf.local.");
  assert.equal(cfg.ttl, DEFAULTS.ttl);
  assert.equal(cfg.leaseSeconds, DEFAULTS.leaseSeconds);
  assert.equal(cfg.prefix, "/skydns");
  assert.deepEqual(cfg.addressSpecs, []);
  assert.deepEqual(cfg.fallthrough, []);
  assert.equal(cfg.port, undefined);
  assert.equal(cfg.wait, undefined);
  assert.deepEqual(cfg.where, { file: "Corefile", line: 2 });
  const minimal = parse("idetcd {\npattern w{{.ID}}.x.\n}");
  assert.deepEqual(minimal.etcd.endpoints, ["http://localhost:2379"]);
  assert.equal(minimal.limit, 10);
});

Deno.test("idetcd setup: every option", () => {
  const cfg = parse(`idetcd {
    pattern worker{{.ID}}.tf.local.
    address 10.0.0.4 eth0
    address 2001:db8::4
    ttl 60
    lease 1m
    credentials root secret
    tls cert.pem key.pem ca.pem
    prefix skydns/tf/
    port 2222
    wait 30s
    file state/idetcd.json
    identity node-a
    fallthrough Example.ORG dns://other.
  }`);
  assert.deepEqual(cfg.addressSpecs, ["10.0.0.4", "eth0", "2001:db8::4"]);
  assert.equal(cfg.ttl, 60);
  assert.equal(cfg.leaseSeconds, 60);
  assert.equal(cfg.etcd.username, "root");
  assert.equal(cfg.etcd.password, "secret");
  assert.ok(cfg.etcd.tls);
  assert.equal(cfg.prefix, "/skydns/tf");
  assert.equal(cfg.port, 2222);
  assert.deepEqual(cfg.wait, { timeoutSeconds: 30 });
  assert.equal(cfg.file, "/etc/coredns/state/idetcd.json");
  assert.equal(cfg.identity, "node-a");
  assert.deepEqual(cfg.fallthrough, ["example.org.", "other."]);
  assert.deepEqual(parse("idetcd {\npattern w{{.ID}}.x.\nwait\nfallthrough\nlease 2\n}").wait, {});
  assert.deepEqual(parse("idetcd {\npattern w{{.ID}}.x.\nfallthrough\n}").fallthrough, ["."]);
  assert.equal(parse("idetcd {\npattern w{{.ID}}.x.\nfile /run/id.json\n}").file, "/run/id.json");
  assert.equal(parse("idetcd {\npattern w{{.ID}}.x.\nttl 0\n}").ttl, 0);
  assert.equal(parse("idetcd {\npattern w{{.ID}}.x.\nlease 2.5s\n}").leaseSeconds, 3);
});

Deno.test("idetcd setup: errors name the file and line", () => {
  const cases: [string, string][] = [
    [
      "idetcd",
      "plugin/idetcd: Corefile:2 - Error during parsing: pattern is required, e.g. 'pattern worker{{.ID}}.tf.local.'",
    ],
    [
      "idetcd {\nlimit 5\n}",
      "plugin/idetcd: Corefile:2 - Error during parsing: pattern is required",
    ],
    [
      "idetcd {\npattern w{{.Name}}.x.\n}",
      'plugin/idetcd: Corefile:3 - Error during parsing: pattern: unsupported template action {{.Name}}; use {{.ID}} or {{printf "%02d" .ID}}',
    ],
    [
      "idetcd {\npattern w{{.ID}}.x.\nlimit 0\n}",
      "Corefile:4 - Error during parsing: limit must be an integer from 1 to 100000, got '0'",
    ],
    ["idetcd {\npattern w{{.ID}}.x.\nlimit ten\n}", "limit must be an integer"],
    [
      "idetcd {\npattern w{{.ID}}.x.\nlimit\n}",
      "Corefile:4 - Error during parsing: Wrong argument count or unexpected line ending after 'limit'",
    ],
    ["idetcd {\npattern w{{.ID}}.x.\nlease 1s\n}", "lease must be at least 2s, got '1s'"],
    [
      "idetcd {\npattern w{{.ID}}.x.\nlease soon\n}",
      `invalid lease value 'soon': time: invalid duration "soon"`,
    ],
    ["idetcd {\npattern w{{.ID}}.x.\nport 70000\n}", "port must be an integer from 1 to 65535"],
    ["idetcd {\npattern w{{.ID}}.x.\nttl -5\n}", "invalid ttl value '-5'"],
    ["idetcd {\npattern w{{.ID}}.x.\nwait 1s 2s\n}", "wait takes at most one argument"],
    [
      "idetcd {\npattern w{{.ID}}.x.\nendpoints http://a\n}",
      "Corefile:4 - Error during parsing: unknown property 'endpoints'",
    ],
    [
      "idetcd {\npattern w{{.ID}}.x.\ncredentials user\n}",
      "credentials requires 2 arguments, username and password",
    ],
    ["idetcd {\npattern w{{.ID}}.x.\nendpoint\n}", "Wrong argument count"],
    ["idetcd {\npattern w{{.ID}}.x.\nprefix /\n}", "prefix must name a path"],
    [
      "idetcd {\npattern w{{.ID}}.x.\npattern a{{.ID}}.x. b\n}",
      "pattern takes one argument, got 2",
    ],
    ["idetcd example.org {\npattern w{{.ID}}.x.\n}", "idetcd takes no arguments"],
    [
      "idetcd {\npattern w{{.ID}}.x.\n}\nidetcd {\npattern v{{.ID}}.x.\n}",
      "Corefile:5 - Error during parsing: this plugin can only be used once per Server Block",
    ],
    [
      `idetcd {\npattern ${"a".repeat(61)}{{.ID}}.x.\nlimit 1000\n}`,
      "Corefile:4 - Error during parsing: pattern: ",
    ],
  ];
  for (const [body, expected] of cases) {
    assert.ok(
      error(body).includes(expected),
      `${body}\n  got: ${error(body)}\n  want: ${expected}`,
    );
  }
});
