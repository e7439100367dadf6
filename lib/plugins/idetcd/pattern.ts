/**
 * The name pattern: the small subset of Go's text/template that idetcd's
 * `pattern` directive accepts (`worker{{.ID}}.tf.local.`), with its inverse.
 *
 * The one action must sit in the leftmost label; the labels after it are the
 * zone the plugin answers for.
 *
 * @module
 */

import { fqdn, lowerName } from "../../dns/name.ts";

/** A pattern the user wrote that idetcd cannot use; the message starts with "pattern: ". */
export class PatternError extends Error {
  /** An error whose message is "pattern: " followed by `message`. */
  constructor(message: string) {
    super(`pattern: ${message}`);
    this.name = "PatternError";
  }
}

/** How the ID is printed: Go's %d / %x with optional zero padding. */
interface IdFormat {
  /** Minimum number of digits (zero padded); 0 when unpadded. */
  width: number;
  radix: 10 | 16;
}

const SUPPORTED_HINT = 'use {{.ID}} or {{printf "%02d" .ID}}';

/** Parses the inside of one `{{ ... }}` action into the ID's format and any literal text around it. */
function parseAction(inner: string): { format: IdFormat; before: string; after: string } {
  // Trim markers ({{- and -}}) only affect surrounding whitespace, which a name cannot hold.
  const body = inner.replace(/^-\s/, "").replace(/\s-$/, "").trim();
  if (body === ".ID") return { format: { width: 0, radix: 10 }, before: "", after: "" };
  const call = /^printf\s+("(?:[^"\\]|\\.)*"|`[^`]*`)\s+\.ID$/.exec(body) ??
    /^\.ID\s*\|\s*printf\s+("(?:[^"\\]|\\.)*"|`[^`]*`)$/.exec(body);
  if (!call) throw new PatternError(`unsupported template action {{${inner}}}; ${SUPPORTED_HINT}`);
  const quoted = call[1];
  const text = quoted.startsWith("`") ? quoted.slice(1, -1) : JSON.parse(quoted) as string;
  const verbs = [...text.matchAll(/%[^a-zA-Z%]*[a-zA-Z%]/g)].filter((m) => m[0] !== "%%");
  if (verbs.length !== 1) {
    throw new PatternError(
      `printf format ${quoted} must print .ID exactly once; ${SUPPORTED_HINT}`,
    );
  }
  const verb = verbs[0];
  const spec = /^%(0?)(\d*)([dxX])$/.exec(verb[0]);
  if (!spec) {
    throw new PatternError(
      `unsupported printf verb ${verb[0]} in ${quoted}; use %d, %0Nd or %x`,
    );
  }
  if (spec[2] !== "" && spec[1] !== "0") {
    throw new PatternError(
      `${verb[0]} pads with spaces, which a DNS name cannot hold; use %0${spec[2]}${spec[3]}`,
    );
  }
  const literal = (s: string) => s.replaceAll("%%", "%");
  return {
    format: { width: spec[2] === "" ? 0 : Number(spec[2]), radix: spec[3] === "d" ? 10 : 16 },
    before: literal(text.slice(0, verb.index)),
    after: literal(text.slice(verb.index! + verb[0].length)),
  };
}

/** A parsed `pattern`: renders the name of an ID and recognizes names it rendered. */
export class NamePattern {
  /** The pattern as written in the Corefile. */
  readonly source: string;
  /** The zone: every label after the first, lower-cased and fully qualified ("tf.local."). */
  readonly zone: string;
  readonly #prefix: string;
  readonly #suffix: string;
  readonly #format: IdFormat;

  private constructor(
    source: string,
    prefix: string,
    suffix: string,
    format: IdFormat,
    zone: string,
  ) {
    this.source = source;
    this.#prefix = prefix;
    this.#suffix = suffix;
    this.#format = format;
    this.zone = zone;
  }

  /** Parses a pattern such as `worker{{.ID}}.tf.local.`; throws PatternError with the reason. */
  static parse(text: string): NamePattern {
    if (text.trim() === "") throw new PatternError("empty pattern; e.g. worker{{.ID}}.tf.local.");
    const open = text.indexOf("{{");
    if (open < 0) {
      throw new PatternError(
        `${text} has no {{.ID}} action, so every node would claim the same name; e.g. worker{{.ID}}.tf.local.`,
      );
    }
    const close = text.indexOf("}}", open + 2);
    if (close < 0) throw new PatternError(`unclosed action in ${text}`);
    const rest = text.slice(close + 2);
    if (rest.includes("{{")) {
      throw new PatternError(`${text} has more than one action; use {{.ID}} once`);
    }
    if (rest.includes("}}") || text.slice(0, open).includes("}}")) {
      throw new PatternError(`unbalanced braces in ${text}`);
    }
    const head = text.slice(0, open);
    if (head.includes(".")) {
      throw new PatternError(
        `the {{.ID}} action must be in the first label of the name, not in ${text}`,
      );
    }
    const action = parseAction(text.slice(open + 2, close));
    const dot = rest.indexOf(".");
    const tail = dot < 0 ? rest : rest.slice(0, dot);
    const zoneText = dot < 0 ? "" : rest.slice(dot + 1);
    if (zoneText === "" || zoneText === ".") {
      throw new PatternError(
        `${text} has no zone after the first label; e.g. worker{{.ID}}.tf.local.`,
      );
    }
    const zone = lowerName(fqdn(zoneText));
    if (zone.startsWith(".") || zone.includes("..")) {
      throw new PatternError(`empty label in ${text}`);
    }
    const pattern = new NamePattern(
      text,
      lowerName(head + action.before),
      lowerName(action.after + tail),
      action.format,
      zone,
    );
    pattern.#validate(1);
    return pattern;
  }

  /** Checks that the names of IDs 1..`limit` are valid DNS names; throws PatternError otherwise. */
  validateLimit(limit: number): void {
    this.#validate(limit);
  }

  #validate(id: number): void {
    const label = this.#label(id);
    if (!/^[a-z0-9_-]+$/.test(label)) {
      throw new PatternError(
        `${this.source} gives the label "${label}"; use letters, digits, '-' and '_' only`,
      );
    }
    if (label.length > 63) {
      throw new PatternError(`${this.source} gives a label longer than 63 characters`);
    }
    const zoneLabels = this.zone.slice(0, -1).split(".");
    if (zoneLabels.some((l) => l.length === 0 || l.length > 63)) {
      throw new PatternError(`the zone ${this.zone} of ${this.source} is not a valid name`);
    }
    if (label.length + 1 + this.zone.length > 254) {
      throw new PatternError(`${this.source} gives names longer than 253 characters`);
    }
  }

  #label(id: number): string {
    const digits = id.toString(this.#format.radix).padStart(this.#format.width, "0");
    return this.#prefix + digits + this.#suffix;
  }

  /** The fully qualified, lower-case name of `id` ("worker4.tf.local."). */
  render(id: number): string {
    return `${this.#label(id)}.${this.zone}`;
  }

  /**
   * The ID whose name is `name` (any case, with or without the trailing dot),
   * or undefined when `name` is not a name this pattern renders.
   */
  parse(name: string): number | undefined {
    const n = lowerName(fqdn(name));
    if (n.length <= this.zone.length + 1 || !n.endsWith("." + this.zone)) return undefined;
    const label = n.slice(0, n.length - this.zone.length - 1);
    if (label.includes(".")) return undefined;
    if (!label.startsWith(this.#prefix) || !label.endsWith(this.#suffix)) return undefined;
    const digits = label.slice(this.#prefix.length, label.length - this.#suffix.length);
    const shape = this.#format.radix === 10 ? /^[0-9]{1,15}$/ : /^[0-9a-f]{1,12}$/;
    if (!shape.test(digits)) return undefined;
    const id = parseInt(digits, this.#format.radix);
    // Only the canonical spelling counts: "worker04" is not ID 4 under {{.ID}}.
    if (id < 1 || this.#label(id) !== label) return undefined;
    return id;
  }
}

/** Parses a `pattern` argument; throws PatternError ("pattern: ...") when it cannot be used. */
export function parsePattern(text: string): NamePattern {
  return NamePattern.parse(text);
}
