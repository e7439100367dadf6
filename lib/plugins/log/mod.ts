/**
 * log: one line per query, in CoreDNS's formats, filtered by name and response class.
 *
 * @module
 */

import { type Dispenser, dispensers } from "../../corefile/dispenser.ts";
import { normalizeZones } from "../../corefile/keys.ts";
import { isSubdomain } from "../../dns/name.ts";
import { formatFloat } from "../../go/strconv.ts";
import { classToString, Rcode, rcodeToString, Type, typeToString } from "../../dns/types.ts";
import type { Plugin, PluginDefinition, Request, Written } from "../../server/plugin.ts";

/** CoreDNS's `{common}` format. */
export const COMMON_FORMAT: string =
  '{remote}:{port} - {>id} "{type} {class} {name} {proto} {size} {>do} {>bufsize}" {rcode} {>rflags} {rsize} {duration}';
/** CoreDNS's `{combined}` format. */
export const COMBINED_FORMAT: string = COMMON_FORMAT + ' "{>opcode}"';

/** Response classes a rule can select. */
export type ResponseClass = "success" | "denial" | "error";

/** CoreDNS's response.Classify(Typify(msg)). */
export function classify(written: Written): ResponseClass {
  const m = written.message;
  if (m.answer.length > 0 && m.rcode === Rcode.Success) return "success";
  const soa = m.authority.some((r) => r.type === Type.SOA);
  const ns = m.authority.some((r) => r.type === Type.NS);
  if (soa && (m.rcode === Rcode.Success || m.rcode === Rcode.NameError)) return "denial";
  if (m.rcode === Rcode.NameError) return "denial";
  if (ns && m.rcode === Rcode.Success) return "success";
  if (m.rcode === Rcode.Success) return "success";
  return "error";
}

/** The flags text of a reply: "qr,aa,rd". */
export function replyFlags(w: Written): string {
  const flags = ["qr"];
  if (w.authoritative) flags.push("aa");
  if (w.truncated) flags.push("tc");
  if (w.recursionDesired) flags.push("rd");
  if (w.recursionAvailable) flags.push("ra");
  if (w.authenticData) flags.push("ad");
  if (w.checkingDisabled) flags.push("cd");
  return flags.join(",");
}

/**
 * CoreDNS's `{duration}`: Go's strconv.FormatFloat(seconds, 'f', -1, 64) +
 * "s" for a duration in ms, first rounded to whole nanoseconds (a Go
 * Duration's resolution), so that "0.000161s" has no float noise.
 */
export function formatDuration(ms: number): string {
  return `${formatFloat(Number((ms / 1000).toFixed(9)), "f")}s`;
}

/** One placeholder's value for a query and its reply (`elapsedMs` feeds `{duration}`). */
export type Field = (req: Request, w: Written, elapsedMs: number) => string;

const bracketed = (address: string) => (address.includes(":") ? `[${address}]` : address);

/** CoreDNS's placeholders. */
const FIELDS: Readonly<Record<string, Field>> = {
  type: (req) => typeToString(req.question.type),
  name: (req) => req.qname,
  class: (req) => classToString(req.question.class),
  proto: (req) => req.transport,
  remote: (req) => bracketed(req.remoteAddress),
  port: (req) => String(req.remotePort),
  local: (req) => bracketed(req.localAddress),
  size: (req) => String(req.size),
  rcode: (_, w) => rcodeToString(w.rcode),
  rsize: (_, w) => String(w.size),
  duration: (_, __, ms) => formatDuration(ms),
  ">id": (req) => String(req.id),
  ">opcode": (req) => String(req.opcode),
  ">do": (req) => String(req.edns?.dnssecOk ?? false),
  // CoreDNS's state.Size(): 64K over TCP, else the EDNS0 size (at least 512).
  ">bufsize": (req) =>
    String(req.transport === "tcp" ? 65535 : Math.max(512, req.edns?.udpSize ?? 512)),
  ">rflags": (_, w) => replyFlags(w),
  "/zone": (req) => req.zone,
};

/** A format split once into literal text and placeholders, so a line costs only its fields. */
export type Template = readonly (string | Field)[];

/** Splits `format` ({common} and {combined} expanded; unknown placeholders stay as text). */
export function compileFormat(format: string): Template {
  const expanded = format.replace(
    /\{(common|combined)\}/g,
    (_, f) => f === "common" ? COMMON_FORMAT : COMBINED_FORMAT,
  );
  const parts: (string | Field)[] = [];
  let last = 0;
  for (const m of expanded.matchAll(/\{([>/]?[a-z]+)\}/g)) {
    const field = FIELDS[m[1]];
    if (!field) continue;
    if (m.index > last) parts.push(expanded.slice(last, m.index));
    parts.push(field);
    last = m.index + m[0].length;
  }
  if (last < expanded.length) parts.push(expanded.slice(last));
  return parts;
}

/** One line of `template` for a query and its reply. */
export function renderLine(
  template: Template,
  req: Request,
  w: Written,
  elapsedMs: number,
): string {
  let line = "";
  for (const part of template) line += typeof part === "string" ? part : part(req, w, elapsedMs);
  return line;
}

/** Fills a format's placeholders for one query and its reply. */
export function formatLine(format: string, req: Request, w: Written, elapsedMs: number): string {
  return renderLine(compileFormat(format), req, w, elapsedMs);
}

interface Rule {
  names: string[];
  template: Template;
  classes: Set<ResponseClass>;
}

function parseRule(d: Dispenser, zones: string[]): Rule {
  const args = d.args.map((a) => a.text);
  let format = COMMON_FORMAT;
  let names = args;
  // With two or more arguments the last is the format when it holds a placeholder.
  if (args.length >= 2 && args[args.length - 1].includes("{")) {
    format = args[args.length - 1];
    names = args.slice(0, -1);
  }
  const classes = new Set<ResponseClass>();
  for (const line of d.blockLines()) {
    if (line.name.text !== "class") throw line.unknownProperty();
    if (line.args.length === 0) throw line.argErr();
    for (const a of line.args) {
      const c = a.text.toLowerCase();
      if (c === "all") {
        ["success", "denial", "error"].forEach((x) => classes.add(x as ResponseClass));
      } else if (c === "success" || c === "denial" || c === "error") classes.add(c);
      else throw line.err(`invalid class: ${a.text}`, a);
    }
  }
  if (classes.size === 0) {
    ["success", "denial", "error"].forEach((x) => classes.add(x as ResponseClass));
  }
  const normalized = names.length ? normalizeZones(names) : ["."];
  return {
    names: normalized.length ? normalized : zones,
    template: compileFormat(format),
    classes,
  };
}

/** The log directive: `log [NAMES...] [FORMAT] { class success|denial|error|all }`, repeatable. */
export const logPlugin: PluginDefinition = {
  name: "log",
  // One line per query: every query it sees must run the chain.
  perQuery: "needs-full-path",
  setup(ctx) {
    const rules = dispensers("log", ctx.directives).map((d) => parseRule(d, ctx.zones));
    const log = ctx.log.child("");
    const plugin: Plugin = {
      name: "log",
      serve(req, next) {
        // The common case, one rule: no array per query.
        const matching = rules.length === 1
          ? (rules[0].names.some((n) => isSubdomain(n, req.qname)) ? rules : undefined)
          : rules.filter((r) => r.names.some((n) => isSubdomain(n, req.qname)));
        if (!matching || matching.length === 0) return next(req);
        const started = performance.now();
        req.observe((w) => {
          const elapsed = performance.now() - started;
          const cls = classify(w);
          for (const rule of matching) {
            if (rule.classes.has(cls)) log.info(renderLine(rule.template, req, w, elapsed));
          }
        });
        return next(req);
      },
    };
    return plugin;
  },
};
