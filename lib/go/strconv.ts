/**
 * Go's strconv where CoreDNS's output or error texts depend on it: Atoi and
 * ParseUint (with their `strconv.Atoi: parsing "x": invalid syntax` errors),
 * Quote (`%q`), and FormatFloat with the shortest precision (`-1`).
 *
 * @module
 */

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Go's *strconv.NumError: `strconv.FN: parsing "TEXT": invalid syntax | value out of range`. */
export class NumError extends Error {
  /** The Go function that failed ("Atoi", "ParseUint"). */
  readonly func: string;
  /** The text it was given. */
  readonly input: string;

  /** Go's `strconv.FUNC: parsing "INPUT": WHY`. */
  constructor(func: string, input: string, why: "invalid syntax" | "value out of range") {
    super(`strconv.${func}: parsing ${quote(input)}: ${why}`);
    this.name = "NumError";
    this.func = func;
    this.input = input;
  }
}

/**
 * Go's strconv.Atoi on a 64-bit platform, exactly: an optional sign, then
 * decimal digits, within int64. Throws {@link NumError}.
 */
export function atoi64(text: string): bigint {
  if (!/^[+-]?[0-9]+$/.test(text)) throw new NumError("Atoi", text, "invalid syntax");
  const n = BigInt(text);
  if (n < INT64_MIN || n > INT64_MAX) throw new NumError("Atoi", text, "value out of range");
  return n;
}

/** Go's strconv.Atoi as a number (exact up to 2^53). Throws {@link NumError}. */
export function atoi(text: string): number {
  return Number(atoi64(text));
}

/** Go's strconv.ParseUint(text, 10, bitSize): decimal digits only. Throws {@link NumError}. */
export function parseUint(text: string, bitSize = 64): number {
  if (!/^[0-9]+$/.test(text)) throw new NumError("ParseUint", text, "invalid syntax");
  if (BigInt(text) >= 1n << BigInt(bitSize)) {
    throw new NumError("ParseUint", text, "value out of range");
  }
  return Number(text);
}

/** Go's strconv.Quote (what `%q` prints): double quotes, Go escapes for the unprintable. */
export function quote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"' || ch === "\\") out += "\\" + ch;
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
    else if (ch === " " || /[\p{L}\p{M}\p{N}\p{P}\p{S}]/u.test(ch)) out += ch;
    else if (c <= 0xffff) out += "\\u" + c.toString(16).padStart(4, "0");
    else out += "\\U" + c.toString(16).padStart(8, "0");
  }
  return out + '"';
}

/**
 * Go's strconv.FormatFloat(v, fmt, -1, 64): the shortest digits that read
 * back as `v`, in `%g` form (an exponent below 1e-4 and from 1e6 on:
 * "1e+06", "2.5e-05") or `%f` form (never an exponent). NaN, +Inf and -Inf
 * as Go prints them.
 */
export function formatFloat(v: number, fmt: "g" | "f"): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  if (v === 0) return Object.is(v, -0) ? "-0" : "0";
  // JavaScript's toExponential() without digits is the shortest round-trip, as Go's -1.
  const [mantissa, expText] = v.toExponential().split("e");
  const exp = Number(expText);
  const negative = mantissa.startsWith("-");
  const digits = mantissa.replace(/^-/, "").replace(".", "");
  if (fmt === "g") {
    // Go's %g with the shortest precision fixes the exponent threshold at 6 digits.
    if (exp < -4 || exp >= 6) {
      const sign = exp < 0 ? "-" : "+";
      return `${mantissa}e${sign}${String(Math.abs(exp)).padStart(2, "0")}`;
    }
  }
  let text: string;
  if (exp < 0) text = "0." + "0".repeat(-exp - 1) + digits;
  else if (exp + 1 >= digits.length) text = digits + "0".repeat(exp + 1 - digits.length);
  else text = digits.slice(0, exp + 1) + "." + digits.slice(exp + 1);
  return negative ? "-" + text : text;
}
