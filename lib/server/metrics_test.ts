import assert from "node:assert/strict";
import { exponentialBuckets, formatValue, Registry, TIME_BUCKETS } from "./metrics.ts";

Deno.test("metrics: values format as Go's strconv 'g' (client_golang)", () => {
  assert.equal(formatValue(0), "0");
  assert.equal(formatValue(1), "1");
  assert.equal(formatValue(0.00025), "0.00025");
  assert.equal(formatValue(0.00001), "1e-05");
  assert.equal(formatValue(16000), "16000");
  assert.equal(formatValue(1_000_000), "1e+06");
  assert.equal(formatValue(1_234_567), "1.234567e+06");
  assert.equal(formatValue(1.5), "1.5");
  assert.equal(formatValue(Infinity), "+Inf");
  assert.equal(formatValue(-Infinity), "-Inf");
  assert.equal(formatValue(NaN), "NaN");
  assert.deepEqual(exponentialBuckets(1, 2, 4), [1, 2, 4, 8]);
  assert.equal(TIME_BUCKETS.length, 16);
  assert.equal(TIME_BUCKETS[15], 8.192);
});

Deno.test("metrics: counters and gauges render HELP, TYPE and sorted series", () => {
  const r = new Registry();
  const c = r.counter({ name: "x_total", help: "Things.", labelNames: ["b", "a"] });
  c.inc({ b: "2", a: "z" });
  c.inc({ a: "y", b: "1" }, 2.5);
  const g = r.gauge({ name: "a_gauge", help: "A gauge." });
  g.set(undefined, 7);
  g.dec();
  assert.equal(
    r.render(),
    [
      "# HELP a_gauge A gauge.",
      "# TYPE a_gauge gauge",
      "a_gauge 6",
      "# HELP x_total Things.",
      "# TYPE x_total counter",
      'x_total{b="1",a="y"} 2.5',
      'x_total{b="2",a="z"} 1',
      "",
    ].join("\n"),
  );
  assert.equal(c.get({ a: "y", b: "1" }), 2.5);
  assert.equal(c.get({ a: "n", b: "n" }), 0);
});

Deno.test("metrics: an unlabelled metric renders 0; a labelled one with no series renders nothing", () => {
  const r = new Registry();
  r.counter({ name: "plain_total", help: "h" });
  r.counter({ name: "vec_total", help: "h", labelNames: ["x"] });
  assert.equal(r.render(), "# HELP plain_total h\n# TYPE plain_total counter\nplain_total 0\n");
});

Deno.test("metrics: label values and help are escaped", () => {
  const r = new Registry();
  r.gauge({ name: "g", help: "back\\slash\nnewline", labelNames: ["v"] })
    .set({ v: 'a"b\\c\nd' }, 1);
  assert.equal(
    r.render(),
    '# HELP g back\\\\slash\\nnewline\n# TYPE g gauge\ng{v="a\\"b\\\\c\\nd"} 1\n',
  );
});

Deno.test("metrics: histograms render cumulative buckets with le last, then sum and count", () => {
  const r = new Registry();
  const h = r.histogram({ name: "h_seconds", help: "h", labelNames: ["z"], buckets: [0.1, 1] });
  h.observe({ z: "." }, 0.05);
  h.observe({ z: "." }, 0.1); // upper bounds are inclusive
  h.observe({ z: "." }, 5);
  assert.equal(
    r.render(),
    [
      "# HELP h_seconds h",
      "# TYPE h_seconds histogram",
      'h_seconds_bucket{z=".",le="0.1"} 2',
      'h_seconds_bucket{z=".",le="1"} 2',
      'h_seconds_bucket{z=".",le="+Inf"} 3',
      'h_seconds_sum{z="."} 5.15',
      'h_seconds_count{z="."} 3',
      "",
    ].join("\n"),
  );
  assert.deepEqual(h.get({ z: "." })?.counts, [2, 0, 1]);
});

Deno.test("metrics: registering again returns the same metric; a clash throws", () => {
  const r = new Registry();
  const a = r.counter({ name: "same_total", help: "h", labelNames: ["x"] });
  const b = r.counter({ name: "same_total", help: "h", labelNames: ["x"] });
  assert.equal(a, b);
  assert.throws(
    () => r.gauge({ name: "same_total", help: "h", labelNames: ["x"] }),
    /already registered/,
  );
  assert.throws(
    () => r.counter({ name: "same_total", help: "h", labelNames: ["y"] }),
    /already registered/,
  );
  assert.throws(() => r.counter({ name: "bad-name", help: "h" }), /invalid metric name/);
  assert.throws(
    () => r.counter({ name: "ok", help: "h", labelNames: ["__x"] }),
    /invalid label name/,
  );
  r.histogram({ name: "hh", help: "h", buckets: [1, 2] });
  assert.throws(() => r.histogram({ name: "hh", help: "h", buckets: [1, 3] }), /other buckets/);
});

Deno.test("metrics: labels are checked and counters never decrease", () => {
  const r = new Registry();
  const c = r.counter({ name: "c_total", help: "h", labelNames: ["a"] });
  assert.throws(() => c.inc({} as { a: string }), /missing label "a"/);
  assert.throws(() => c.inc({ a: "1", b: "2" } as { a: string }), /unknown label "b"/);
  assert.throws(() => c.inc({ a: "1" }, -1), /cannot decrease/);
  c.inc({ a: "1" });
  assert.equal(c.remove({ a: "1" }), true);
  assert.equal(r.render(), "");
});

Deno.test("metrics: collectors add families and text at scrape time, merge by name, and can fail alone", () => {
  const r = new Registry();
  r.gauge({ name: "shared", help: "Owned.", labelNames: ["who"] }).set({ who: "owner" }, 1);
  let claimed = 3;
  const unregister = r.registerCollector(() => [
    {
      name: "shared",
      help: "ignored",
      type: "gauge",
      samples: [{ labels: { who: "collector" }, value: 2 }],
    },
    { name: "idetcd_claimed_id", help: "The ID.", type: "gauge", samples: [{ value: claimed }] },
  ]);
  r.registerCollector(() => "# TYPE raw_metric untyped\nraw_metric 9");
  r.registerCollector(() => {
    throw new Error("mirror gone");
  });
  const text = r.render();
  assert.match(
    text,
    /^# HELP shared Owned\.\n# TYPE shared gauge\nshared\{who="owner"\} 1\nshared\{who="collector"\} 2$/m,
  );
  assert.match(text, /^idetcd_claimed_id 3$/m);
  assert.match(text, /^# collector failed: mirror gone$/m);
  assert.ok(text.endsWith("# TYPE raw_metric untyped\nraw_metric 9\n"));
  claimed = 4;
  assert.match(r.render(), /^idetcd_claimed_id 4$/m);
  unregister();
  assert.doesNotMatch(r.render(), /idetcd_claimed_id/);
});
