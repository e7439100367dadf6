import assert from "node:assert/strict";
import { CorefileError } from "../../corefile/types.ts";
import { effectiveCapacity } from "./cache.ts";
import { parseCache } from "./setup.ts";
import { cachePlugin } from "./mod.ts";
import { directivesOf, setupContext } from "../forward/testkit.ts";

function parse(body: string, blockZones = ["."]) {
  return parseCache(directivesOf("cache", body), blockZones);
}

function parseError(body: string): CorefileError {
  try {
    parse(body);
  } catch (err) {
    assert.ok(err instanceof CorefileError, `expected CorefileError, got ${err}`);
    return err;
  }
  assert.fail(`expected an error for: ${body}`);
}

Deno.test("cache setup: CoreDNS's defaults", () => {
  const o = parse("cache", ["example.org."]);
  assert.deepEqual(o.zones, ["example.org."]);
  assert.equal(o.successMaxTTL, 3600);
  assert.equal(o.denialMaxTTL, 1800);
  assert.equal(o.successMinTTL, 5);
  assert.equal(o.denialMinTTL, 5);
  assert.equal(o.successCapacity, 9984);
  assert.equal(o.denialCapacity, 9984);
  assert.equal(o.servfailTTL, 5);
  assert.equal(o.prefetch, 0);
  assert.equal(o.prefetchWindow, 60);
  assert.equal(o.prefetchPercentage, 10);
  assert.equal(o.staleUpTo, 0);
  assert.equal(o.keepTTL, false);
});

Deno.test("cache setup: TTL and zones arguments", () => {
  const o = parse("cache 300 Example.ORG b.org:53");
  assert.equal(o.successMaxTTL, 300);
  assert.equal(o.denialMaxTTL, 300);
  assert.deepEqual(o.zones, ["example.org.", "b.org."]);
  assert.deepEqual(parse("cache example.net").zones, ["example.net."]);
  assert.equal(parse("cache example.net").successMaxTTL, 3600);
});

Deno.test("cache setup: every block option", () => {
  const o = parse(`cache {
    success 5000 600 10
    denial 2500 60 1
    prefetch 3 30s 20%
    serve_stale 10m verify
    servfail 2s
    disable success Internal.Example
    disable denial
    keepttl
  }`);
  assert.equal(o.successCapacity, 4864, "rounded down to whole shards (19 * 256)");
  assert.equal(o.successMaxTTL, 600);
  assert.equal(o.successMinTTL, 10);
  assert.equal(o.denialCapacity, 2304);
  assert.equal(o.denialMaxTTL, 60);
  assert.equal(o.denialMinTTL, 1);
  assert.equal(o.prefetch, 3);
  assert.equal(o.prefetchWindow, 30);
  assert.equal(o.prefetchPercentage, 20);
  assert.equal(o.staleUpTo, 600);
  assert.equal(o.verifyStale, true);
  assert.equal(o.servfailTTL, 2);
  assert.deepEqual(o.successExcept, ["internal.example."]);
  assert.deepEqual(o.denialExcept, ["."]);
  assert.equal(o.keepTTL, true);
  const stale = parse("cache {\nserve_stale\n}");
  assert.equal(stale.staleUpTo, 3600);
  assert.equal(stale.verifyStale, false);
});

Deno.test("cache setup: capacities round like CoreDNS's 256 shards (minimum 1024)", () => {
  assert.equal(effectiveCapacity(10000), 9984);
  assert.equal(effectiveCapacity(1), 1024);
  assert.equal(effectiveCapacity(-5), 1024);
  assert.equal(effectiveCapacity(2048), 2048);
});

Deno.test("cache setup: CoreDNS's error texts", () => {
  const cases: [string, string][] = [
    ["cache 0", "cache TTL can not be zero or negative: 0"],
    ["cache -5", "cache TTL can not be zero or negative: -5"],
    ["cache {\nsuccess\n}", "Wrong argument count or unexpected line ending after 'success'"],
    ["cache {\nsuccess x\n}", 'strconv.Atoi: parsing "x": invalid syntax'],
    ["cache {\nsuccess 10 0\n}", "cache TTL can not be zero or negative: 0"],
    ["cache {\ndenial 10 10 -1\n}", "cache min TTL can not be negative: -1"],
    ["cache {\nprefetch\n}", "Wrong argument count or unexpected line ending after 'prefetch'"],
    [
      "cache {\nprefetch 1 1m 10% x\n}",
      "Wrong argument count or unexpected line ending after 'prefetch'",
    ],
    ["cache {\nprefetch -1\n}", "prefetch amount should be positive: -1"],
    ["cache {\nprefetch 1 x\n}", 'time: invalid duration "x"'],
    ["cache {\nprefetch 1 1m 5\n}", "last character of percentage should be `%`, but is: '5'"],
    ["cache {\nprefetch 1 1m 5%\n}", "percentage should fall in range [10, 90]: 5"],
    ["cache {\nserve_stale -1s\n}", "invalid negative duration for serve_stale"],
    ["cache {\nserve_stale 1h bogus\n}", "invalid value for serve_stale refresh mode: bogus"],
    [
      "cache {\nserve_stale 1h verify x\n}",
      "Wrong argument count or unexpected line ending after 'serve_stale'",
    ],
    ["cache {\nservfail\n}", "Wrong argument count or unexpected line ending after 'servfail'"],
    ["cache {\nservfail -1s\n}", "invalid negative ttl for servfail"],
    ["cache {\nservfail 6m\n}", "caching SERVFAIL responses over 5 minutes is not permitted"],
    ["cache {\ndisable\n}", "Wrong argument count or unexpected line ending after 'disable'"],
    ["cache {\ndisable bogus\n}", 'cache type for disable must be "success" or "denial"'],
    ["cache {\nkeepttl now\n}", "Wrong argument count or unexpected line ending after 'keepttl'"],
    ["cache {\nbogus\n}", "Wrong argument count or unexpected line ending after 'bogus'"],
  ];
  for (const [body, message] of cases) assert.equal(parseError(body).message, message, body);
  const twice = parseError("cache\ncache 10");
  assert.equal(
    twice.describe(),
    "plugin/cache: Corefile:3 - Error during parsing: this plugin can only be used once per Server Block",
  );
});

Deno.test("cache setup: the plugin registers and shuts down cleanly", async () => {
  const ctx = setupContext(directivesOf("cache", "cache 30"));
  const plugin = await cachePlugin.setup(ctx);
  assert.equal(plugin?.name, "cache");
  await ctx.shutdown();
});
