/**
 * Go's time.ParseDuration and the CoreDNS etcd plugin's parseTTL.
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
function toSeconds(nanos: bigint): number {
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

/**
 * The etcd plugin's parseTTL for min-lease-ttl / max-lease-ttl: trimmed; ""
 * is 0; a bare unsigned integer is seconds; otherwise a Go duration truncated
 * to whole seconds. Negative or above 4294967295 s throws.
 */
export function parseTTL(text: string): number {
  let s = text.trim();
  if (s === "") return 0;
  // strconv.ParseUint(s, 10, 64): digits only, within uint64.
  if (/^[0-9]+$/.test(s) && BigInt(s) <= 0xffff_ffff_ffff_ffffn) s += "s";
  let seconds: number;
  try {
    seconds = toSeconds(parseDurationNanos(s));
  } catch {
    throw new Error("invalid TTL format, use format like '30', '30s', '5m', '1h', or '2h30m'");
  }
  if (seconds < 0) throw new Error("TTL must be non-negative");
  if (seconds > 4294967295) throw new Error("TTL too large, maximum is 4294967295 seconds");
  return Math.trunc(seconds);
}
