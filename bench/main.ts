/**
 * `deno task bench`: idetcd against Knot and against the original idetcd's
 * algorithm, measured side by side in one run (see bench/README.md).
 *
 *     deno run -A bench/main.ts [--quick] [--only SECTION[,SECTION]] [--out FILE] [--write-results]
 *
 * Sections: throughput, storm, propagation, memory, scale. Prints a Markdown table of
 * every figure at the end; only `--write-results` (a full run) rewrites the
 * tracked bench/results.md, and `--out FILE` writes it anywhere. Exits 0 when every section ran (targets are reported,
 * never asserted), 1 when a section failed, 2 on bad flags, 3 when the tools
 * are missing and cannot be installed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { cleanUpOnSignals, disposeAll, Scope } from "./lib/cleanup.ts";
import { type Context, FULL, QUICK, type Settings } from "./lib/context.ts";
import { renderReport, type Report, type Table } from "./lib/report.ts";
import { describeMachine, ensureTools } from "./lib/tools.ts";
import { throughput } from "./sections/throughput.ts";
import { storm } from "./sections/storm.ts";
import { propagation } from "./sections/propagation.ts";
import { scale } from "./sections/scale.ts";
import { memory } from "./sections/memory.ts";
import { Targets } from "./lib/targets.ts";

const SECTIONS = ["throughput", "storm", "propagation", "memory", "scale"] as const;
type Section = typeof SECTIONS[number];

const USAGE = `usage: deno task bench [--quick] [--only ${
  SECTIONS.join("|")
}[,...]] [--out FILE] [--write-results]
  --quick         short durations and small sizes (the CI smoke, under a minute)
  --only S[,S]    run only these sections (repeatable)
  --out FILE      also write the Markdown report to FILE
  --write-results also write it to bench/results.md, the tracked record of a full run
                  (not with --quick or --only); nothing is written without one of these two
  --seconds N     dnsperf seconds per throughput run
  --rounds N      interleaved throughput rounds (the median is reported)
  --clients N     dnsperf -c (simulated clients)
  --outstanding N dnsperf -q (queries in flight)`;

function fail(message: string): never {
  console.error(`bench: ${message}\n${USAGE}`);
  Deno.exit(2);
}

function positive(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) fail(`${flag} needs a positive number, got '${value}'`);
  return n;
}

/** The 1-minute load average, or "?" where /proc/loadavg is not there. */
async function loadAverage(): Promise<string> {
  try {
    return (await Deno.readTextFile("/proc/loadavg")).split(" ")[0];
  } catch {
    return "?";
  }
}

async function main(): Promise<number> {
  // `deno task bench -- --help` passes the `--` on; without this, parseArgs takes
  // everything after it for positionals and refuses them.
  const args = Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args;
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        quick: { type: "boolean", default: false },
        only: { type: "string", multiple: true },
        out: { type: "string" },
        "write-results": { type: "boolean", default: false },
        seconds: { type: "string" },
        rounds: { type: "string" },
        clients: { type: "string" },
        outstanding: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
      allowPositionals: false,
    });
  } catch (err) {
    fail((err as Error).message);
  }
  const { values } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const only = (values.only ?? []).flatMap((s) => s.split(",")).map((s) => s.trim()).filter(
    Boolean,
  );
  for (const s of only) {
    if (!(SECTIONS as readonly string[]).includes(s)) fail(`unknown section '${s}'`);
  }
  const selected: Section[] = only.length > 0
    ? SECTIONS.filter((s) => only.includes(s))
    : [...SECTIONS];
  const base = values.quick ? QUICK : FULL;
  const settings: Settings = {
    ...base,
    seconds: positive(values.seconds, "--seconds") ?? base.seconds,
    rounds: Math.round(positive(values.rounds, "--rounds") ?? base.rounds),
    shape: {
      clients: Math.round(positive(values.clients, "--clients") ?? base.shape.clients),
      outstanding: Math.round(
        positive(values.outstanding, "--outstanding") ?? base.shape.outstanding,
      ),
    },
  };
  // bench/results.md is tracked and quoted by the READMEs: only an explicit flag rewrites it,
  // and only with a full run's figures.
  const writeResults = values["write-results"];
  if (writeResults && (values.quick || only.length > 0)) {
    fail("--write-results records a full run; leave out --quick and --only (or use --out FILE)");
  }
  const outs = [
    ...(values.out ? [values.out] : []),
    ...(writeResults ? [new URL("./results.md", import.meta.url).pathname] : []),
  ];

  const started = performance.now();
  const log = (message: string) =>
    console.error(
      `[bench ${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${message}`,
    );

  let tools;
  try {
    tools = await ensureTools();
  } catch (err) {
    console.error(`bench: ${(err as Error).message}`);
    return 3;
  }

  await using root = new Scope();
  const tmp = await Deno.makeTempDir({ prefix: "idetcd-bench-" });
  root.defer(() => Deno.remove(tmp, { recursive: true }).catch(() => {}));
  // Every temp dir below (etcd's data too) lands in this one, removed at exit.
  Deno.env.set("TMPDIR", tmp);

  const targets = new Targets();
  const ctx: Context = { settings, quick: values.quick, tools, tmp, log, targets };
  const loadStart = await loadAverage();
  if (!tools.coredns) log("COREDNS_BIN unset: the CoreDNS runs are skipped (bench/README.md)");
  const report: Report = {
    command: ["deno task bench", ...args].join(" "),
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    machine: await describeMachine(tools),
    tables: [],
    failures: [],
    appendix: [],
  };

  const run = async (name: Section, body: () => Promise<Table[]>) => {
    if (!selected.includes(name)) return;
    log(`${name}: start`);
    try {
      report.tables.push(...await body());
    } catch (err) {
      const message = (err as Error)?.stack ?? String(err);
      log(`${name}: FAILED: ${message}`);
      report.failures.push(`${name}: ${(err as Error)?.message?.split("\n")[0] ?? err}`);
    }
    log(`${name}: done`);
  };

  await run("throughput", async () => {
    const result = await throughput(ctx);
    report.appendix!.push(...result.appendix);
    return result.tables;
  });
  await run("storm", () => storm(ctx));
  await run("propagation", () => propagation(ctx));
  await run("memory", () => memory(ctx));
  await run("scale", () => scale(ctx));

  // Every figure with a target in the issue, first, next to its target.
  report.load = { start: loadStart, end: await loadAverage() };
  const targetTable = targets.table();
  if (targetTable) report.tables.unshift(targetTable);
  const text = renderReport(report);
  console.log(text);
  for (const out of outs) {
    await Deno.writeTextFile(out, text);
    // Formatted as `deno fmt` would, so `deno task check` stays clean after a run.
    await new Deno.Command(Deno.execPath(), { args: ["fmt", "--quiet", out] }).output()
      .catch(() => {});
    log(`wrote ${out}`);
  }
  log(`finished in ${((performance.now() - started) / 1000).toFixed(0)} s`);
  return report.failures.length > 0 ? 1 : 0;
}

const removeSignalHandlers = cleanUpOnSignals();
let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(`bench: ${(err as Error)?.stack ?? err}`);
} finally {
  await disposeAll();
  removeSignalHandlers();
}
// etcd clients keep timers; exit instead of waiting for them.
Deno.exit(code);
