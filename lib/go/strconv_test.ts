import { deepStrictEqual as equal, throws } from "node:assert/strict";
import { atoi, atoi64, formatFloat, NumError, parseUint, quote } from "./strconv.ts";

Deno.test("atoi: Go's strconv.Atoi accepts a sign and decimal digits within int64", () => {
  equal(atoi("42"), 42);
  equal(atoi("+053"), 53);
  equal(atoi("-7"), -7);
  equal(atoi64("9223372036854775807"), 9223372036854775807n);
  throws(() => atoi("1.5"), { message: 'strconv.Atoi: parsing "1.5": invalid syntax' });
  throws(() => atoi(""), { message: 'strconv.Atoi: parsing "": invalid syntax' });
  throws(() => atoi("0x10"), NumError);
  throws(() => atoi("9223372036854775808"), {
    message: 'strconv.Atoi: parsing "9223372036854775808": value out of range',
  });
});

Deno.test("parseUint: no sign, range by bit size", () => {
  equal(parseUint("4294967295", 32), 4294967295);
  throws(() => parseUint("4294967296", 32), {
    message: 'strconv.ParseUint: parsing "4294967296": value out of range',
  });
  throws(() => parseUint("-1"), { message: 'strconv.ParseUint: parsing "-1": invalid syntax' });
});

Deno.test("quote: Go's %q", () => {
  equal(quote('a"b\\c'), '"a\\"b\\\\c"');
  equal(quote("tab\there\n"), '"tab\\there\\n"');
  equal(quote("\x01"), '"\\x01"');
  equal(quote("é☺"), '"é☺"');
  equal(quote("\u200b"), '"\\u200b"');
});

Deno.test("formatFloat: Go's FormatFloat(v, 'g' | 'f', -1, 64)", () => {
  const g: [number, string][] = [
    [0, "0"],
    [-0, "-0"],
    [1, "1"],
    [0.5, "0.5"],
    [123456, "123456"],
    [1e6, "1e+06"],
    [1234567, "1.234567e+06"],
    [0.0001, "0.0001"],
    [0.00001, "1e-05"],
    [0.000025, "2.5e-05"],
    [-3.25, "-3.25"],
    [NaN, "NaN"],
    [Infinity, "+Inf"],
    [-Infinity, "-Inf"],
  ];
  for (const [v, text] of g) equal(formatFloat(v, "g"), text, String(v));
  const f: [number, string][] = [
    [0.000025, "0.000025"],
    [1e6, "1000000"],
    [1.5e21, "1500000000000000000000"],
    [0.1, "0.1"],
    [-12.5, "-12.5"],
    [3, "3"],
  ];
  for (const [v, text] of f) equal(formatFloat(v, "f"), text, String(v));
});
