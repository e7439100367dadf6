/**
 * The parsed shape of a Corefile.
 *
 * @module
 */

/** One lexical token with where it came from. */
export interface Token {
  /** The token text after quote removal and environment substitution. */
  text: string;
  /** The file it was read from ("Corefile", an imported path, or "stdin"). */
  file: string;
  /** 1-based line number of the token's first character. */
  line: number;
  /** Line breaks inside the token (quoted tokens only); absent means 0. */
  lineBreaks?: number;
}

/**
 * One directive line: `name args... [{ block }]`.
 *
 * Inside a `{ }` block every line is itself a Directive (its first token is
 * the `name`), so plugin options such as `fallthrough a.org b.org` arrive as
 * `{ name: "fallthrough", args: ["a.org", "b.org"] }`.
 */
export interface Directive {
  /** The first token of the line: the directive or option name. */
  name: Token;
  /** The rest of the line up to a `{`, in order. */
  args: Token[];
  /** The lines between `{` and `}`, or null when the directive has no block. */
  block: Directive[] | null;
}

/** A server block: its keys (`example.org:1053`, `dns://.`) and its directives in file order. */
export interface ServerBlock {
  /** The addresses before `{`, as written (after environment expansion). */
  keys: Token[];
  /** The block's directive lines, imports and snippets expanded. */
  directives: Directive[];
}

/** A user error in the Corefile; `message` is the bare reason. */
export class CorefileError extends Error {
  /** File the error is in. */
  readonly file: string;
  /** 1-based line, 0 when not known. */
  readonly line: number;
  /** The plugin whose setup rejected it, when known. */
  readonly plugin?: string;

  /** `where` is the offending token (or any file and line); `plugin` the setup that refused it. */
  constructor(message: string, where?: { file: string; line: number }, plugin?: string) {
    super(message);
    this.name = "CorefileError";
    this.file = where?.file ?? "Corefile";
    this.line = where?.line ?? 0;
    this.plugin = plugin;
  }

  /** CoreDNS's shape: `plugin/etcd: Corefile:3 - Error during parsing: unknown property 'x'`. */
  describe(): string {
    const at = `${this.file}:${this.line}`;
    return this.plugin
      ? `plugin/${this.plugin}: ${at} - Error during parsing: ${this.message}`
      : `${at} - Error during parsing: ${this.message}`;
  }
}

/** Caddy's SyntaxErr, which CoreDNS prints without "Error during parsing". */
export class CorefileSyntaxError extends CorefileError {
  /** `message` is the whole text after the position (`Syntax error: ...`). */
  constructor(message: string, where?: { file: string; line: number }) {
    super(message, where);
    this.name = "CorefileSyntaxError";
  }

  /** `Corefile:3 - Syntax error: Unexpected token 'x', expecting '}'`. */
  override describe(): string {
    return `${this.file}:${this.line} - ${this.message}`;
  }
}

/**
 * Caddy's Dispenser.ArgErr, the one producer of CoreDNS's argument error:
 * `Wrong argument count or unexpected line ending after 'tok'`, or, when the
 * token is a `{`, `Unexpected token '{', expecting argument`. Plugins reach
 * it through {@link ./dispenser.ts}'s Dispenser; the parser for `import`.
 */
export function argError(after: Token, plugin?: string): CorefileError {
  if (after.text === "{") {
    return new CorefileError("Unexpected token '{', expecting argument", after, plugin);
  }
  return new CorefileError(
    `Wrong argument count or unexpected line ending after '${after.text}'`,
    after,
    plugin,
  );
}
