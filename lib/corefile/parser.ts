/**
 * The Corefile parser: Caddy v1's `caddyfile/parse.go` (server block keys,
 * directives, snippets, `import`, `{$ENV}`), producing nested Directive lines.
 *
 * The token stream is handled the way Caddy's Dispenser does it (one array,
 * a cursor, imports spliced in place), because "same line" and "new line"
 * are decided between neighbouring tokens of that stream, and imported
 * tokens keep the line numbers of the file they came from.
 *
 * The parser finds server blocks, snippets, imports and each directive's
 * tokens; `{$ENV}` expansion is env.ts, one directive's tokens become its
 * tree in tree.ts, and import paths and globs follow Go's path/filepath
 * (lib/go).
 *
 * @module
 */

import { rootLog } from "../log.ts";
import { glob } from "../go/filepath.ts";
import { abs, dir, isAbs, join } from "../go/path.ts";
import { processEnv, replaceEnvVars } from "./env.ts";
import { lex } from "./lexer.ts";
import { sameLine, tokenEnd } from "./token_lines.ts";
import { buildDirective } from "./tree.ts";
import {
  argError,
  CorefileError,
  CorefileSyntaxError,
  type ServerBlock,
  type Token,
} from "./types.ts";

/** How to parse: which directives exist, and where env vars and imported files come from. */
export interface ParseOptions {
  /** Whether `name` is a registered directive (plugin.cfg). `import` is handled before this. */
  isDirective(name: string): boolean;
  /** Environment lookup for `{$NAME}` / `{%NAME%}`; undefined means unset (""). */
  env?: (name: string) => string | undefined;
  /** Reads an imported file; throws Deno.errors.NotFound / IsADirectory / PermissionDenied. */
  readFile?: (path: string) => string;
  /** Go's filepath.Glob on an absolute pattern: sorted matches; throws on a malformed pattern. */
  glob?: (pattern: string) => string[];
  /** Receives non-fatal notices (a glob import that matched nothing). */
  warn?: (message: string) => void;
  /** Directory relative root-file names resolve against; default Deno.cwd(). */
  cwd?: string;
  /** Cap on snippet imports per parse (CoreDNS: 10000). */
  maxSnippetExpansions?: number;
  /** Cap on file/glob imports per parse (CoreDNS: 100000). */
  maxFileExpansions?: number;
}

/** CoreDNS's cap on snippet imports in one parse. */
export const MAX_SNIPPET_EXPANSIONS = 10000;
/** CoreDNS's cap on file/glob imports in one parse. */
export const MAX_FILE_EXPANSIONS = 100000;

function replaceRange(tokens: Token[], start: number, count: number, items: Token[]): void {
  if (items.length < 10000) {
    tokens.splice(start, count, ...items);
    return;
  }
  // Spreading huge arrays into splice() overflows the call stack.
  const tail = tokens.slice(start + count);
  tokens.length = start;
  for (const t of items) tokens.push(t);
  for (const t of tail) tokens.push(t);
}

class Parser {
  private readonly tokens: Token[];
  private cursor = -1;
  private eof = false;
  private readonly snippets = new Map<string, Token[]>();
  private snippetExpansions = 0;
  private fileExpansions = 0;
  private readonly fileCache = new Map<string, Token[]>();
  private cwdCache: string | undefined;
  private block: ServerBlock = { keys: [], directives: [] };
  /** The `{` of the server block being read, for errors that point back at it. */
  private openBrace: Token | undefined;

  private readonly env: (name: string) => string | undefined;
  private readonly readFile: (path: string) => string;
  private readonly glob: (pattern: string) => string[];
  private readonly warn: (message: string) => void;
  private readonly maxSnippet: number;
  private readonly maxFile: number;

  constructor(
    text: string,
    private readonly rootFile: string,
    private readonly options: ParseOptions,
  ) {
    this.tokens = lex(text, rootFile);
    this.env = options.env ?? processEnv;
    this.readFile = options.readFile ?? Deno.readTextFileSync;
    this.glob = options.glob ?? glob;
    this.warn = options.warn ?? ((m) => rootLog.warning(m));
    this.maxSnippet = options.maxSnippetExpansions ?? MAX_SNIPPET_EXPANSIONS;
    this.maxFile = options.maxFileExpansions ?? MAX_FILE_EXPANSIONS;
  }

  parseAll(): ServerBlock[] {
    const blocks: ServerBlock[] = [];
    while (this.next()) {
      this.block = { keys: [], directives: [] };
      this.begin();
      if (this.block.keys.length > 0) blocks.push(this.block);
    }
    return blocks;
  }

  // --- Dispenser primitives -------------------------------------------------

  private next(): boolean {
    if (this.cursor < this.tokens.length - 1) {
      this.cursor++;
      return true;
    }
    return false;
  }

  private nextArg(): boolean {
    if (this.cursor < 0) {
      this.cursor++;
      return true;
    }
    if (this.cursor >= this.tokens.length) return false;
    if (
      this.cursor < this.tokens.length - 1 &&
      sameLine(this.tokens[this.cursor], this.tokens[this.cursor + 1])
    ) {
      this.cursor++;
      return true;
    }
    return false;
  }

  private isNewLine(): boolean {
    if (this.cursor < 1) return true;
    if (this.cursor > this.tokens.length - 1) return false;
    const prev = this.tokens[this.cursor - 1];
    const cur = this.tokens[this.cursor];
    return prev.file !== cur.file || tokenEnd(prev) < cur.line;
  }

  private val(): string {
    const t = this.tokens[this.cursor];
    return t === undefined ? "" : t.text;
  }

  private where(): { file: string; line: number } {
    const t = this.tokens[this.cursor];
    return t === undefined ? { file: this.rootFile, line: 0 } : t;
  }

  private err(message: string): CorefileError {
    return new CorefileError(message, this.where());
  }

  private syntaxErr(expected: string): CorefileError {
    return new CorefileSyntaxError(
      `Syntax error: Unexpected token '${this.val()}', expecting '${expected}'`,
      this.where(),
    );
  }

  private argErr(): CorefileError {
    const { file, line } = this.where();
    return argError({ text: this.val(), file, line });
  }

  private expand(text: string): string {
    return replaceEnvVars(text, this.env);
  }

  // --- parse.go -------------------------------------------------------------

  private begin(): void {
    if (this.tokens.length === 0) return;
    this.addresses();
    // A file that is only a line of addresses.
    if (this.eof) return;

    const name = this.snippetName();
    if (name !== undefined) {
      if (this.snippets.has(name)) {
        throw this.err(`redeclaration of previously declared snippet ${name}`);
      }
      const body = this.snippetTokens();
      for (let i = 0; i + 1 < body.length; i++) {
        if (body[i].text !== "import") continue;
        const atLineStart = i === 0 || body[i - 1].file !== body[i].file ||
          body[i - 1].line !== body[i].line;
        if (atLineStart && this.expand(body[i + 1].text) === name) {
          throw this.err(`maximum snippet import depth (${this.maxSnippet}) exceeded`);
        }
      }
      this.snippets.set(name, body);
      this.block.keys = []; // a snippet is not a server
      return;
    }
    this.blockContents();
  }

  private addresses(): void {
    let expectingAnother = false;
    for (;;) {
      const current = this.tokens[this.cursor];
      let text = this.expand(this.val());

      if (text === "import" && this.isNewLine()) {
        this.doImport();
        continue;
      }
      if (text === "{") {
        if (expectingAnother) {
          throw this.err(`Expected another address but had '${text}' - check for extra comma`);
        }
        break;
      }
      if (text !== "") {
        if (text.endsWith(",")) {
          text = text.slice(0, -1);
          expectingAnother = true;
        } else {
          expectingAnother = false;
        }
        this.block.keys.push({ text, file: current.file, line: current.line });
      }

      const hasNext = this.next();
      if (expectingAnother && !hasNext) throw this.err("Unexpected EOF");
      if (!hasNext) {
        this.eof = true;
        break;
      }
      if (!expectingAnother && this.isNewLine()) break;
    }
  }

  private snippetName(): string | undefined {
    const keys = this.block.keys;
    if (keys.length !== 1) return undefined;
    const key = keys[0].text;
    if (!key.startsWith("(") || !key.endsWith(")")) return undefined;
    return key.slice(1).replace(/\)$/, "");
  }

  private snippetTokens(): Token[] {
    if (this.val() !== "{") throw this.syntaxErr("{");
    // The `{` tokens still open, innermost last: an error at EOF names the innermost.
    const open: Token[] = [this.tokens[this.cursor]];
    const body: Token[] = [];
    while (this.next()) {
      const text = this.val();
      if (text === "}") {
        open.pop();
        if (open.length === 0) break;
      }
      if (text === "{") open.push(this.tokens[this.cursor]);
      body.push(this.tokens[this.cursor]);
    }
    if (open.length > 0) throw unclosedBlock(open[open.length - 1], this.tokens[this.cursor]);
    return body;
  }

  private blockContents(): void {
    const braced = this.val() === "{";
    this.openBrace = braced ? this.tokens[this.cursor] : undefined;
    // Single-server configs don't need braces: re-read this token as a directive.
    if (!braced) this.cursor--;
    const closed = this.directives();
    // Caddy checks only that the last token read is a `}`, so a missing `}` either blamed
    // the last token or, when a directive's block closed last, went unnoticed. Name the `{`.
    if (braced && !closed) throw unclosedBlock(this.openBrace!, this.tokens[this.cursor]);
    this.openBrace = undefined;
  }

  /** Reads directives up to the `}` that ends the block (true) or the end of input (false). */
  private directives(): boolean {
    while (this.next()) {
      const text = this.val();
      if (text === "}") return true;
      if (text === "import") {
        this.doImport();
        this.cursor--; // next() lands on the first imported token
        continue;
      }
      this.directive();
    }
    return false;
  }

  private directive(): void {
    const nameToken = this.tokens[this.cursor];
    const name = this.expand(nameToken.text);
    if (!this.options.isDirective(name)) throw this.unknownDirective(name);

    const collected: Token[] = [nameToken];
    // The `{` tokens still open, innermost last.
    const open: Token[] = [];
    while (this.next()) {
      const text = this.val();
      if (text === "{") {
        open.push(this.tokens[this.cursor]);
      } else if (this.isNewLine() && open.length === 0) {
        this.cursor--; // read too far
        break;
      } else if (text === "}" && open.length > 0) {
        open.pop();
      } else if (text === "}" && open.length === 0) {
        throw this.err("Unexpected '}' because no matching opening brace");
      } else if (text === "import" && this.isNewLine()) {
        this.doImport();
        this.cursor--;
        continue;
      }
      collected.push(this.tokens[this.cursor]);
    }
    if (open.length > 0) throw unclosedBlock(open[open.length - 1], this.tokens[this.cursor]);
    this.block.directives.push(buildDirective(collected, (text) => this.expand(text)));
  }

  /**
   * CoreDNS's `Unknown directive 'x'`. When the word opens a block right after
   * it (`example.org {`) inside a server block, it is most likely the next
   * server block's key and the `}` before it is missing: say which block.
   */
  private unknownDirective(name: string): CorefileError {
    const here = this.tokens[this.cursor];
    const next = this.tokens[this.cursor + 1];
    const open = this.openBrace;
    if (open && next?.text === "{" && sameLine(here, next)) {
      return this.err(
        `Unknown directive '${name}'; if it starts a server block, the block opened at ${open.file}:${open.line} is missing its '}'`,
      );
    }
    return this.err(`Unknown directive '${name}'`);
  }

  private doImport(): void {
    if (!this.nextArg()) throw this.argErr();
    const pattern = this.expand(this.val());
    if (pattern === "") throw this.err("Import requires a non-empty filepath");
    if (this.nextArg()) throw this.err("Import takes only one argument (glob pattern or file)");

    let imported: Token[];
    const snippet = this.snippets.get(pattern);
    if (snippet !== undefined) {
      if (this.snippetExpansions >= this.maxSnippet) {
        throw this.err(`maximum snippet import depth (${this.maxSnippet}) exceeded`);
      }
      this.snippetExpansions++;
      imported = snippet;
    } else {
      imported = this.importFiles(pattern);
    }
    // Replace `import PATTERN` with the imported tokens; the cursor ends on the first of them.
    const start = this.cursor - 1;
    replaceRange(this.tokens, start, 2, imported);
    this.cursor = start;
  }

  private cwd(): string {
    return this.cwdCache ??= this.options.cwd ?? Deno.cwd();
  }

  private importFiles(pattern: string): Token[] {
    if (this.fileExpansions >= this.maxFile) {
      throw this.err(`maximum file import depth (${this.maxFile}) exceeded`);
    }
    this.fileExpansions++;
    // Relative to the file of the token being processed, not the working directory.
    const importingFile = abs(this.where().file, () => this.cwd());
    const globPattern = isAbs(pattern) ? pattern : join(dir(importingFile), pattern);
    if (
      count(globPattern, "*") > 1 || count(globPattern, "?") > 1 ||
      (globPattern.includes("[") && globPattern.includes("]"))
    ) {
      // Caddy issue #2096: many wildcards can make globbing hang.
      throw this.err(
        `Glob pattern may only contain one wildcard (*), but has others: ${globPattern}`,
      );
    }
    let matches: string[];
    try {
      matches = this.glob(globPattern);
    } catch (e) {
      throw this.err(`Failed to use import pattern ${pattern}: ${(e as Error).message}`);
    }
    if (matches.length === 0) {
      if (/[*?[\]]/.test(globPattern)) {
        this.warn(`No files matching import glob pattern: ${pattern}`);
      } else {
        throw this.err(`File to import not found: ${pattern}`);
      }
    }
    const imported: Token[] = [];
    for (const file of matches) {
      for (const t of this.importFile(file)) imported.push(t);
    }
    return imported;
  }

  private importFile(path: string): Token[] {
    const absolute = abs(path, () => this.cwd());
    // Import cycles re-read the same files up to the cap; lex each one once.
    const cached = this.fileCache.get(absolute);
    if (cached !== undefined) return cached;
    let text: string;
    try {
      text = this.readFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.IsADirectory) {
        throw this.err(`Could not import ${path}: is a directory`);
      }
      if (e instanceof Deno.errors.NotFound) {
        throw this.err(`Could not import ${path}: open ${path}: no such file or directory`);
      }
      if (e instanceof Deno.errors.PermissionDenied) {
        throw this.err(`Could not import ${path}: open ${path}: permission denied`);
      }
      throw this.err(`Could not import ${path}: ${(e as Error).message}`);
    }
    // Tokens carry the imported file's absolute path so errors name it.
    const tokens = lex(text, absolute);
    this.fileCache.set(absolute, tokens);
    return tokens;
  }
}

/**
 * A `{` whose `}` never comes, reported at the `{` (Caddy reports the last
 * token read, often many lines later, or nothing at all).
 */
function unclosedBlock(open: Token, last?: Token): CorefileError {
  let message =
    "Syntax error: Unexpected EOF: the block opened on this line is not closed, expecting '}'";
  // Only a quoted token spans lines; one that swallowed a `}` is the likelier culprit.
  if (last && (last.lineBreaks ?? 0) > 0 && last.text.includes("}")) {
    message += `; the quote opened at ${last.file}:${last.line} runs to the end of the file`;
  }
  return new CorefileSyntaxError(message, open);
}

function count(s: string, ch: string): number {
  let n = 0;
  for (let i = s.indexOf(ch); i !== -1; i = s.indexOf(ch, i + 1)) n++;
  return n;
}

/**
 * Parses Corefile text into server blocks, expanding imports, snippets and
 * environment variables. `file` names the text in errors and anchors relative
 * imports. Returns [] when there is no server block (CoreDNS then uses its
 * default). Throws CorefileError carrying the offending token's file and line.
 */
export function parseCorefile(text: string, file: string, options: ParseOptions): ServerBlock[] {
  return new Parser(text, file, options).parseAll();
}
