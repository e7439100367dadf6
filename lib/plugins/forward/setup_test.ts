import assert from "node:assert/strict";
import { join } from "node:path";
import { CorefileError } from "../../corefile/types.ts";
import { canonicalIP, loopsBack, parseStanza, readResolvConf } from "./setup.ts";
import { forwardPlugin } from "./mod.ts";
import { directivesOf, setupContext } from "./testkit.ts";

function parse(body: string, configDir = Deno.cwd()) {
  return parseStanza(directivesOf("forward", body)[0], configDir);
}

function parseError(body: string, configDir = Deno.cwd()): CorefileError {
  try {
    parse(body, configDir);
  } catch (err) {
    assert.ok(err instanceof CorefileError, `expected CorefileError, got ${err}`);
    return err;
  }
  assert.fail(`expected an error for: ${body}`);
}

Deno.test("forward setup: defaults as CoreDNS's forward.New()", () => {
  const cfg = parse("forward . 127.0.0.1");
  assert.equal(cfg.from, ".");
  assert.deepEqual(cfg.upstreams, [{ host: "127.0.0.1", port: 53 }]);
  assert.equal(cfg.maxFails, 2);
  assert.equal(cfg.healthCheckSeconds, 0.5);
  assert.equal(cfg.healthCheckRecursion, true);
  assert.equal(cfg.healthCheckDomain, ".");
  assert.equal(cfg.expireSeconds, 10);
  assert.equal(cfg.policy, "random");
  assert.equal(cfg.forceTcp, false);
  assert.equal(cfg.preferUdp, false);
  assert.equal(cfg.maxConcurrent, 0);
  assert.deepEqual(cfg.except, []);
});

Deno.test("forward setup: TO forms (IP, IP:port, [v6]:port, bare v6, dns://)", () => {
  const cfg = parse(
    "forward Example.ORG 10.0.0.1 10.0.0.2:1053 [::1]:5353 2001:db8::1 dns://10.0.0.3 dns://10.0.0.4:54",
  );
  assert.equal(cfg.from, "example.org.");
  assert.deepEqual(cfg.upstreams, [
    { host: "10.0.0.1", port: 53 },
    { host: "10.0.0.2", port: 1053 },
    { host: "::1", port: 5353 },
    { host: "2001:db8::1", port: 53 },
    { host: "10.0.0.3", port: 53 },
    { host: "10.0.0.4", port: 54 },
  ]);
});

Deno.test("forward setup: a resolv.conf path contributes its nameserver lines", () => {
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(
      join(dir, "resolv.conf"),
      "# comment\nsearch example.org\nnameserver 192.0.2.1\nnameserver   2001:db8::53\noptions ndots:2\nnameserver bogus\n",
    );
    const cfg = parse("forward . resolv.conf 192.0.2.9", dir);
    assert.deepEqual(cfg.upstreams, [
      { host: "192.0.2.1", port: 53 },
      { host: "2001:db8::53", port: 53 },
      { host: "192.0.2.9", port: 53 },
    ]);
    assert.deepEqual(readResolvConf("nameserver 10.1.1.1\n"), ["10.1.1.1"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("forward setup: every block option", () => {
  const cfg = parse(`forward . 127.0.0.1 {
    except a.org B.org
    force_tcp
    prefer_udp
    expire 30s
    max_fails 5
    health_check 2s no_rec domain Example.net
    policy sequential
    max_concurrent 100
    next NXDOMAIN servfail
    failover REFUSED
    failfast_all_unhealthy_upstreams
  }`);
  assert.deepEqual(cfg.except, ["a.org.", "b.org."]);
  assert.equal(cfg.forceTcp, true);
  assert.equal(cfg.preferUdp, true);
  assert.equal(cfg.expireSeconds, 30);
  assert.equal(cfg.maxFails, 5);
  assert.equal(cfg.healthCheckSeconds, 2);
  assert.equal(cfg.healthCheckRecursion, false);
  assert.equal(cfg.healthCheckDomain, "example.net.");
  assert.equal(cfg.policy, "sequential");
  assert.equal(cfg.maxConcurrent, 100);
  assert.deepEqual(cfg.next, [3, 2]);
  assert.deepEqual(cfg.failover, [5]);
  assert.equal(cfg.failfast, true);
});

Deno.test("forward setup: CoreDNS's error texts, with file:line", () => {
  const cases: [string, string][] = [
    ["forward", "Wrong argument count or unexpected line ending after 'forward'"],
    ["forward .", "Wrong argument count or unexpected line ending after '.'"],
    ["forward . not-a-file", 'not an IP address or file: "not-a-file"'],
    [
      "forward . grpc://1.1.1.1",
      "'grpc' is not supported as a destination protocol in forward: grpc://1.1.1.1",
    ],
    ["forward . 127.0.0.1 {\nbogus\n}", "unknown property 'bogus'"],
    ["forward . 127.0.0.1 {\npolicy fastest\n}", "unknown policy 'fastest'"],
    ["forward . 127.0.0.1 {\nmax_fails x\n}", 'strconv.ParseUint: parsing "x": invalid syntax'],
    ["forward . 127.0.0.1 {\nmax_fails -1\n}", 'strconv.ParseUint: parsing "-1": invalid syntax'],
    [
      "forward . 127.0.0.1 {\nmax_fails\n}",
      "Wrong argument count or unexpected line ending after 'max_fails'",
    ],
    ["forward . 127.0.0.1 {\nhealth_check -1s\n}", "health_check can't be negative: -1000000000"],
    ["forward . 127.0.0.1 {\nhealth_check 1s bogus\n}", "health_check: unknown option bogus"],
    ["forward . 127.0.0.1 {\nhealth_check x\n}", 'time: invalid duration "x"'],
    ["forward . 127.0.0.1 {\nexpire -1s\n}", "expire can't be negative: -1s"],
    ["forward . 127.0.0.1 {\nmax_concurrent -1\n}", "max_concurrent can't be negative: -1"],
    ["forward . 127.0.0.1 {\nmax_concurrent x\n}", 'strconv.Atoi: parsing "x": invalid syntax'],
    [
      "forward . 127.0.0.1 {\nforce_tcp yes\n}",
      "Wrong argument count or unexpected line ending after 'force_tcp'",
    ],
    [
      "forward . 127.0.0.1 {\nexcept\n}",
      "Wrong argument count or unexpected line ending after 'except'",
    ],
    ["forward . 127.0.0.1 {\nnext BOGUS\n}", "BOGUS is not a valid rcode"],
    ["forward . 127.0.0.1 {\nfailover NOERROR\n}", "NoError cannot be used in failover"],
  ];
  for (const [body, message] of cases) {
    assert.equal(parseError(body).message, message, body);
  }
  const sixteen = Array.from({ length: 16 }, (_, i) => `10.0.0.${i + 1}`).join(" ");
  assert.equal(parseError(`forward . ${sixteen}`).message, "more than 15 TOs configured: 16");
  const err = parseError("forward . 127.0.0.1 {\n  policy fastest\n}");
  assert.equal(
    err.describe(),
    "plugin/forward: Corefile:3 - Error during parsing: unknown policy 'fastest'",
  );
});

Deno.test("forward setup: TLS and DoH are rejected as not supported by idetcd", () => {
  assert.match(
    parseError("forward . tls://1.1.1.1").message,
    /tls:\/\/ is not supported by idetcd/,
  );
  assert.match(
    parseError("forward . https://dns.google/dns-query").message,
    /https:\/\/ is not supported by idetcd/,
  );
  assert.match(
    parseError("forward . 127.0.0.1 {\ntls cert key ca\n}").message,
    /^tls is not supported by idetcd/,
  );
  assert.match(
    parseError("forward . 127.0.0.1 {\ntls_servername dns.google\n}").message,
    /^tls_servername is not supported by idetcd/,
  );
});

Deno.test("forward setup: several stanzas chain in one plugin; shutdown is clean", async () => {
  const ctx = setupContext(
    directivesOf("forward", "forward a.org 127.0.0.1\nforward . 127.0.0.2"),
    { port: 1053 }, // on port 53 these would be this server itself (see the loop tests)
  );
  const plugin = await forwardPlugin.setup(ctx);
  assert.ok(plugin);
  assert.equal(plugin.name, "forward");
  await ctx.shutdown();
});

Deno.test("forward setup: canonical IPs (IPv4-mapped IPv6 is IPv4; zones and brackets go)", () => {
  assert.equal(canonicalIP("::ffff:127.0.0.1"), "127.0.0.1");
  assert.equal(canonicalIP("[2001:DB8::1]"), "2001:db8:0:0:0:0:0:1");
  assert.equal(canonicalIP("fe80::1%eth0"), "fe80:0:0:0:0:0:0:1");
  assert.equal(canonicalIP("10.0.0.1"), "10.0.0.1");
});

Deno.test("forward setup: which upstreams are this server itself", () => {
  const local = ["10.0.0.4", canonicalIP("2001:db8::4")];
  const every = { port: 53, bind: [] };
  // No bind: every local address on the server's port.
  for (
    const host of ["127.0.0.1", "127.0.0.53", "::1", "0.0.0.0", "::", "10.0.0.4", "2001:db8::4"]
  ) {
    assert.equal(loopsBack({ host, port: 53 }, every, local), true, host);
  }
  assert.equal(loopsBack({ host: "::ffff:10.0.0.4", port: 53 }, every, local), true);
  assert.equal(loopsBack({ host: "127.0.0.1", port: 5353 }, every, local), false, "another port");
  assert.equal(loopsBack({ host: "10.0.0.5", port: 53 }, every, local), false, "another machine");
  assert.equal(loopsBack({ host: "8.8.8.8", port: 53 }, every, local), false);
  // bind: only the addresses listened on.
  const lo = { port: 53, bind: ["127.0.0.1"] };
  assert.equal(loopsBack({ host: "127.0.0.1", port: 53 }, lo, local), true);
  assert.equal(
    loopsBack({ host: "127.0.0.53", port: 53 }, lo, local),
    false,
    "a stub on 127.0.0.53",
  );
  assert.equal(loopsBack({ host: "10.0.0.4", port: 53 }, lo, local), false);
  const v4any = { port: 53, bind: ["0.0.0.0"] };
  assert.equal(loopsBack({ host: "10.0.0.4", port: 53 }, v4any, local), true);
  assert.equal(loopsBack({ host: "::1", port: 53 }, v4any, local), false);
  const v6any = { port: 53, bind: ["::"] };
  assert.equal(loopsBack({ host: "10.0.0.4", port: 53 }, v6any, local), true, "dual-stack");
  const nic = { port: 53, bind: ["2001:db8::4"] };
  assert.equal(loopsBack({ host: "2001:DB8:0::4", port: 53 }, nic, local), true);
});

function loopError(body: string, listen: { port: number; bind: string[] }, configDir = Deno.cwd()) {
  try {
    parseStanza(directivesOf("forward", body)[0], configDir, undefined, listen);
  } catch (err) {
    assert.ok(err instanceof CorefileError, `expected CorefileError, got ${err}`);
    return err.describe();
  }
  assert.fail(`expected a loop error for: ${body}`);
}

Deno.test("forward setup: an upstream that is this server is refused as a loop, with file:line", () => {
  assert.equal(
    loopError("forward . 8.8.8.8 127.0.0.1:1053", { port: 1053, bind: [] }),
    "plugin/forward: Corefile:2 - Error during parsing: forward . 127.0.0.1:1053 would loop: " +
      "127.0.0.1:1053 is this server, which listens on port 1053 of every local address; forward to another resolver",
  );
  assert.equal(
    loopError("forward example.org dns://[::1]:1053", { port: 1053, bind: ["::1"] }),
    "plugin/forward: Corefile:2 - Error during parsing: forward example.org dns://[::1]:1053 would loop: " +
      "[::1]:1053 is this server, which listens on [::1]:1053; forward to another resolver",
  );
  const dir = Deno.makeTempDirSync();
  try {
    Deno.writeTextFileSync(
      join(dir, "resolv.conf"),
      "nameserver 192.0.2.1\nnameserver 127.0.0.53\n",
    );
    assert.equal(
      loopError("forward . resolv.conf", { port: 53, bind: [] }, dir),
      "plugin/forward: Corefile:2 - Error during parsing: forward . resolv.conf would loop: " +
        "its nameserver 127.0.0.53 (port 53) is this server, which listens on port 53 of every local address; forward to another resolver",
    );
    // The same file is fine for a server on another port, or bound elsewhere.
    const ok = parseStanza(
      directivesOf("forward", "forward . resolv.conf")[0],
      dir,
      undefined,
      { port: 53, bind: ["127.0.0.1"] },
    );
    assert.equal(ok.upstreams.length, 2);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
  // Without a listen spec (the parser alone) nothing is checked.
  assert.deepEqual(parse("forward . 127.0.0.1").upstreams, [{ host: "127.0.0.1", port: 53 }]);
});

Deno.test("forward setup: the plugin refuses a loop on its block's port and bind", async () => {
  const loop = setupContext(directivesOf("forward", "forward . 127.0.0.1"));
  await assert.rejects(
    async () => await forwardPlugin.setup(loop),
    (err: Error) => err instanceof CorefileError && /would loop/.test(err.message),
  );
  const bound = setupContext(directivesOf("forward", "forward . 127.0.0.1"), {
    serverOptions: { bind: ["127.0.0.2"] },
  });
  assert.ok(await forwardPlugin.setup(bound));
  await bound.shutdown();
});
