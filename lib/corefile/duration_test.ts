import { deepStrictEqual as equal, throws } from "node:assert/strict";
import { parseTTL } from "./duration.ts";

Deno.test("parseTTL: the etcd plugin's TestParseTTL values", () => {
  const cases: [string, number][] = [
    ["30", 30],
    ["300", 300],
    ["30s", 30],
    ["90s", 90],
    ["5m", 300],
    ["1m", 60],
    ["1h", 3600],
    ["2h", 7200],
    ["2h30m", 9000],
    ["1h30m45s", 5445],
    ["0", 0],
    ["0s", 0],
    ["", 0],
  ];
  for (const [text, seconds] of cases) equal(parseTTL(text), seconds, JSON.stringify(text));
});

Deno.test("parseTTL: trimming, truncation and bounds", () => {
  equal(parseTTL("  45 \t"), 45);
  equal(parseTTL("   "), 0);
  equal(parseTTL("1.9s"), 1);
  equal(parseTTL("1500ms"), 1);
  equal(parseTTL("007"), 7);
  equal(parseTTL("-0"), 0);
  equal(parseTTL("4294967295"), 4294967295);
});

Deno.test("parseTTL: errors", () => {
  const format = "invalid TTL format, use format like '30', '30s', '5m', '1h', or '2h30m'";
  throws(() => parseTTL("-30s"), { message: "TTL must be non-negative" });
  throws(() => parseTTL("-1ns"), { message: "TTL must be non-negative" });
  throws(() => parseTTL("abc"), { message: format });
  throws(() => parseTTL("1y"), { message: format });
  throws(() => parseTTL("+30"), { message: format });
  throws(() => parseTTL("-30"), { message: format });
  // Past Go's ~292-year duration range, ParseDuration itself fails.
  throws(() => parseTTL("9223372037"), { message: format });
  throws(() => parseTTL("4294967296"), { message: "TTL too large, maximum is 4294967295 seconds" });
  // The check is on the float, before truncation.
  throws(() => parseTTL("4294967295.5s"), {
    message: "TTL too large, maximum is 4294967295 seconds",
  });
  throws(() => parseTTL("4294967296s"), {
    message: "TTL too large, maximum is 4294967295 seconds",
  });
  throws(() => parseTTL("2000000h"), { message: "TTL too large, maximum is 4294967295 seconds" });
});
