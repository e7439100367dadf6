import { deepStrictEqual as equal, ok, throws } from "node:assert/strict";
import { parseCorefile, type ParseOptions } from "./parser.ts";
import { CorefileError, CorefileSyntaxError, type Directive, type ServerBlock } from "./types.ts";

const anyDirective = () => true;

function parse(text: string, options: Partial<ParseOptions> = {}): ServerBlock[] {
  return parseCorefile(text, "Corefile", {
    isDirective: anyDirective,
    env: () => undefined,
    ...options,
  });
}

/** Caddy's view of a directive: how many tokens it has, braces included. */
function tokenCount(d: Directive): number {
  let n = 1 + d.args.length;
  if (d.block) n += 2 + d.block.reduce((sum, line) => sum + tokenCount(line), 0);
  return n;
}

/** Keys and per-directive token counts, the shape Caddy's parse tests check. */
function summary(block: ServerBlock): { keys: string[]; tokens: Record<string, number> } {
  const tokens: Record<string, number> = {};
  for (const d of block.directives) {
    tokens[d.name.text] = (tokens[d.name.text] ?? 0) + tokenCount(d);
  }
  return { keys: block.keys.map((k) => k.text), tokens };
}

/** A directive as plain data: name, args and nested lines. */
type Shape = [string, string[], Shape[] | null];

function shape(d: Directive): Shape {
  return [d.name.text, d.args.map((a) => a.text), d.block ? d.block.map(shape) : null];
}

function parseError(fn: () => unknown): CorefileError {
  try {
    fn();
  } catch (err) {
    ok(err instanceof CorefileError, `expected CorefileError, got ${err}`);
    return err;
  }
  throw new Error("expected an error");
}

function expectError(
  text: string,
  message: string,
  line?: number,
  options?: Partial<ParseOptions>,
) {
  const err = parseError(() => parse(text, options));
  equal(err.message, message);
  if (line !== undefined) equal(err.line, line);
  return err;
}

// --- Caddy's TestParseOneAndImport / TestParseAll (no imports) -------------

const parseOneCases: {
  input: string;
  keys: string[];
  tokens: Record<string, number>;
}[] = [
  { input: "localhost", keys: ["localhost"], tokens: {} },
  { input: "localhost\n  dir1", keys: ["localhost"], tokens: { dir1: 1 } },
  { input: "localhost:1234\n  dir1 foo bar", keys: ["localhost:1234"], tokens: { dir1: 3 } },
  { input: "localhost {\n    dir1\n  }", keys: ["localhost"], tokens: { dir1: 1 } },
  {
    input: "localhost:1234 {\n    dir1 foo bar\n    dir2\n  }",
    keys: ["localhost:1234"],
    tokens: { dir1: 3, dir2: 1 },
  },
  {
    input: "http://localhost https://localhost\n  dir1 foo bar",
    keys: ["http://localhost", "https://localhost"],
    tokens: { dir1: 3 },
  },
  {
    input: "http://localhost https://localhost {\n    dir1 foo bar\n  }",
    keys: ["http://localhost", "https://localhost"],
    tokens: { dir1: 3 },
  },
  {
    input: "http://localhost, https://localhost {\n    dir1 foo bar\n  }",
    keys: ["http://localhost", "https://localhost"],
    tokens: { dir1: 3 },
  },
  {
    input: "host1:80, http://host2.com\n  dir1 foo bar\n  dir2 baz",
    keys: ["host1:80", "http://host2.com"],
    tokens: { dir1: 3, dir2: 2 },
  },
  {
    input: "http://host1.com,\n  http://host2.com,\n  https://host3.com",
    keys: ["http://host1.com", "http://host2.com", "https://host3.com"],
    tokens: {},
  },
  {
    input: "http://host1.com:1234, https://host2.com\n  dir1 foo {\n    bar baz\n  }\n  dir2",
    keys: ["http://host1.com:1234", "https://host2.com"],
    tokens: { dir1: 6, dir2: 1 },
  },
  {
    input: "127.0.0.1\n  dir1 {\n    bar baz\n  }\n  dir2 {\n    foo bar\n  }",
    keys: ["127.0.0.1"],
    tokens: { dir1: 5, dir2: 5 },
  },
  { input: "localhost\n  dir1 {\n  }", keys: ["localhost"], tokens: { dir1: 3 } },
  {
    input: "localhost\n  dir1 {\n    nested {\n      foo\n    }\n  }\n  dir2 foo bar",
    keys: ["localhost"],
    tokens: { dir1: 7, dir2: 3 },
  },
];

parseOneCases.forEach((c, i) => {
  Deno.test(`parse: Caddy parseOne case ${i}: ${JSON.stringify(c.input.split("\n")[0])}`, () => {
    const blocks = parse(c.input);
    equal(blocks.length, 1);
    equal(summary(blocks[0]), { keys: c.keys, tokens: c.tokens });
  });
});

Deno.test("parse: Caddy parseAll cases", () => {
  const keysOf = (text: string) => parse(text).map((b) => b.keys.map((k) => k.text));
  equal(keysOf("localhost"), [["localhost"]]);
  equal(keysOf("localhost:1234"), [["localhost:1234"]]);
  equal(keysOf("localhost:1234 {\n  }\n  localhost:2015 {\n  }"), [
    ["localhost:1234"],
    ["localhost:2015"],
  ]);
  equal(keysOf("localhost:1234, http://host2"), [["localhost:1234", "http://host2"]]);
  equal(
    keysOf(
      "http://host1.com, http://host2.com {\n  }\n  https://host3.com, https://host4.com {\n  }",
    ),
    [["http://host1.com", "http://host2.com"], ["https://host3.com", "https://host4.com"]],
  );
});

Deno.test("parse: empty input, comments only, or an empty quoted key give no blocks", () => {
  equal(parse(""), []);
  equal(parse("# nothing here\n\n   # at all"), []);
  equal(parse('""'), []);
  equal(parse("(snip) {\n  whoami\n}"), []);
});

// --- keys ------------------------------------------------------------------

Deno.test("parse: trailing comma continues the keys onto the next line", () => {
  const [block] = parse("a.org,\n b.org {\n whoami\n}");
  equal(block.keys.map((k) => [k.text, k.line]), [["a.org", 1], ["b.org", 2]]);
});

Deno.test("parse: trailing comma at EOF is Unexpected EOF", () => {
  expectError("localhost:1234, http://host2,", "Unexpected EOF", 1);
  expectError("a.org,", "Unexpected EOF", 1);
});

Deno.test("parse: a comma before '{' is an error", () => {
  expectError(
    "http://localhost, {\n  }",
    "Expected another address but had '{' - check for extra comma",
    1,
  );
});

Deno.test("parse: a comma inside a token does not separate keys", () => {
  equal(parse("example.org,example.com:1053 {\n}")[0].keys.map((k) => k.text), [
    "example.org,example.com:1053",
  ]);
});

Deno.test("parse: an empty quoted token among keys is ignored", () => {
  equal(parse('a.org "" b.org {\n}')[0].keys.map((k) => k.text), ["a.org", "b.org"]);
});

Deno.test("parse: a server block may open its brace on the next line", () => {
  const [block] = parse("example.org\n{\n  whoami\n}\n");
  equal(summary(block), { keys: ["example.org"], tokens: { whoami: 1 } });
});

// --- block bodies and directives ---------------------------------------------

Deno.test("parse: single-server form without braces", () => {
  const [block] = parse("example.org:1053\nwhoami\nlog stdout\n");
  equal(block.directives.map(shape), [["whoami", [], null], ["log", ["stdout"], null]]);
});

Deno.test("parse: directives become nested lines", () => {
  const [block] = parse(
    [
      ". {",
      "  etcd skydns.local 10.0.0.0/24 {",
      "    path /skydns",
      "    endpoint http://a:2379 http://b:2379",
      "    tls {",
      "      inner 1",
      "    }",
      "    fallthrough",
      "  }",
      "  whoami",
      "  etcd other.local",
      "}",
    ].join("\n"),
  );
  equal(block.keys.map((k) => k.text), ["."]);
  equal(block.directives.map(shape), [
    ["etcd", ["skydns.local", "10.0.0.0/24"], [
      ["path", ["/skydns"], null],
      ["endpoint", ["http://a:2379", "http://b:2379"], null],
      ["tls", [], [["inner", ["1"], null]]],
      ["fallthrough", [], null],
    ]],
    ["whoami", [], null],
    ["etcd", ["other.local"], null],
  ]);
  const etcd = block.directives[0];
  equal([etcd.name.line, etcd.block![1].args[1].line, etcd.block![2].block![0].name.line], [
    2,
    4,
    6,
  ]);
});

Deno.test("parse: an empty block is [] and no block is null", () => {
  const [block] = parse(". {\n  a {\n  }\n  b { }\n  c\n}");
  equal(block.directives.map(shape), [["a", [], []], ["b", [], []], ["c", [], null]]);
});

Deno.test("parse: one-line blocks inside a directive", () => {
  const [block] = parse(". {\n  etcd { path /x }\n}");
  equal(block.directives.map(shape), [["etcd", [], [["path", ["/x"], null]]]]);
});

Deno.test("parse: a quoted token spanning lines keeps the rest of its line as args", () => {
  const [block] = parse('. {\n  dir "a\nb" c\n  next\n}');
  equal(block.directives.map(shape), [["dir", ["a\nb", "c"], null], ["next", [], null]]);
  const [block2] = parse('. {\n  dir "a\nb"\n  c\n}');
  equal(block2.directives.map(shape), [["dir", ["a\nb"], null], ["c", [], null]]);
});

Deno.test("parse: Unknown directive names the file and line", () => {
  const err = parseError(() =>
    parseCorefile(". {\n  whoami\n  bogus arg\n}", "Corefile", {
      isDirective: (name) => name === "whoami",
      env: () => undefined,
    })
  );
  equal(err.message, "Unknown directive 'bogus'");
  equal([err.file, err.line], ["Corefile", 3]);
  equal(err.describe(), "Corefile:3 - Error during parsing: Unknown directive 'bogus'");
});

Deno.test("parse: nested option names are not checked as directives", () => {
  const blocks = parseCorefile(". {\n  etcd {\n    anything goes\n  }\n}", "Corefile", {
    isDirective: (name) => name === "etcd",
  });
  equal(blocks[0].directives[0].block![0].name.text, "anything");
});

Deno.test("parse: a stray '}' on a directive's line", () => {
  expectError("localhost\n  dir1 {\n  } }", "Unexpected '}' because no matching opening brace", 3);
  expectError(". { whoami }", "Unexpected '}' because no matching opening brace", 1);
});

const UNCLOSED =
  "Syntax error: Unexpected EOF: the block opened on this line is not closed, expecting '}'";

Deno.test("parse: an unterminated directive block names the line of its '{'", () => {
  expectError("localhost\n  dir1 {\n    foo", UNCLOSED, 2);
  // The innermost block still open is the one named.
  expectError(". {\n  dir1 {\n    sub {\n      x\n    }\n", UNCLOSED, 2);
  expectError(". {\n  dir1 {\n    sub {\n      x\n", UNCLOSED, 3);
});

Deno.test("parse: an unterminated server block names the line of its '{', not the last token", () => {
  // Caddy says "Corefile:2 - Syntax error: Unexpected token 'whoami', expecting '}'".
  const err = expectError("example.org {\n  whoami", UNCLOSED, 1);
  ok(err instanceof CorefileSyntaxError);
  equal(err.describe(), `Corefile:1 - ${UNCLOSED}`);
  // When a directive's block closes last, Caddy takes its '}' for the server block's and
  // accepts the file; the server block is still open.
  expectError(". {\n  forward . 192.0.2.1 {\n    max_fails 3\n  }\n", UNCLOSED, 1);
  // A second block of the same file names the right '{'.
  expectError("a.org {\n  whoami\n}\n\nb.org {\n  whoami\n", UNCLOSED, 5);
});

Deno.test("parse: the next server block's key after a missing '}' names the open block", () => {
  const options = { isDirective: (name: string) => name === "whoami" };
  expectError(
    ". {\n  whoami\n\nexample.org {\n  whoami\n}\n",
    "Unknown directive 'example.org'; if it starts a server block, the block opened at Corefile:1 is missing its '}'",
    4,
    options,
  );
  // Without a '{' right after it, an unknown word is just that.
  expectError(
    ". {\n  fordward . 192.0.2.1 {\n  }\n}\n",
    "Unknown directive 'fordward'",
    2,
    options,
  );
  // Outside a braced block there is no '}' to miss.
  expectError("example.org\nwhoami\nb.org {\n}\n", "Unknown directive 'b.org'", 3, options);
});

Deno.test("parse: a quote that swallows the closing '}' is named too", () => {
  expectError(
    '. {\n  log "{\n  whoami\n}\n',
    `${UNCLOSED}; the quote opened at Corefile:2 runs to the end of the file`,
    1,
  );
});

Deno.test("parse: a '}' at the start of a line ends a brace-less block", () => {
  const blocks = parse("a.org\nwhoami\n}\nb.org\nlog");
  equal(blocks.map(summary), [
    { keys: ["a.org"], tokens: { whoami: 1 } },
    { keys: ["b.org"], tokens: { log: 1 } },
  ]);
});

Deno.test("parse: a directive block must open on the directive's line (idetcd rule)", () => {
  expectError(
    ". {\n  etcd\n  {\n    path /x\n  }\n}",
    "Unexpected '{' at the start of a line; open a block on the line of its directive",
    3,
  );
  expectError(
    ". {\n  etcd {\n    tls\n    {\n    }\n  }\n}",
    "Unexpected '{' at the start of a line; open a block on the line of its directive",
    4,
  );
});

Deno.test("parse: nothing may follow a block's '}' on its line (idetcd rule)", () => {
  expectError(
    ". {\n  etcd { path /x } more\n}",
    "Unexpected token 'more' after '}'; start it on a new line",
    2,
  );
  expectError(
    ". {\n  etcd {\n    tls { } x\n  }\n}",
    "Unexpected token 'x' after '}'; start it on a new line",
    3,
  );
});

Deno.test("parse: nested closing braces may share a line", () => {
  const [block] = parse(". {\n  a { b { c } }\n}");
  equal(block.directives.map(shape), [["a", [], [["b", [], [["c", [], null]]]]]]);
});

// --- environment -------------------------------------------------------------

const ENV: Record<string, string> = {
  PORT: "8080",
  ADDRESS: "servername.com",
  FOOBAR: "foobar",
  PARTIAL_DIR: "r1",
  SPACED: "a value with spaces",
  EMPTY: "",
};
const env = (name: string) => ENV[name];

Deno.test("env: Caddy's TestEnvironmentReplacement", () => {
  const key = (text: string) => parse(text, { env })[0].keys[0].text;
  const arg = (text: string) => parse(text, { env })[0].directives[0].args[0].text;
  equal(key("{$ADDRESS}"), "servername.com");
  equal(key("di{$PARTIAL_DIR}"), "dir1");
  equal(key("{$ADDRESS}:{$PORT}"), "servername.com:8080");
  equal(key("{%ADDRESS%}:{$PORT}"), "servername.com:8080");
  equal(key("{$ADDRESS}:{%PORT%}"), "servername.com:8080");
  equal(key(":{%PORT%}\ndir1 {$FOOBAR}"), ":8080");
  equal(arg(":{%PORT%}\ndir1 {$FOOBAR}"), "foobar");
  equal(arg(":{%PORT%}\ndir1 {%ADDRESS%}/{%FOOBAR%}"), "servername.com/foobar");
  equal(arg(":1234\ndir1 {%ADDRESS}"), "{%ADDRESS}");
  equal(key(":{$PORT$}"), ":");
  equal(arg(':1234\ndir1 "Test {$FOOBAR} test"'), "Test foobar test");
  equal(arg(':1234\nanswer "{{ .Name }} {$FOOBAR}"'), "{{ .Name }} foobar");
});

Deno.test("env: directive names, nested lines and imports' patterns are expanded", () => {
  const [block] = parse(". {\n  {$NAME} {\n    opt {$PORT}\n  }\n}", {
    env: (n) => ({ NAME: "etcd", PORT: "53" } as Record<string, string>)[n],
  });
  equal(block.directives.map(shape), [["etcd", [], [["opt", ["53"], null]]]]);
});

Deno.test("env: a value with spaces stays one token", () => {
  const [block] = parse(". {\n  dir {$SPACED}\n}", { env });
  equal(block.directives.map(shape), [["dir", ["a value with spaces"], null]]);
});

Deno.test("env: a key that becomes empty is skipped", () => {
  equal(parse("{$UNSET} a.org {\n}", { env })[0].keys.map((k) => k.text), ["a.org"]);
  equal(
    parse("{$EMPTY} {\n  whoami\n}\nb.org {\n}", { env }).map((b) => b.keys.map((k) => k.text)),
    [[
      "b.org",
    ]],
  );
});

Deno.test("env: the default lookup reads the process environment", () => {
  Deno.env.set("IDETCD_PARSER_TEST", "from-env");
  try {
    const blocks = parseCorefile("{$IDETCD_PARSER_TEST} {\n}", "Corefile", {
      isDirective: anyDirective,
    });
    equal(blocks[0].keys[0].text, "from-env");
    // Names Deno rejects are simply unset, as in Go.
    equal(
      parseCorefile("a{$A=B} {\n}", "Corefile", { isDirective: anyDirective })[0].keys[0].text,
      "a",
    );
  } finally {
    Deno.env.delete("IDETCD_PARSER_TEST");
  }
});

// --- snippets ----------------------------------------------------------------

Deno.test("snippets: Caddy's TestSnippets", () => {
  const blocks = parse(
    "\n\t\t(common) {\n\t\t\tgzip foo\n\t\t\terrors stderr\n\t\t}\n\t\thttp://example.com {\n\t\t\timport common\n\t\t}\n\t",
  );
  equal(blocks.length, 1);
  equal(summary(blocks[0]), { keys: ["http://example.com"], tokens: { gzip: 2, errors: 2 } });
  equal(blocks[0].directives[1].args[0].text, "stderr");
});

Deno.test("snippets: usable in several blocks and inside directive blocks", () => {
  const blocks = parse(
    "(opts) {\n  path /x\n  fallthrough\n}\n(plugins) {\n  whoami\n}\na.org {\n  import plugins\n  etcd {\n    import opts\n  }\n}\nb.org {\n  import plugins\n}",
  );
  equal(blocks.map((b) => b.directives.map(shape)), [
    [["whoami", [], null], ["etcd", [], [["path", ["/x"], null], ["fallthrough", [], null]]]],
    [["whoami", [], null]],
  ]);
});

Deno.test("snippets: a snippet may hold whole server blocks", () => {
  const blocks = parse("(srv) {\n  a.org {\n    whoami\n  }\n}\nimport srv\n");
  equal(blocks.map(summary), [{ keys: ["a.org"], tokens: { whoami: 1 } }]);
});

Deno.test("snippets: an empty snippet imports nothing", () => {
  equal(parse("(none) {\n}\na.org {\n  import none\n  whoami\n}").map(summary), [
    { keys: ["a.org"], tokens: { whoami: 1 } },
  ]);
});

Deno.test("snippets: redeclaration is an error", () => {
  expectError("(s) {\n}\n(s) {\n}", "redeclaration of previously declared snippet s", 3);
});

Deno.test("snippets: braces are mandatory", () => {
  expectError("(s)\nwhoami", "Syntax error: Unexpected token 'whoami', expecting '{'", 2);
  expectError("(s) {\n  whoami", UNCLOSED, 1);
  expectError("(s) {\n  dir {\n  x\n", UNCLOSED, 2);
});

Deno.test("snippets: a direct self-import is rejected", () => {
  expectError(
    "(loop) {\n  import loop\n}\nimport loop\n",
    "maximum snippet import depth (10000) exceeded",
    3,
  );
  expectError(
    "\n\t(loop) {\n\t{ }\n\timport loop\n\t}\n\timport loop\n\t",
    "maximum snippet import depth (10000) exceeded",
  );
});

Deno.test("snippets: a mutual cycle stops at the expansion cap", () => {
  expectError(
    "(a) {\n  import b\n}\n(b) {\n  import a\n}\nx.org {\n  import a\n}",
    "maximum snippet import depth (10) exceeded",
    undefined,
    { maxSnippetExpansions: 10 },
  );
});

Deno.test("snippets: must be defined before use (else the name is a file path)", () => {
  expectError(
    "a.org {\n  import later\n}\n(later) {\n  whoami\n}",
    "File to import not found: later",
    2,
    { cwd: "/nonexistent-dir" },
  );
});

Deno.test("snippets: a key that only looks like a snippet is a server key", () => {
  equal(parse("(a) (b) {\n}")[0].keys.map((k) => k.text), ["(a)", "(b)"]);
  // A lone key line at EOF is kept as a server block, parentheses and all.
  equal(parse("(a)")[0].keys.map((k) => k.text), ["(a)"]);
});

// --- import syntax -------------------------------------------------------------

Deno.test("import: argument errors", () => {
  expectError("import", "Wrong argument count or unexpected line ending after 'import'", 1);
  expectError(
    "a.org {\n  import\n}",
    "Wrong argument count or unexpected line ending after 'import'",
    2,
  );
  expectError('import ""', "Import requires a non-empty filepath", 1);
  expectError("import {$UNSET}", "Import requires a non-empty filepath", 1);
  expectError("import {$$}", "Import requires a non-empty filepath", 1);
  expectError(
    "import testdata/import_test1.txt testdata/import_test2.txt",
    "Import takes only one argument (glob pattern or file)",
    1,
  );
});

Deno.test("import: glob restrictions (Caddy fuzz cases)", () => {
  const opts = { cwd: "/nonexistent-dir" };
  for (const pattern of ["/*/*.txt", "/???/?*?o", "/??", "/[a-z]"]) {
    const err = parseError(() => parse(`import ${pattern}`, opts));
    equal(
      err.message,
      `Glob pattern may only contain one wildcard (*), but has others: ${pattern}`,
    );
  }
  for (const pattern of ['}{$"', "{$}", "{%}", "{%%}"]) {
    const err = parseError(() => parse(`import ${pattern}`, opts));
    equal(err.message, `File to import not found: ${pattern}`);
  }
  const bad = parseError(() => parse("import /tmp/x[", opts));
  equal(bad.message, "Failed to use import pattern /tmp/x[: syntax error in pattern");
});

Deno.test("import: an 'import' that is not first on its line is an ordinary token", () => {
  const [block] = parse("a.org {\n  basicauth / import password\n}");
  equal(block.directives.map(shape), [["basicauth", ["/", "import", "password"], null]]);
});

// --- import from files -------------------------------------------------------

async function withFiles(
  files: Record<string, string>,
  fn: (dir: string) => void | Promise<void>,
): Promise<void> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "idetcd-corefile-" }));
  try {
    for (const [name, text] of Object.entries(files)) {
      const path = `${dir}/${name}`;
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      await Deno.writeTextFile(path, text);
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const CADDY_TESTDATA = {
  "testdata/import_test1.txt": "dir2 arg1 arg2\ndir3",
  "testdata/import_test2.txt": "host1 {\n\tdir1\n\tdir2 arg1\n}",
  "testdata/import_glob0.txt": "glob0.host0 {\n\tdir2 arg1\n}\n\nglob0.host1 {\n}",
  "testdata/import_glob1.txt": "glob1.host0 {\n\tdir1\n\tdir2 arg1\n}",
  "testdata/import_glob2.txt": "# trailing comment\nglob2.host0 {\n\tdir2 arg1\n}",
};

Deno.test("import: Caddy's file import cases", async () => {
  await withFiles(CADDY_TESTDATA, (dir) => {
    const opts = { cwd: dir };
    equal(parse("localhost\n  dir1 arg1\n  import testdata/import_test1.txt", opts).map(summary), [
      { keys: ["localhost"], tokens: { dir1: 2, dir2: 3, dir3: 1 } },
    ]);
    equal(parse("import testdata/import_test2.txt", opts).map(summary), [
      { keys: ["host1"], tokens: { dir1: 1, dir2: 2 } },
    ]);
    equal(parse("import testdata/import_glob*.txt", opts).map((b) => b.keys.map((k) => k.text)), [
      ["glob0.host0"],
      ["glob0.host1"],
      ["glob1.host0"],
      ["glob2.host0"],
    ]);
    expectError(
      "import testdata/not_found.txt",
      "File to import not found: testdata/not_found.txt",
      1,
      opts,
    );
    expectError(
      "import notfound/file.conf",
      "File to import not found: notfound/file.conf",
      1,
      opts,
    );
  });
});

Deno.test("import: a glob without matches only warns", async () => {
  await withFiles({}, (dir) => {
    const warnings: string[] = [];
    equal(parse("import notfound/*", { cwd: dir, warn: (m) => warnings.push(m) }), []);
    equal(
      parse("a.org {\n  import nothing-*.conf\n  whoami\n}", {
        cwd: dir,
        warn: (m) => warnings.push(m),
      }).map(summary),
      [
        { keys: ["a.org"], tokens: { whoami: 1 } },
      ],
    );
    equal(warnings, [
      "No files matching import glob pattern: notfound/*",
      "No files matching import glob pattern: nothing-*.conf",
    ]);
  });
});

Deno.test("import: relative paths resolve against the importing file's directory", async () => {
  await withFiles(
    {
      "conf/Corefile": "import sub/zones.conf\n",
      "conf/sub/zones.conf": "a.org {\n  import plugins.conf\n}\n",
      "conf/sub/plugins.conf": "whoami\nlog\n",
    },
    (dir) => {
      const text = Deno.readTextFileSync(`${dir}/conf/Corefile`);
      const blocks = parseCorefile(text, `${dir}/conf/Corefile`, { isDirective: anyDirective });
      equal(blocks.map(summary), [{ keys: ["a.org"], tokens: { whoami: 1, log: 1 } }]);
      equal(blocks[0].keys[0].file, `${dir}/conf/sub/zones.conf`);
      equal(blocks[0].directives[1].name.file, `${dir}/conf/sub/plugins.conf`);
      equal(blocks[0].directives[1].name.line, 2);
      // A relative root-file name resolves against cwd.
      const viaCwd = parseCorefile(text, "conf/Corefile", { isDirective: anyDirective, cwd: dir });
      equal(viaCwd.map(summary), blocks.map(summary));
    },
  );
});

Deno.test("import: Caddy's TestRecursiveImport (relative and absolute)", async () => {
  await withFiles({ "testdata/recursive_import_test2": "dir2 1" }, async (dir) => {
    const file1 = `${dir}/testdata/recursive_import_test1`;
    const check = (blocks: ServerBlock[]) =>
      equal(blocks.map(summary), [{ keys: ["localhost"], tokens: { dir1: 1, dir2: 2 } }]);
    await Deno.writeTextFile(file1, "localhost\n\t\tdir1\n\t\timport recursive_import_test2");
    check(parse(`import ${file1}`, { cwd: "/" }));
    check(parse("import testdata/recursive_import_test1", { cwd: dir }));
    await Deno.writeTextFile(
      file1,
      `localhost\n\t\tdir1\n\t\timport ${dir}/testdata/recursive_import_test2`,
    );
    check(parse(`import ${file1}`, { cwd: "/" }));
    check(parse("import testdata/recursive_import_test1", { cwd: dir }));
  });
});

Deno.test("import: Caddy's TestDirectiveImport (import at the start of a line in a block)", async () => {
  await withFiles({ "testdata/directive_import_test": "prop1 1\n\tprop2 2" }, (dir) => {
    const blocks = parse(
      "localhost\n\tdir1\n\tproxy {\n\t\timport testdata/directive_import_test\n\t\ttransparent\n\t}",
      { cwd: dir },
    );
    equal(summary(blocks[0]), { keys: ["localhost"], tokens: { dir1: 1, proxy: 8 } });
    equal(blocks[0].directives[1].block!.map(shape), [
      ["prop1", ["1"], null],
      ["prop2", ["2"], null],
      ["transparent", [], null],
    ]);
    expectError(
      "localhost\n\tdir1\n\tproxy {\n\t\timport testdata/nonexistent_file\n\t\ttransparent\n\t}",
      "File to import not found: testdata/nonexistent_file",
      4,
      { cwd: dir },
    );
  });
});

Deno.test("import: Caddy's TestImportedFilesIgnoreNonDirectiveImportTokens", async () => {
  await withFiles(
    {
      "site.conf":
        "\n\t\thttp://example.com {\n\t\t\t# comment\n\t\t\tbasicauth / import password\n\t\t}\n",
    },
    (dir) => {
      const blocks = parse(`import ${dir}/site.conf`);
      equal(blocks[0].directives.map(shape), [["basicauth", ["/", "import", "password"], null]]);
    },
  );
});

Deno.test("import: Caddy's TestSnippetAcrossMultipleFiles", async () => {
  await withFiles(
    { "site.conf": "\n\t\thttp://example.com {\n\t\t\timport common\n\t\t}\n" },
    (dir) => {
      const blocks = parse(`\n(common) {\n\tgzip foo\n}\nimport ${dir}/site.conf\n`);
      equal(blocks.map(summary), [{ keys: ["http://example.com"], tokens: { gzip: 2 } }]);
    },
  );
});

Deno.test("import: addresses can come from an import among the keys", async () => {
  await withFiles({ "keys.conf": "b.org c.org" }, (dir) => {
    // import at the start of a line inside the key list, after a trailing comma.
    const [block] = parse(`a.org,\nimport ${dir}/keys.conf\n{\n  whoami\n}`);
    equal(summary(block), { keys: ["a.org", "b.org", "c.org"], tokens: { whoami: 1 } });
  });
});

Deno.test("import: errors inside an imported file name that file", async () => {
  await withFiles({ "bad.conf": "a.org {\n  whoami\n  bogus\n}\n" }, (dir) => {
    const err = parseError(() =>
      parseCorefile(`import ${dir}/bad.conf`, "Corefile", {
        isDirective: (n) => n === "whoami",
        env: () => undefined,
      })
    );
    equal([err.message, err.file, err.line], ["Unknown directive 'bogus'", `${dir}/bad.conf`, 3]);
  });
});

Deno.test("import: a directory is an error", async () => {
  await withFiles({ "conf.d/a.conf": "a.org {\n}" }, (dir) => {
    expectError(`import ${dir}/conf.d`, `Could not import ${dir}/conf.d: is a directory`, 1);
    // The glob form reaches it too.
    expectError(`import ${dir}/conf*`, `Could not import ${dir}/conf.d: is a directory`, 1);
  });
});

Deno.test("import: unreadable files report the open error", () => {
  const err = parseError(() =>
    parse("import /x/a.conf", {
      glob: () => ["/x/a.conf"],
      readFile: () => {
        throw new Deno.errors.PermissionDenied("denied");
      },
    })
  );
  equal(err.message, "Could not import /x/a.conf: open /x/a.conf: permission denied");
});

Deno.test("import: glob matches are imported in sorted order", async () => {
  await withFiles(
    { "z/b.conf": "b.org {\n}", "z/a.conf": "a.org {\n}", "z/c.txt": "c.org {\n}" },
    (dir) => {
      equal(parse(`import ${dir}/z/*.conf`).map((b) => b.keys[0].text), ["a.org", "b.org"]);
      equal(parse(`import ${dir}/z/?.conf`).map((b) => b.keys[0].text), ["a.org", "b.org"]);
      // One '*' and one '?' in different path elements are allowed.
      equal(parse(`import ${dir}/?/*.txt`).map((b) => b.keys[0].text), ["c.org"]);
    },
  );
});

Deno.test("import: injected file system", () => {
  const files: Record<string, string> = { "/etc/coredns/zones.conf": "a.org {\n  whoami\n}" };
  const blocks = parseCorefile("import zones.conf", "/etc/coredns/Corefile", {
    isDirective: anyDirective,
    readFile: (p) => files[p],
    glob: (p) => (p in files ? [p] : []),
  });
  equal(blocks.map(summary), [{ keys: ["a.org"], tokens: { whoami: 1 } }]);
});

Deno.test("import: a file import cycle stops at the cap", async () => {
  await withFiles({}, async (dir) => {
    await Deno.writeTextFile(`${dir}/a.conf`, `import ${dir}/b.conf`);
    await Deno.writeTextFile(`${dir}/b.conf`, `import ${dir}/a.conf`);
    const err = parseError(() => parse(`import ${dir}/a.conf`, { maxFileExpansions: 10 }));
    equal(err.message, "maximum file import depth (10) exceeded");
    // The 11th import statement is the one read from b.conf.
    equal(err.file, `${dir}/b.conf`);
  });
});

Deno.test("import: a file import cycle at CoreDNS's real cap terminates quickly", async () => {
  await withFiles({}, async (dir) => {
    await Deno.writeTextFile(`${dir}/self.conf`, "import self.conf");
    const started = performance.now();
    const err = parseError(() => parse(`import ${dir}/self.conf`));
    equal(err.message, "maximum file import depth (100000) exceeded");
    ok(performance.now() - started < 20000);
  });
});

Deno.test("import: one glob over many files counts as one import (Caddy's TestFileImportDir)", async () => {
  const files: Record<string, string> = {};
  for (let i = 0; i < 100; i++) files[`many/f_${i}`] = "";
  await withFiles(files, (dir) => {
    equal(parse(`import ${dir}/many/*`, { maxFileExpansions: 10 }), []);
  });
});

Deno.test("import: CRLF files and a BOM parse like plain ones", async () => {
  await withFiles({ "win.conf": "\uFEFFa.org {\r\n  whoami\r\n}\r\n" }, (dir) => {
    equal(parse(`import ${dir}/win.conf`).map(summary), [{
      keys: ["a.org"],
      tokens: { whoami: 1 },
    }]);
  });
});

Deno.test("throws CorefileError, never a bare Error, for user mistakes", () => {
  throws(() => parse("a.org {\n  x {\n"), CorefileError);
});
