/**
 * One directive's tokens (as the parser collected them, braces matched) to
 * its {@link Directive} tree: the name, the arguments up to a `{`, and each
 * line of the block as a Directive of its own. Tokens are expanded
 * (`{$ENV}`) on the way out, so every plugin sees final text.
 *
 * Two idetcd rules Caddy lacks are enforced here: a block opens on its
 * directive's line, and nothing follows a block's `}` on that line.
 *
 * @module
 */

import { sameLine } from "./token_lines.ts";
import { CorefileError, type Directive, type Token } from "./types.ts";

/**
 * The Directive of `tokens` (a name, its arguments and block). `expand`
 * applies environment references to a token's text. Throws CorefileError.
 */
export function buildDirective(tokens: Token[], expand: (text: string) => string): Directive {
  const { directive, next } = readLine(tokens, 0, expand);
  if (next < tokens.length) throw unexpectedAfter(tokens[next], tokens[next - 1]);
  return directive;
}

function output(t: Token, expand: (text: string) => string): Token {
  const out: Token = { text: expand(t.text), file: t.file, line: t.line };
  if (t.lineBreaks) out.lineBreaks = t.lineBreaks;
  return out;
}

// Reads the line starting at tokens[start]: name, args up to `{`, and its block.
function readLine(
  tokens: Token[],
  start: number,
  expand: (text: string) => string,
): { directive: Directive; next: number } {
  const nameToken = tokens[start];
  if (nameToken.text === "{") throw braceOnNewLine(nameToken);
  const args: Token[] = [];
  let i = start + 1;
  while (
    i < tokens.length && sameLine(tokens[i - 1], tokens[i]) &&
    tokens[i].text !== "{" && tokens[i].text !== "}"
  ) {
    args.push(output(tokens[i], expand));
    i++;
  }
  let block: Directive[] | null = null;
  if (i < tokens.length && tokens[i].text === "{") {
    // Caddy keeps such a brace but plugins' NextBlock() ignores it: refuse instead.
    if (!sameLine(tokens[i - 1], tokens[i])) throw braceOnNewLine(tokens[i]);
    i++;
    block = [];
    for (;;) {
      // The parser already matched every brace; this only guards against a bug.
      if (i >= tokens.length) throw new CorefileError("Unexpected EOF", tokens[i - 1]);
      if (tokens[i].text === "}") {
        i++;
        break;
      }
      const line = readLine(tokens, i, expand);
      block.push(line.directive);
      i = line.next;
    }
    if (i < tokens.length && sameLine(tokens[i - 1], tokens[i]) && tokens[i].text !== "}") {
      throw unexpectedAfter(tokens[i], tokens[i - 1]);
    }
  }
  return {
    directive: { name: output(nameToken, expand), args, block },
    next: i,
  };
}

function braceOnNewLine(t: Token): CorefileError {
  return new CorefileError(
    "Unexpected '{' at the start of a line; open a block on the line of its directive",
    t,
  );
}

function unexpectedAfter(t: Token, prev: Token): CorefileError {
  return new CorefileError(
    `Unexpected token '${t.text}' after '${prev.text}'; start it on a new line`,
    t,
  );
}
