import { deepStrictEqual as equal, throws } from "node:assert/strict";
import { formatGoDuration, parseDuration, parseDurationNanos } from "./time.ts";

Deno.test("parseDuration: Go duration syntax in seconds", () => {
  const cases: [string, number][] = [
    ["0", 0],
    ["-0", 0],
    ["+0", 0],
    ["5s", 5],
    ["30s", 30],
    ["1478s", 1478],
    ["-5s", -5],
    ["+5s", 5],
    ["-1s", -1],
    ["300ms", 0.3],
    ["1.5h", 5400],
    ["2h30m", 9000],
    ["2h45m", 9900],
    ["1h30m45s", 5445],
    [".5s", 0.5],
    ["5.s", 5],
    ["5.0s", 5],
    ["1.004s", 1.004],
    ["100.00100s", 100.001],
    ["10ns", 1e-8],
    ["11us", 1.1e-5],
    ["12µs", 1.2e-5],
    ["12μs", 1.2e-5],
    ["13ms", 0.013],
    ["14s", 14],
    ["15m", 900],
    ["16h", 57600],
    ["3h30m", 12600],
    ["10.5s4m", 250.5],
    ["-2m3.4s", -123.4],
    ["1h2m3s4ms5us6ns", 3723.004005006],
    ["39h9m14.425s", 140954.425],
  ];
  for (const [text, seconds] of cases) equal(parseDuration(text), seconds, text);
});

Deno.test("parseDurationNanos: exact limits", () => {
  equal(parseDurationNanos("9223372036854775807ns"), 9223372036854775807n);
  equal(parseDurationNanos("-9223372036854775808ns"), -9223372036854775808n);
  equal(parseDurationNanos("2562047h"), 2562047n * 3_600_000_000_000n);
  equal(parseDurationNanos("0.9223372036854775807s"), 922337203n);
  // Extra fraction digits are ignored rather than overflowing.
  equal(parseDurationNanos("0.100000000000000000000h"), 360_000_000_000n);
  equal(parseDurationNanos("0.830103483285477580700h"), 2_988_372_539_827n);
});

Deno.test("parseDuration: errors carry Go's text", () => {
  const cases: [string, string][] = [
    ["", 'time: invalid duration ""'],
    ["abc", 'time: invalid duration "abc"'],
    ["3", 'time: missing unit in duration "3"'],
    ["-", 'time: invalid duration "-"'],
    ["s", 'time: invalid duration "s"'],
    [".", 'time: invalid duration "."'],
    ["-.", 'time: invalid duration "-."'],
    [".s", 'time: invalid duration ".s"'],
    ["+.s", 'time: invalid duration "+.s"'],
    ["1d", 'time: unknown unit "d" in duration "1d"'],
    ["1y", 'time: unknown unit "y" in duration "1y"'],
    ["1.5h2", 'time: missing unit in duration "1.5h2"'],
    ["9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'],
    ["9223372036854775.808us", 'time: invalid duration "9223372036854775.808us"'],
    ["2562048h", 'time: invalid duration "2562048h"'],
    ["1é", 'time: unknown unit "\\xc3\\xa9" in duration "1\\xc3\\xa9"'],
    ['1"s', 'time: unknown unit "\\"s" in duration "1\\"s"'],
  ];
  for (const [text, message] of cases) {
    throws(() => parseDuration(text), { message }, text);
  }
});

Deno.test("formatGoDuration: Go's Duration.String", () => {
  equal(formatGoDuration(0), "0s");
  equal(formatGoDuration(5), "5s");
  equal(formatGoDuration(90), "1m30s");
  equal(formatGoDuration(3725.5), "1h2m5.5s");
  equal(formatGoDuration(0.25), "250ms");
  equal(formatGoDuration(1.5e-6), "1.5µs");
  equal(formatGoDuration(-2), "-2s");
});
