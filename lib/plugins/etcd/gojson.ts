/**
 * Go `encoding/json` decoding of a flat struct, error texts included.
 *
 * CoreDNS decodes every etcd value with `json.Unmarshal` into `msg.Service`
 * and turns any error into the SERVFAIL text `"<key>: <error>"`. `JSON.parse`
 * accepts and rejects different inputs (`80.0` for an int, `-1` for a uint32,
 * duplicate keys in different case) and words its errors differently, so this
 * is a port of Go's scanner (`checkValid`) and of the parts of its decoder a
 * struct of strings, ints, uint32s and bools uses.
 *
 * The input is a JS string (the etcd value decoded as UTF-8). Every byte that
 * matters to JSON syntax is ASCII, so scanning UTF-16 code units is equivalent
 * to Go scanning bytes; error messages quote the first UTF-8 byte of a
 * non-ASCII character, as Go does.
 *
 * @module
 */

/** The Go kind of a struct field. */
export type GoFieldKind = "string" | "int" | "uint32" | "bool";

/** A struct to decode into: Go type name and JSON field name -> kind. */
export interface GoStructSchema {
  /** `msg.Service`: named in top-level type errors. */
  readonly typeName: string;
  /** `Service`: named in field type errors. */
  readonly structName: string;
  /** Fields by their JSON name (the struct tag), all lower-case here. */
  readonly fields: Readonly<Record<string, GoFieldKind>>;
}

/** A decoded field value: ints come as bigint (exact int64/uint32). */
export type GoFieldValue = string | bigint | boolean;

/** Decoding result: the fields that were set (last occurrence wins) or Go's error text. */
export type GoDecodeResult =
  | { ok: true; values: Map<string, GoFieldValue> }
  | { ok: false; error: string };

const MAX_NESTING_DEPTH = 10000;

/** Go's `quoteChar` for the byte a scanner error is about. */
function quoteChar(unit: number): string {
  let c = unit;
  if (c >= 0x80) {
    // First UTF-8 byte of the character: 0xF0-0xF4 for a surrogate pair (a
    // high surrogate), 0xEF for a lone low one (it travels as U+FFFD).
    if (c >= 0xd800 && c <= 0xdbff) c = 0xf0 | ((0x10000 + ((c - 0xd800) << 10)) >> 18);
    else if (c >= 0xdc00 && c <= 0xdfff) c = 0xef;
    else if (c < 0x800) c = 0xc0 | (c >> 6);
    else c = 0xe0 | (c >> 12);
  }
  if (c === 0x27) return `'\\''`;
  if (c === 0x22) return `'"'`;
  if (c === 0x5c) return `'\\\\'`;
  if (c >= 0x20 && c < 0x7f) return `'${String.fromCharCode(c)}'`;
  if (c >= 0xa1 && c !== 0xad) return `'${String.fromCharCode(c)}'`;
  switch (c) {
    case 7:
      return `'\\a'`;
    case 8:
      return `'\\b'`;
    case 9:
      return `'\\t'`;
    case 10:
      return `'\\n'`;
    case 11:
      return `'\\v'`;
    case 12:
      return `'\\f'`;
    case 13:
      return `'\\r'`;
  }
  if (c < 0x80) return `'\\x${c.toString(16).padStart(2, "0")}'`;
  return `'\\u${c.toString(16).padStart(4, "0")}'`;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0d || c === 0x0a;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

// Scanner states (Go's step functions).
const enum S {
  BeginValueOrEmpty,
  BeginValue,
  BeginStringOrEmpty,
  BeginString,
  EndValue,
  EndTop,
  InString,
  InStringEsc,
  EscU,
  EscU1,
  EscU12,
  EscU123,
  Neg,
  One,
  Zero,
  Dot,
  Dot0,
  E,
  ESign,
  E0,
  T,
  Tr,
  Tru,
  F,
  Fa,
  Fal,
  Fals,
  N,
  Nu,
  Nul,
}

// Parse stack entries.
const OBJECT_KEY = 0;
const OBJECT_VALUE = 1;
const ARRAY_VALUE = 2;

const LITERAL_STEPS: Partial<Record<S, [number, S | -1, string]>> = {
  [S.T]: [0x72, S.Tr, "in literal true (expecting 'r')"],
  [S.Tr]: [0x75, S.Tru, "in literal true (expecting 'u')"],
  [S.Tru]: [0x65, -1, "in literal true (expecting 'e')"],
  [S.F]: [0x61, S.Fa, "in literal false (expecting 'a')"],
  [S.Fa]: [0x6c, S.Fal, "in literal false (expecting 'l')"],
  [S.Fal]: [0x73, S.Fals, "in literal false (expecting 's')"],
  [S.Fals]: [0x65, -1, "in literal false (expecting 'e')"],
  [S.N]: [0x75, S.Nu, "in literal null (expecting 'u')"],
  [S.Nu]: [0x6c, S.Nul, "in literal null (expecting 'l')"],
  [S.Nul]: [0x6c, -1, "in literal null (expecting 'l')"],
};

/** Go's `checkValid`: undefined for valid JSON, else the SyntaxError text. */
export function goJSONSyntaxError(text: string): string | undefined {
  const stack: number[] = [];
  let state: S = S.BeginValue;
  let endTop = false;
  let error: string | undefined;

  const fail = (c: number, context: string) => {
    error = `invalid character ${quoteChar(c)} ${context}`;
  };
  const push = (c: number, entry: number) => {
    stack.push(entry);
    if (stack.length > MAX_NESTING_DEPTH) fail(c, "exceeded max depth");
  };
  const pop = () => {
    stack.pop();
    if (stack.length === 0) {
      state = S.EndTop;
      endTop = true;
    } else {
      state = S.EndValue;
    }
  };

  // One step of the state machine; loops when a state hands the byte on.
  const step = (c: number) => {
    for (;;) {
      switch (state) {
        case S.BeginValueOrEmpty:
          if (isSpace(c)) return;
          if (c === 0x5d) {
            state = S.EndValue;
            continue;
          }
          state = S.BeginValue;
          continue;
        case S.BeginValue:
          if (isSpace(c)) return;
          switch (c) {
            case 0x7b:
              state = S.BeginStringOrEmpty;
              push(c, OBJECT_KEY);
              return;
            case 0x5b:
              state = S.BeginValueOrEmpty;
              push(c, ARRAY_VALUE);
              return;
            case 0x22:
              state = S.InString;
              return;
            case 0x2d:
              state = S.Neg;
              return;
            case 0x30:
              state = S.Zero;
              return;
            case 0x74:
              state = S.T;
              return;
            case 0x66:
              state = S.F;
              return;
            case 0x6e:
              state = S.N;
              return;
          }
          if (c >= 0x31 && c <= 0x39) {
            state = S.One;
            return;
          }
          return fail(c, "looking for beginning of value");
        case S.BeginStringOrEmpty:
          if (isSpace(c)) return;
          if (c === 0x7d) {
            stack[stack.length - 1] = OBJECT_VALUE;
            state = S.EndValue;
            continue;
          }
          state = S.BeginString;
          continue;
        case S.BeginString:
          if (isSpace(c)) return;
          if (c === 0x22) {
            state = S.InString;
            return;
          }
          return fail(c, "looking for beginning of object key string");
        case S.EndValue: {
          const n = stack.length;
          if (n === 0) {
            state = S.EndTop;
            endTop = true;
            continue;
          }
          if (isSpace(c)) return;
          const top = stack[n - 1];
          if (top === OBJECT_KEY) {
            if (c === 0x3a) {
              stack[n - 1] = OBJECT_VALUE;
              state = S.BeginValue;
              return;
            }
            return fail(c, "after object key");
          }
          if (top === OBJECT_VALUE) {
            if (c === 0x2c) {
              stack[n - 1] = OBJECT_KEY;
              state = S.BeginString;
              return;
            }
            if (c === 0x7d) return pop();
            return fail(c, "after object key:value pair");
          }
          if (c === 0x2c) {
            state = S.BeginValue;
            return;
          }
          if (c === 0x5d) return pop();
          return fail(c, "after array element");
        }
        case S.EndTop:
          if (!isSpace(c)) fail(c, "after top-level value");
          return;
        case S.InString:
          if (c === 0x22) {
            state = S.EndValue;
            return;
          }
          if (c === 0x5c) {
            state = S.InStringEsc;
            return;
          }
          if (c < 0x20) return fail(c, "in string literal");
          return;
        case S.InStringEsc:
          switch (c) {
            case 0x62:
            case 0x66:
            case 0x6e:
            case 0x72:
            case 0x74:
            case 0x5c:
            case 0x2f:
            case 0x22:
              state = S.InString;
              return;
            case 0x75:
              state = S.EscU;
              return;
          }
          return fail(c, "in string escape code");
        case S.EscU:
        case S.EscU1:
        case S.EscU12:
        case S.EscU123:
          if (!isHex(c)) return fail(c, "in \\u hexadecimal character escape");
          state = state === S.EscU123 ? S.InString : state + 1;
          return;
        case S.Neg:
          if (c === 0x30) {
            state = S.Zero;
            return;
          }
          if (c >= 0x31 && c <= 0x39) {
            state = S.One;
            return;
          }
          return fail(c, "in numeric literal");
        case S.One:
          if (isDigit(c)) return;
          state = S.Zero;
          continue;
        case S.Zero:
          if (c === 0x2e) {
            state = S.Dot;
            return;
          }
          if (c === 0x65 || c === 0x45) {
            state = S.E;
            return;
          }
          state = S.EndValue;
          continue;
        case S.Dot:
          if (isDigit(c)) {
            state = S.Dot0;
            return;
          }
          return fail(c, "after decimal point in numeric literal");
        case S.Dot0:
          if (isDigit(c)) return;
          if (c === 0x65 || c === 0x45) {
            state = S.E;
            return;
          }
          state = S.EndValue;
          continue;
        case S.E:
          if (c === 0x2b || c === 0x2d) {
            state = S.ESign;
            return;
          }
          state = S.ESign;
          continue;
        case S.ESign:
          if (isDigit(c)) {
            state = S.E0;
            return;
          }
          return fail(c, "in exponent of numeric literal");
        case S.E0:
          if (isDigit(c)) return;
          state = S.EndValue;
          continue;
        default: {
          const [want, next, context] = LITERAL_STEPS[state]!;
          if (c !== want) return fail(c, context);
          state = next === -1 ? S.EndValue : next;
          return;
        }
      }
    }
  };

  for (let i = 0; i < text.length; i++) {
    step(text.charCodeAt(i));
    if (error !== undefined) return error;
  }
  // Go's scanner.eof(): a trailing space completes a number or literal.
  if (endTop) return undefined;
  step(0x20);
  if (error !== undefined) return error;
  if (endTop) return undefined;
  return "unexpected end of JSON input";
}

/** Go's case folding of a JSON key for the case-insensitive field match. */
function foldKey(key: string): string {
  let out = "";
  for (const ch of key) {
    const cp = ch.codePointAt(0)!;
    if (cp < 0x80) out += cp >= 0x61 && cp <= 0x7a ? String.fromCharCode(cp - 32) : ch;
    else if (cp === 0x17f) out += "S"; // LATIN SMALL LETTER LONG S folds with 's'
    else if (cp === 0x212a) out += "K"; // KELVIN SIGN folds with 'k'
    else out += ch;
  }
  return out;
}

/** Decodes a JSON value known to be valid (run {@link goJSONSyntaxError} first). */
class ValidDecoder {
  pos = 0;
  firstError: string | undefined;

  constructor(readonly text: string, readonly schema: GoStructSchema) {}

  skipSpace() {
    const t = this.text;
    while (this.pos < t.length && isSpace(t.charCodeAt(this.pos))) this.pos++;
  }

  saveError(message: string) {
    if (this.firstError === undefined) this.firstError = message;
  }

  typeError(value: string, field: string | undefined, kind: string) {
    this.saveError(
      field === undefined
        ? `json: cannot unmarshal ${value} into Go value of type ${kind}`
        : `json: cannot unmarshal ${value} into Go struct field ${this.schema.structName}.${field} of type ${kind}`,
    );
  }

  /** Skips any value. */
  skipValue() {
    this.skipSpace();
    const t = this.text;
    const c = t.charCodeAt(this.pos);
    if (c === 0x22) {
      this.readString();
    } else if (c === 0x7b || c === 0x5b) {
      const close = c === 0x7b ? 0x7d : 0x5d;
      this.pos++;
      this.skipSpace();
      if (t.charCodeAt(this.pos) === close) {
        this.pos++;
        return;
      }
      for (;;) {
        if (c === 0x7b) {
          this.skipSpace();
          this.readString();
          this.skipSpace();
          this.pos++; // ':'
        }
        this.skipValue();
        this.skipSpace();
        const d = t.charCodeAt(this.pos++);
        if (d !== 0x2c) return;
      }
    } else {
      this.readLiteral();
    }
  }

  /** A number or true/false/null, as written. */
  readLiteral(): string {
    const t = this.text;
    const start = this.pos;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (isSpace(c) || c === 0x2c || c === 0x7d || c === 0x5d) break;
      this.pos++;
    }
    return t.slice(start, this.pos);
  }

  /** A string at `pos` (on its opening quote), unquoted as Go does. */
  readString(): string {
    const t = this.text;
    this.pos++;
    let out = "";
    let chunk = this.pos;
    for (;;) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) {
        out += t.slice(chunk, this.pos);
        this.pos++;
        return out;
      }
      if (c !== 0x5c) {
        this.pos++;
        continue;
      }
      out += t.slice(chunk, this.pos);
      const e = t.charCodeAt(this.pos + 1);
      this.pos += 2;
      switch (e) {
        case 0x62:
          out += "\b";
          break;
        case 0x66:
          out += "\f";
          break;
        case 0x6e:
          out += "\n";
          break;
        case 0x72:
          out += "\r";
          break;
        case 0x74:
          out += "\t";
          break;
        case 0x75: {
          let unit = parseInt(t.slice(this.pos, this.pos + 4), 16);
          this.pos += 4;
          if (unit >= 0xd800 && unit <= 0xdfff) {
            // A surrogate must pair with a following \u escape, else it is U+FFFD.
            const lowOk = unit < 0xdc00 && t.charCodeAt(this.pos) === 0x5c &&
              t.charCodeAt(this.pos + 1) === 0x75 &&
              /^[0-9a-fA-F]{4}$/.test(t.slice(this.pos + 2, this.pos + 6));
            const low = lowOk ? parseInt(t.slice(this.pos + 2, this.pos + 6), 16) : -1;
            if (low >= 0xdc00 && low <= 0xdfff) {
              out += String.fromCharCode(unit, low);
              this.pos += 6;
              break;
            }
            unit = 0xfffd;
          }
          out += String.fromCharCode(unit);
          break;
        }
        default:
          out += String.fromCharCode(e); // \" \\ \/
      }
      chunk = this.pos;
    }
  }

  /** Decodes one field value into `kind`, reporting type errors Go's way. */
  decodeField(field: string, kind: GoFieldKind): GoFieldValue | undefined {
    this.skipSpace();
    const t = this.text;
    const c = t.charCodeAt(this.pos);
    if (c === 0x7b || c === 0x5b) {
      this.typeError(c === 0x7b ? "object" : "array", field, kind);
      this.skipValue();
      return undefined;
    }
    if (c === 0x22) {
      const s = this.readString();
      if (kind === "string") return s;
      this.typeError("string", field, kind);
      return undefined;
    }
    const literal = this.readLiteral();
    if (literal === "null") return undefined; // null leaves a Go string/int/bool as it was
    if (literal === "true" || literal === "false") {
      if (kind === "bool") return literal === "true";
      this.typeError("bool", field, kind);
      return undefined;
    }
    switch (kind) {
      case "int": {
        // strconv.ParseInt(s, 10, 64): plain decimal only.
        if (/^-?\d+$/.test(literal)) {
          const n = BigInt(literal);
          if (n >= -(1n << 63n) && n < 1n << 63n) return n;
        }
        this.typeError(`number ${literal}`, field, kind);
        return undefined;
      }
      case "uint32": {
        if (/^\d+$/.test(literal)) {
          const n = BigInt(literal);
          if (n <= 0xffffffffn) return n;
        }
        this.typeError(`number ${literal}`, field, kind);
        return undefined;
      }
      default:
        this.typeError("number", field, kind);
        return undefined;
    }
  }

  decodeTop(): GoDecodeResult {
    const values = new Map<string, GoFieldValue>();
    this.skipSpace();
    const t = this.text;
    const c = t.charCodeAt(this.pos);
    if (c !== 0x7b) {
      let what: string | undefined;
      if (c === 0x5b) what = "array";
      else if (c === 0x22) what = "string";
      else {
        const literal = this.readLiteral();
        if (literal === "true" || literal === "false") what = "bool";
        else if (literal !== "null") what = "number";
      }
      if (what === undefined) return { ok: true, values }; // null: the zero value
      return {
        ok: false,
        error: `json: cannot unmarshal ${what} into Go value of type ${this.schema.typeName}`,
      };
    }
    const exact = this.schema.fields;
    this.pos++;
    this.skipSpace();
    if (t.charCodeAt(this.pos) !== 0x7d) {
      for (;;) {
        this.skipSpace();
        const key = this.readString();
        this.skipSpace();
        this.pos++; // ':'
        let field: string | undefined = Object.hasOwn(exact, key) ? key : undefined;
        if (field === undefined) {
          const folded = foldKey(key);
          for (const name in exact) {
            if (foldKey(name) === folded) {
              field = name;
              break;
            }
          }
        }
        if (field === undefined) {
          this.skipValue();
        } else {
          const value = this.decodeField(field, exact[field]);
          if (value !== undefined) values.set(field, value);
        }
        this.skipSpace();
        if (t.charCodeAt(this.pos++) !== 0x2c) break;
      }
    }
    if (this.firstError !== undefined) return { ok: false, error: this.firstError };
    return { ok: true, values };
  }
}

/** `json.Unmarshal(text, &struct)`: the fields set, or Go's error text. */
export function goUnmarshalStruct(text: string, schema: GoStructSchema): GoDecodeResult {
  const syntax = goJSONSyntaxError(text);
  if (syntax !== undefined) return { ok: false, error: syntax };
  return new ValidDecoder(text, schema).decodeTop();
}
