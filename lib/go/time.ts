/**
 * Go's time package where CoreDNS's Corefile syntax and output depend on
 * it: ParseDuration (with its error texts) and Duration.String.
 *
 * @module
 */

const NANOSECONDS_PER_UNIT: Readonly<Record<string, bigint>> = {
  "ns": 1n,
  "us": 1_000n,
  "µs": 1_000n, // U+00B5 micro sign
  "μs": 1_000n, // U+03BC Greek mu
  "ms": 1_000_000n,
  "s": 1_000_000_000n,
  "m": 60_000_000_000n,
  "h": 3_600_000_000_000n,
};

const TWO_TO_63 = 1n << 63n;

/** Go's time.quote: ASCII kept (with `"` and `\` escaped), everything else as \x bytes. */
function goTimeQuote(s: string): string {
  let out = '"';
  const encoder = new TextEncoder();
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c >= 0x80 || c < 0x20) {
      for (const b of encoder.encode(ch)) out += "\\x" + b.toString(16).padStart(2, "0");
    } else {
      if (ch === '"' || ch === "\\") out += "\\";
      out += ch;
    }
  }
  return out + '"';
}

function isDigit(ch: string | undefined): boolean {
  return ch !== undefined && ch >= "0" && ch <= "9";
}

/**
 * Parses a Go duration ("300ms", "1.5h", "2h45m", "-1s") into signed
 * nanoseconds. Throws Error with Go's message, e.g. `time: invalid duration "abc"`.
 */
export function parseDurationNanos(text: string): bigint {
  const invalid = () => new Error(`time: invalid duration ${goTimeQuote(text)}`);
  let s = text;
  let negative = false;
  if (s !== "" && (s[0] === "-" || s[0] === "+")) {
    negative = s[0] === "-";
    s = s.slice(1);
  }
  if (s === "0") return 0n;
  if (s === "") throw invalid();

  let total = 0n;
  while (s !== "") {
    if (!(s[0] === "." || isDigit(s[0]))) throw invalid();

    // Integer part; Go rejects it once it exceeds 2^63.
    let whole = 0n;
    let i = 0;
    for (; i < s.length && isDigit(s[i]); i++) {
      whole = whole * 10n + BigInt(s.charCodeAt(i) - 48);
      if (whole > TWO_TO_63) throw invalid();
    }
    const hadWhole = i > 0;
    s = s.slice(i);

    // Fraction; digits past what fits are ignored, as in Go.
    let fraction = 0n;
    let scale = 1;
    let hadFraction = false;
    if (s[0] === ".") {
      s = s.slice(1);
      let overflow = false;
      let j = 0;
      for (; j < s.length && isDigit(s[j]); j++) {
        if (overflow) continue;
        if (fraction > (TWO_TO_63 - 1n) / 10n) {
          overflow = true;
          continue;
        }
        const next = fraction * 10n + BigInt(s.charCodeAt(j) - 48);
        if (next > TWO_TO_63) {
          overflow = true;
          continue;
        }
        fraction = next;
        scale *= 10;
      }
      hadFraction = j > 0;
      s = s.slice(j);
    }
    if (!hadWhole && !hadFraction) throw invalid();

    let u = 0;
    while (u < s.length && s[u] !== "." && !isDigit(s[u])) u++;
    if (u === 0) throw new Error(`time: missing unit in duration ${goTimeQuote(text)}`);
    const unitName = s.slice(0, u);
    s = s.slice(u);
    const unit = NANOSECONDS_PER_UNIT[unitName];
    if (unit === undefined) {
      throw new Error(
        `time: unknown unit ${goTimeQuote(unitName)} in duration ${goTimeQuote(text)}`,
      );
    }
    if (whole > TWO_TO_63 / unit) throw invalid();
    let value = whole * unit;
    if (fraction > 0n) {
      // Go computes the fractional part in float64 and truncates.
      value += BigInt(Math.trunc(Number(fraction) * (Number(unit) / scale)));
      if (value > TWO_TO_63) throw invalid();
    }
    total += value;
    if (total > TWO_TO_63) throw invalid();
  }
  if (negative) return -total;
  if (total > TWO_TO_63 - 1n) throw invalid();
  return total;
}

/** Go's Duration.Seconds(): whole seconds plus the nanosecond remainder, as a float. */
export function toSeconds(nanos: bigint): number {
  const seconds = nanos / 1_000_000_000n;
  const remainder = nanos % 1_000_000_000n;
  return Number(seconds) + Number(remainder) / 1e9;
}

/**
 * Parses a Go duration ("300ms", "1.5h", "2h30m", "-1s") into seconds (a
 * float). Throws Error with Go's text, e.g. `time: invalid duration "abc"`.
 */
export function parseDuration(text: string): number {
  return toSeconds(parseDurationNanos(text));
}

/** Go's time.Duration.String for a duration in seconds: "5s", "1m30s", "1.5s", "250ms". */
export function formatGoDuration(seconds: number): string {
  let ns = Math.round(seconds * 1e9);
  if (ns === 0) return "0s";
  const sign = ns < 0 ? "-" : "";
  ns = Math.abs(ns);
  const trim = (v: number, unit: string, scale: number) => {
    const whole = Math.floor(v / scale);
    const frac = v % scale;
    const fracText = frac
      ? "." + String(frac).padStart(String(scale).length - 1, "0").replace(/0+$/, "")
      : "";
    return `${whole}${fracText}${unit}`;
  };
  if (ns < 1e3) return `${sign}${ns}ns`;
  if (ns < 1e6) return sign + trim(ns, "µs", 1e3);
  if (ns < 1e9) return sign + trim(ns, "ms", 1e6);
  const h = Math.floor(ns / 3.6e12);
  const m = Math.floor((ns % 3.6e12) / 6e10);
  const s = trim(ns % 6e10, "s", 1e9);
  if (h) return `${sign}${h}h${m}m${s}`;
  if (m) return `${sign}${m}m${s}`;
  return sign + s;
}
