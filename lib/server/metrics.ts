/**
 * A small, process-wide Prometheus registry rendering the text exposition
 * format 0.0.4 (what the `prometheus` plugin serves on /metrics).
 *
 * Two ways to contribute metrics:
 *
 * 1. **Owned metrics** — create them once and update them as things happen:
 *    ```ts
 *    import { counter, gauge, histogram } from "../../server/metrics.ts";
 *    const writes = counter({
 *      name: "idetcd_claim_writes_total",
 *      help: "Transactions sent to etcd by the claim.",
 *      labelNames: ["result"],
 *    });
 *    writes.inc({ result: "ok" });
 *    ```
 *    Creating a metric whose name already exists with the same type and
 *    label names returns the existing one, so setup code may run on every
 *    reload. A clash (other type or labels) throws.
 *
 * 2. **Collectors** — for state a plugin already holds (the etcd mirror's
 *    revision, the idetcd claim's ID), read it at scrape time:
 *    ```ts
 *    import { registerCollector } from "../../server/metrics.ts";
 *    const unregister = registerCollector(() => [{
 *      name: "idetcd_claimed_id",
 *      help: "The claimed node ID (-1 while unclaimed).",
 *      type: "gauge",
 *      samples: [{ labels: { name: claim.name }, value: claim.id ?? -1 }],
 *    }]);
 *    ctx.onShutdown(unregister); // or the shared object's close()
 *    ```
 *    A collector returns {@link MetricFamily} objects (merged with other
 *    families of the same name) or ready-made exposition text. One that
 *    throws is skipped for that scrape, with a `#` comment saying why.
 *
 * Names and label names are validated; label values are escaped. Families
 * render sorted by name, series by label values; a labelled metric with no
 * series yet renders nothing (as Go's client does), an unlabelled one
 * renders 0.
 *
 * @module
 */

import { formatFloat } from "../go/strconv.ts";

/** Label name -> value for one series. */
export type Labels = Readonly<Record<string, string>>;

/** The metric types of the text format. */
export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

/** One line of a family: `name{labels} value`. */
export interface Sample {
  /** Appended to the family name (e.g. "_bucket", "_sum", "_count" for histograms); default "". */
  suffix?: string;
  /** This series' label values; omitted for a metric without labels. */
  labels?: Labels;
  /** The sample's number, written with Go's float formatting ({@link formatValue}). */
  value: number;
}

/** A metric family as a collector reports it. */
export interface MetricFamily {
  /** Full metric name, e.g. "coredns_dns_requests_total". */
  name: string;
  /** The HELP text. */
  help: string;
  /** Written on the TYPE line; scrapers use it to interpret the samples. */
  type: MetricType;
  /** Every series of the family, written after its HELP and TYPE lines. */
  samples: Sample[];
}

/** Something that reports metrics at scrape time. */
export type Collector = () => string | MetricFamily[];

/** Common options of owned metrics. */
export interface MetricOptions<L extends string> {
  /** Full metric name, e.g. "coredns_panics_total". */
  name: string;
  /** The HELP text. */
  help: string;
  /** Label names, in exposition order; omit for a single unlabelled series. */
  labelNames?: readonly L[];
}

/** Options of a histogram. */
export interface HistogramOptions<L extends string> extends MetricOptions<L> {
  /** Upper bounds (inclusive), ascending; +Inf is implied. */
  buckets: readonly number[];
}

/** The Content-Type of the rendered text. */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** Prometheus client_golang's ExponentialBuckets(start, factor, count). */
export function exponentialBuckets(start: number, factor: number, count: number): number[] {
  const out: number[] = [];
  let v = start;
  for (let i = 0; i < count; i++, v *= factor) out.push(v);
  return out;
}

/** CoreDNS's plugin.TimeBuckets: 0.25 ms doubling to 8.192 s. */
export const TIME_BUCKETS: readonly number[] = exponentialBuckets(0.00025, 2, 16);

/** CoreDNS's plugin.SlimTimeBuckets: 0.25 ms to 2.5 s by tens. */
export const SLIM_TIME_BUCKETS: readonly number[] = exponentialBuckets(0.00025, 10, 5);

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Go's strconv.FormatFloat(v, 'g', -1, 64), which client_golang uses for values and `le`. */
export function formatValue(v: number): string {
  return formatFloat(v, "g");
}

function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatLabels(labels: Labels | undefined): string {
  if (!labels) return "";
  const keys = Object.keys(labels);
  if (keys.length === 0) return "";
  return `{${keys.map((k) => `${k}="${escapeLabelValue(labels[k])}"`).join(",")}}`;
}

function checkMetricName(name: string): void {
  if (!METRIC_NAME.test(name)) throw new Error(`metrics: invalid metric name "${name}"`);
}

function checkLabelNames(metric: string, names: readonly string[]): void {
  const seen = new Set<string>();
  for (const n of names) {
    if (!LABEL_NAME.test(n) || n.startsWith("__")) {
      throw new Error(`metrics: ${metric}: invalid label name "${n}"`);
    }
    if (seen.has(n)) throw new Error(`metrics: ${metric}: duplicate label name "${n}"`);
    seen.add(n);
  }
}

/** Shared bookkeeping of owned metrics: label validation and series storage. */
export abstract class Metric<L extends string, S> {
  /** The family name, validated against the text format's rules. */
  readonly name: string;
  /** The HELP text. */
  readonly help: string;
  /** Labels every series must give, in the order series keys are built from. */
  readonly labelNames: readonly L[];
  /** The TYPE a family of this metric is written with. */
  abstract readonly type: MetricType;
  /** Series by their label values (JSON of the ordered values). */
  protected series = new Map<string, { labels: Labels; state: S }>();

  /** Throws on a name or label name the text format does not allow. */
  constructor(options: MetricOptions<L>) {
    checkMetricName(options.name);
    this.name = options.name;
    this.help = options.help;
    this.labelNames = [...(options.labelNames ?? [])];
    checkLabelNames(options.name, this.labelNames);
  }

  /** The state a new (or reset) series starts from. */
  protected abstract initial(): S;

  /** Orders and validates `labels`; throws on a missing or unknown label. */
  protected key(labels: Partial<Record<L, string>> | undefined): [string, Labels] {
    const given = (labels ?? {}) as Record<string, string | undefined>;
    const ordered: Record<string, string> = {};
    for (const n of this.labelNames) {
      const v = given[n];
      if (typeof v !== "string") throw new Error(`metrics: ${this.name}: missing label "${n}"`);
      ordered[n] = v;
    }
    for (const k of Object.keys(given)) {
      if (!(this.labelNames as readonly string[]).includes(k)) {
        throw new Error(`metrics: ${this.name}: unknown label "${k}"`);
      }
    }
    return [JSON.stringify(this.labelNames.map((n) => ordered[n])), ordered];
  }

  /** The state of the series `labels`, created on first use. */
  protected state(labels: Partial<Record<L, string>> | undefined): S {
    const [key, ordered] = this.key(labels);
    let entry = this.series.get(key);
    if (!entry) {
      entry = { labels: ordered, state: this.initial() };
      this.series.set(key, entry);
    }
    return entry.state;
  }

  /**
   * The state of one series, resolved once: what a hot path holds instead
   * of labels, so that counting costs no label ordering or key building. It
   * finds the series again when it was dropped (remove, reset) meanwhile.
   */
  protected bound(labels: Partial<Record<L, string>> | undefined): () => S {
    const [key, ordered] = this.key(labels);
    let entry: { labels: Labels; state: S } | undefined;
    return () => {
      if (entry === undefined || this.series.get(key) !== entry) {
        entry = this.series.get(key);
        if (!entry) {
          entry = { labels: ordered, state: this.initial() };
          this.series.set(key, entry);
        }
      }
      return entry.state;
    };
  }

  /** Drops one series; true when it existed. */
  remove(labels?: Record<L, string>): boolean {
    return this.series.delete(this.key(labels)[0]);
  }

  /** Drops every series (CoreDNS resets plugin_enabled on reload). */
  reset(): void {
    this.series.clear();
  }

  /** The samples of every series, sorted by label values. */
  protected sorted(): { labels: Labels; state: S }[] {
    const entries = [...this.series.entries()].sort((
      a,
      b,
    ) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    if (entries.length === 0 && this.labelNames.length === 0) {
      return [{ labels: {}, state: this.initial() }];
    }
    return entries.map(([, e]) => e);
  }

  /** This metric as a family (what render() writes). */
  abstract collect(): MetricFamily;
}

/** A metric whose series each hold one number (counters and gauges). */
export abstract class ValueMetric<L extends string> extends Metric<L, { value: number }> {
  /** Every series starts at 0. */
  protected initial(): { value: number } {
    return { value: 0 };
  }

  /** The current value of a series (0 when it does not exist yet). */
  get(labels?: Record<L, string>): number {
    return this.series.get(this.key(labels)[0])?.state.value ?? 0;
  }

  /** This metric as a family. */
  collect(): MetricFamily {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      samples: this.sorted().map((e) => ({ labels: e.labels, value: e.state.value })),
    };
  }
}

/** A monotonically increasing count. */
export class Counter<L extends string = never> extends ValueMetric<L> {
  /** Written as `# TYPE name counter`. */
  readonly type = "counter" as const;

  /** Adds `by` (default 1, never negative) to the series `labels`. */
  inc(labels?: Record<L, string>, by = 1): void {
    if (!(by >= 0)) throw new Error(`metrics: ${this.name}: counters cannot decrease`);
    this.state(labels).value += by;
  }

  /** The series `labels` as a handle whose `inc` skips the label work (hot paths). */
  bind(labels?: Record<L, string>): { inc(by?: number): void } {
    const state = this.bound(labels);
    const name = this.name;
    return {
      inc(by = 1) {
        if (!(by >= 0)) throw new Error(`metrics: ${name}: counters cannot decrease`);
        state().value += by;
      },
    };
  }
}

/** A value that goes up and down. */
export class Gauge<L extends string = never> extends ValueMetric<L> {
  /** Written as `# TYPE name gauge`. */
  readonly type = "gauge" as const;

  /** Sets the series `labels` to `value`. */
  set(labels: Record<L, string> | undefined, value: number): void {
    this.state(labels).value = value;
  }

  /** Adds `by` (default 1). */
  inc(labels?: Record<L, string>, by = 1): void {
    this.state(labels).value += by;
  }

  /** Subtracts `by` (default 1). */
  dec(labels?: Record<L, string>, by = 1): void {
    this.state(labels).value -= by;
  }
}

/** What one histogram series holds. */
export interface HistogramState {
  /** Non-cumulative count per bucket (same order as the buckets, +Inf last). */
  counts: number[];
  /** Sum of every observed value (the `_sum` sample). */
  sum: number;
  /** Observations so far (the `_count` sample and the +Inf bucket). */
  count: number;
}

/** Observations counted into cumulative buckets, with their sum and count. */
export class Histogram<L extends string = never> extends Metric<L, HistogramState> {
  /** Written as `# TYPE name histogram`. */
  readonly type = "histogram" as const;
  /** Upper bounds, ascending, without +Inf. */
  readonly buckets: readonly number[];

  /** Throws when `le` is a label (the buckets use it) or the buckets do not increase. */
  constructor(options: HistogramOptions<L>) {
    super(options);
    if (this.labelNames.includes("le" as L)) {
      throw new Error(`metrics: ${options.name}: "le" is reserved in histograms`);
    }
    const buckets = options.buckets.filter((b) => b !== Infinity);
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i] > buckets[i - 1])) {
        throw new Error(`metrics: ${options.name}: buckets must be strictly increasing`);
      }
    }
    this.buckets = buckets;
  }

  /** Every bucket, the sum and the count start at 0. */
  protected initial(): HistogramState {
    return { counts: new Array(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  /** Records `value` in the series `labels`. */
  observe(labels: Record<L, string> | undefined, value: number): void {
    this.#record(this.state(labels), value);
  }

  /** The series `labels` as a handle whose `observe` skips the label work (hot paths). */
  bind(labels?: Record<L, string>): { observe(value: number): void } {
    const state = this.bound(labels);
    return { observe: (value) => this.#record(state(), value) };
  }

  #record(s: HistogramState, value: number): void {
    let i = 0;
    while (i < this.buckets.length && value > this.buckets[i]) i++;
    s.counts[i]++;
    s.sum += value;
    s.count++;
  }

  /** A copy of a series' state, or undefined when it has no observation yet. */
  get(labels?: Record<L, string>): HistogramState | undefined {
    const s = this.series.get(this.key(labels)[0])?.state;
    return s ? { counts: [...s.counts], sum: s.sum, count: s.count } : undefined;
  }

  /** This histogram as a family (`_bucket` samples cumulative, then `_sum` and `_count`). */
  collect(): MetricFamily {
    const samples: Sample[] = [];
    for (const { labels, state } of this.sorted()) {
      let cumulative = 0;
      for (let i = 0; i <= this.buckets.length; i++) {
        cumulative += state.counts[i];
        const le = i < this.buckets.length ? formatValue(this.buckets[i]) : "+Inf";
        samples.push({ suffix: "_bucket", labels: { ...labels, le }, value: cumulative });
      }
      samples.push({ suffix: "_sum", labels, value: state.sum });
      samples.push({ suffix: "_count", labels, value: state.count });
    }
    return { name: this.name, help: this.help, type: this.type, samples };
  }
}

/** Any owned metric, whatever its labels: what {@link Registry.get} returns. */
export type AnyMetric = Counter<string> | Gauge<string> | Histogram<string>;

/** Owned metrics plus collectors; {@link registry} is the process's one. */
export class Registry {
  #metrics = new Map<string, AnyMetric>();
  #collectors = new Set<Collector>();

  /** Returns the counter `name`, creating it on first use. */
  counter<L extends string = never>(options: MetricOptions<L>): Counter<L> {
    return this.#register(options, "counter", () => new Counter<L>(options)) as Counter<L>;
  }

  /** Returns the gauge `name`, creating it on first use. */
  gauge<L extends string = never>(options: MetricOptions<L>): Gauge<L> {
    return this.#register(options, "gauge", () => new Gauge<L>(options)) as Gauge<L>;
  }

  /** Returns the histogram `name`, creating it on first use (buckets must then match). */
  histogram<L extends string = never>(options: HistogramOptions<L>): Histogram<L> {
    const h = this.#register(options, "histogram", () => new Histogram<L>(options)) as Histogram<L>;
    const wanted = options.buckets.filter((b) => b !== Infinity);
    if (wanted.length !== h.buckets.length || wanted.some((b, i) => b !== h.buckets[i])) {
      throw new Error(`metrics: ${options.name} is already registered with other buckets`);
    }
    return h;
  }

  #register<L extends string>(
    options: MetricOptions<L>,
    type: MetricType,
    create: () => AnyMetric,
  ): AnyMetric {
    const existing = this.#metrics.get(options.name);
    if (existing) {
      const names = options.labelNames ?? [];
      const same = existing.type === type && existing.labelNames.length === names.length &&
        existing.labelNames.every((n, i) => n === names[i]);
      if (!same) {
        throw new Error(
          `metrics: ${options.name} is already registered as a ${existing.type} with labels ` +
            `[${existing.labelNames.join(",")}]`,
        );
      }
      return existing;
    }
    const metric = create();
    this.#metrics.set(options.name, metric);
    return metric;
  }

  /** The owned metric `name`, if registered. */
  get(name: string): AnyMetric | undefined {
    return this.#metrics.get(name);
  }

  /** Forgets the owned metric `name` (tests; a plugin going away for good). */
  unregister(name: string): boolean {
    return this.#metrics.delete(name);
  }

  /**
   * Adds a scrape-time collector; returns the function that removes it.
   * Registering the same function twice has no extra effect.
   */
  registerCollector(fn: Collector): () => void {
    this.#collectors.add(fn);
    return () => {
      this.#collectors.delete(fn);
    };
  }

  /** The whole registry in the text exposition format 0.0.4. */
  render(): string {
    const families = new Map<string, MetricFamily>();
    const problems: string[] = [];
    const texts: string[] = [];
    const add = (f: MetricFamily) => {
      const known = families.get(f.name);
      if (!known) {
        families.set(f.name, { ...f, samples: [...f.samples] });
      } else if (known.type !== f.type) {
        problems.push(
          `# family ${f.name} reported as ${f.type} and ${known.type}; kept the ${known.type}`,
        );
      } else {
        known.samples.push(...f.samples);
      }
    };
    for (const m of this.#metrics.values()) add(m.collect());
    for (const collect of this.#collectors) {
      try {
        const out = collect();
        if (typeof out === "string") {
          if (out.trim()) texts.push(out.endsWith("\n") ? out : out + "\n");
          continue;
        }
        for (const f of out) {
          checkMetricName(f.name);
          add(f);
        }
      } catch (err) {
        problems.push(
          `# collector failed: ${(err as Error).message ?? String(err)}`.replace(/\n/g, " "),
        );
      }
    }
    const lines: string[] = [];
    for (const f of [...families.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (f.samples.length === 0) continue;
      lines.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
      for (const s of f.samples) {
        lines.push(`${f.name}${s.suffix ?? ""}${formatLabels(s.labels)} ${formatValue(s.value)}`);
      }
    }
    lines.push(...problems);
    const body = lines.length ? lines.join("\n") + "\n" : "";
    return body + texts.join("");
  }
}

/**
 * The process-wide registry the `prometheus` plugin serves. Process-wide by
 * design, as client_golang's default registry: one /metrics page shows every
 * server and client of the process (a reload's old and new configuration
 * report into the same families), and what reports into it unregisters
 * itself when it goes (collectors return their own unregister). Tests that
 * need a clean slate make a `new Registry()`.
 */
export const registry: Registry = new Registry();

/** {@link Registry.counter} on the process registry. */
export function counter<L extends string = never>(options: MetricOptions<L>): Counter<L> {
  return registry.counter(options);
}

/** {@link Registry.gauge} on the process registry. */
export function gauge<L extends string = never>(options: MetricOptions<L>): Gauge<L> {
  return registry.gauge(options);
}

/** {@link Registry.histogram} on the process registry. */
export function histogram<L extends string = never>(options: HistogramOptions<L>): Histogram<L> {
  return registry.histogram(options);
}

/** {@link Registry.registerCollector} on the process registry; returns the unregister function. */
export function registerCollector(fn: Collector): () => void {
  return registry.registerCollector(fn);
}

/** {@link Registry.render} of the process registry. */
export function render(): string {
  return registry.render();
}
