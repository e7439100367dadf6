import assert from "node:assert/strict";
import { parsePattern, PatternError } from "./pattern.ts";

Deno.test("pattern: {{.ID}} renders and parses back", () => {
  const p = parsePattern("worker{{.ID}}.tf.local.");
  assert.equal(p.zone, "tf.local.");
  assert.equal(p.render(4), "worker4.tf.local.");
  assert.equal(p.render(12), "worker12.tf.local.");
  assert.equal(p.parse("worker4.tf.local."), 4);
  assert.equal(p.parse("WORKER12.TF.LOCAL"), 12, "any case, trailing dot optional");
  for (
    const bad of [
      "worker04.tf.local.",
      "worker0.tf.local.",
      "worker.tf.local.",
      "worker4.tf.local.x.",
    ]
  ) {
    assert.equal(p.parse(bad), undefined, bad);
  }
  assert.equal(p.parse("a.worker4.tf.local."), undefined);
  assert.equal(p.parse("worker4x.tf.local."), undefined);
  assert.equal(p.parse("tf.local."), undefined);
});

Deno.test("pattern: spellings of the action", () => {
  assert.equal(parsePattern("worker{{ .ID }}.tf.local").render(3), "worker3.tf.local.");
  assert.equal(parsePattern("worker{{- .ID -}}.tf.local.").render(3), "worker3.tf.local.");
  assert.equal(parsePattern('worker{{printf "%d" .ID}}.tf.local.').render(3), "worker3.tf.local.");
  const padded = parsePattern('worker{{printf "%02d" .ID}}.tf.local.');
  assert.equal(padded.render(3), "worker03.tf.local.");
  assert.equal(padded.render(123), "worker123.tf.local.");
  assert.equal(padded.parse("worker03.tf.local."), 3);
  assert.equal(padded.parse("worker3.tf.local."), undefined, "only the canonical spelling");
  assert.equal(parsePattern('w{{.ID | printf "%03d"}}.x.').render(7), "w007.x.");
  assert.equal(parsePattern("w{{printf `%d` .ID}}.x.").render(7), "w7.x.");
  const hex = parsePattern('node-{{printf "%x" .ID}}.Cluster.Example.');
  assert.equal(hex.render(255), "node-ff.cluster.example.", "lower-cased");
  assert.equal(hex.parse("node-ff.cluster.example."), 255);
  assert.equal(parsePattern('{{printf "gpu%02d" .ID}}-a.tf.local.').render(5), "gpu05-a.tf.local.");
  assert.equal(parsePattern("{{.ID}}.tf.local.").parse("17.tf.local."), 17);
});

Deno.test("pattern: clear errors", () => {
  const cases: [string, RegExp][] = [
    ["", /^pattern: empty pattern/],
    ["worker.tf.local.", /has no \{\{\.ID\}\} action/],
    [
      "worker{{.Name}}.tf.local.",
      /^pattern: unsupported template action \{\{\.Name\}\}; use \{\{\.ID\}\} or \{\{printf "%02d" \.ID\}\}$/,
    ],
    ["worker{{.ID}}{{.ID}}.tf.local.", /more than one action/],
    ["worker{{.ID.tf.local.", /unclosed action/],
    ["tf.worker{{.ID}}.local.", /must be in the first label/],
    ["worker{{.ID}}", /no zone/],
    ["worker{{.ID}}.", /no zone/],
    ['worker{{printf "%3d" .ID}}.tf.local.', /pads with spaces/],
    ['worker{{printf "%s" .ID}}.tf.local.', /unsupported printf verb %s/],
    ['worker{{printf "%d-%d" .ID}}.tf.local.', /exactly once/],
    ["wor ker{{.ID}}.tf.local.", /letters, digits/],
    ["worker{{.ID}}.tf..local.", /empty label/],
  ];
  for (const [text, expected] of cases) {
    assert.throws(() => parsePattern(text), (err: Error) => {
      assert.ok(err instanceof PatternError, text);
      assert.match(err.message, expected, text);
      return true;
    });
  }
  const p = parsePattern(`${"a".repeat(60)}{{.ID}}.tf.local.`);
  p.validateLimit(999);
  assert.throws(() => p.validateLimit(9999), /longer than 63/);
});
