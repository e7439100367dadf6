/**
 * The Corefile lexer, rule for rule Caddy v1's `caddyfile/lexer.go`.
 *
 * @module
 */

import type { Token } from "./types.ts";

/** Go's unicode.IsSpace: Latin-1 spaces plus the Unicode White_Space property. */
export function isGoSpace(code: number): boolean {
  switch (code) {
    case 0x09:
    case 0x0a:
    case 0x0b:
    case 0x0c:
    case 0x0d:
    case 0x20:
    case 0x85:
    case 0xa0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202f:
    case 0x205f:
    case 0x3000:
      return true;
    default:
      return code >= 0x2000 && code <= 0x200a;
  }
}

const BACKSLASH = 0x5c;
const QUOTE = 0x22;
const HASH = 0x23;
const NEWLINE = 0x0a;
const CR = 0x0d;

/**
 * Splits Corefile text into tokens tagged with `file` and their line.
 *
 * Faithful to Caddy, quirks included: an unquoted `#` starts a comment that
 * runs to the end of the line, but when it interrupts a word the word is
 * emitted at the next whitespace and lexing resumes there (`foo#bar baz`
 * gives `foo` and `baz`); `\r` outside quotes is dropped even mid-word.
 */
export function lex(text: string, file: string): Token[] {
  const tokens: Token[] = [];
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const n = text.length;
  let line = 1;

  // Each iteration produces at most one token, like one call of Caddy's next().
  while (i < n) {
    let val = "";
    let hasVal = false;
    let comment = false;
    let quoted = false;
    let escaped = false;
    let tokenLine = line;
    let lineBreaks = 0;
    let emitted = false;

    for (; i < n; i++) {
      const ch = text.charCodeAt(i);

      if (quoted) {
        if (!escaped) {
          if (ch === BACKSLASH) {
            escaped = true;
            continue;
          }
          if (ch === QUOTE) {
            i++;
            emitted = true;
            break;
          }
        }
        if (ch === NEWLINE) {
          line++;
          lineBreaks++;
        }
        // Inside quotes only \" is an escape; any other backslash stays.
        if (escaped && ch !== QUOTE) val += "\\";
        val += text[i];
        escaped = false;
        continue;
      }

      if (isGoSpace(ch)) {
        if (ch === CR) continue;
        if (ch === NEWLINE) {
          line++;
          comment = false;
        }
        if (hasVal) {
          i++;
          emitted = true;
          break;
        }
        continue;
      }

      if (ch === HASH) comment = true;
      if (comment) continue;

      if (!hasVal) {
        tokenLine = line;
        hasVal = true;
        if (ch === QUOTE) {
          quoted = true;
          continue;
        }
      }
      val += text[i];
    }

    // At EOF an unterminated word or quote still yields what it has, but an
    // empty one (a lone `"`) yields nothing.
    if (emitted || val.length > 0) {
      const token: Token = { text: val, file, line: tokenLine };
      if (lineBreaks > 0) token.lineBreaks = lineBreaks;
      tokens.push(token);
    }
  }
  return tokens;
}
