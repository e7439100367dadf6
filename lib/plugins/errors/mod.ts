/**
 * errors: logs the errors the rest of the chain reports, as CoreDNS's errors plugin.
 *
 * @module
 */

import { type Dispenser, onlyOnce } from "../../corefile/dispenser.ts";
import { parseDuration } from "../../go/time.ts";
import { typeToString } from "../../dns/types.ts";
import type { Logger } from "../../log.ts";
import type { Plugin, PluginDefinition } from "../../server/plugin.ts";
// Go's time.Duration.String, for the period as CoreDNS prints it ("30s", "5m0s", "500ms").
import { formatGoDuration } from "../../go/time.ts";

/** One `consolidate DURATION REGEXP [level] [show_first]` rule. */
interface Consolidation {
  pattern: RegExp;
  source: string;
  periodMs: number;
  level: "warning" | "error" | "info" | "debug";
  showFirst: boolean;
  count: number;
  timer?: ReturnType<typeof setTimeout>;
}

function parseConsolidate(line: Dispenser): Consolidation {
  const args = line.args.map((a) => a.text);
  if (args.length < 2 || args.length > 4) throw line.argErr();
  let periodMs: number;
  try {
    periodMs = parseDuration(args[0]) * 1000;
  } catch (err) {
    throw line.err((err as Error).message, line.args[0]);
  }
  let pattern: RegExp;
  try {
    pattern = new RegExp(args[1]);
  } catch (err) {
    throw line.err(`invalid regexp: ${(err as Error).message}`, line.args[1]);
  }
  let level: Consolidation["level"] = "error";
  let showFirst = false;
  for (const extra of args.slice(2)) {
    if (extra === "show_first") showFirst = true;
    else if (["warning", "error", "info", "debug"].includes(extra)) {
      level = extra as Consolidation["level"];
    } else {
      throw line.err(`unknown log level argument in consolidate: ${extra}`, line.name);
    }
  }
  return { pattern, source: args[1], periodMs, level, showFirst, count: 0 };
}

function emit(log: Logger, level: Consolidation["level"], msg: string) {
  if (level === "warning") log.warning(msg);
  else if (level === "info") log.info(msg);
  else if (level === "debug") log.debug(msg);
  else log.error(msg);
}

/**
 * The errors directive: `errors { stacktrace; consolidate DURATION REGEXP [LEVEL] [show_first] }`.
 *
 * As CoreDNS's: each error is one line, `RCODE NAME TYPE: TEXT` (the name
 * lower-cased); an error whose TEXT matches a `consolidate` pattern (the
 * first that matches) is counted instead, and DURATION after the first of a run one
 * line says how many there were; `show_first` logs that first one at the
 * rule's level (and the summary only when more followed). When the
 * configuration stops, pending counts are logged at once and later errors
 * logged one by one.
 */
export const errorsPlugin: PluginDefinition = {
  name: "errors",
  // It logs only replies that carry an error, and those are never kept.
  perQuery: "passes-through",
  setup(ctx) {
    const d = onlyOnce("errors", ctx.directives);
    // CoreDNS's ArgErr names the directive (the cursor has not moved), at the argument's place.
    if (d.args.length) throw d.err(d.argErr().message, d.args[0]);
    const rules: Consolidation[] = [];
    for (const line of d.blockLines()) {
      if (line.name.text === "stacktrace") continue;
      if (line.name.text === "consolidate") rules.push(parseConsolidate(line));
      else throw line.unknownProperty();
    }
    const log = ctx.log;
    let stopped = false;
    /** CoreDNS's logPattern: the run's summary, unless show_first already logged its only error. */
    const summarize = (rule: Consolidation) => {
      clearTimeout(rule.timer);
      rule.timer = undefined;
      const n = rule.count;
      rule.count = 0;
      if (n > 1 || (n === 1 && !rule.showFirst)) {
        emit(
          log,
          rule.level,
          `${n} errors like '${rule.source}' occurred in last ${
            formatGoDuration(rule.periodMs / 1000)
          }`,
        );
      }
    };
    ctx.onShutdown(() => {
      stopped = true;
      for (const rule of rules) if (rule.timer !== undefined) summarize(rule);
    });
    /** One error: `line` is what is logged, `error` (the error's own text) what patterns match. */
    const report = (line: string, error: string) => {
      const rule = rules.find((r) => r.pattern.test(error));
      if (!rule) {
        log.error(line);
        return;
      }
      if (stopped) {
        emit(log, rule.level, line);
        return;
      }
      rule.count++;
      if (rule.count === 1) {
        if (rule.showFirst) emit(log, rule.level, line);
        rule.timer = setTimeout(() => summarize(rule), rule.periodMs);
      }
    };
    const plugin: Plugin = {
      name: "errors",
      async serve(req, next) {
        const reply = await next(req);
        if (reply.error) {
          const type = typeToString(req.question.type);
          report(`${reply.rcode} ${req.qname} ${type}: ${reply.error}`, reply.error);
        }
        return reply;
      },
    };
    return plugin;
  },
};
