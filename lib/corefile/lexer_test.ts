import { deepStrictEqual as equal } from "node:assert/strict";
import { lex } from "./lexer.ts";

/** [line, text] pairs, the shape of Caddy's lexer_test.go expectations. */
function tokens(input: string): [number, string][] {
  return lex(input, "Corefile").map((t) => [t.line, t.text]);
}

const caddyCases: { name: string; input: string; expected: [number, string][] }[] = [
  { name: "single token", input: "host:123", expected: [[1, "host:123"]] },
  {
    name: "blank line between",
    input: "host:123\n\n\t\t\t\t\tdirective",
    expected: [[1, "host:123"], [3, "directive"]],
  },
  {
    name: "block across lines",
    input: "host:123 {\n\t\t\t\t\t\tdirective\n\t\t\t\t\t}",
    expected: [[1, "host:123"], [1, "{"], [2, "directive"], [3, "}"]],
  },
  {
    name: "block on one line gives 4 tokens",
    input: "host:123 { directive }",
    expected: [[1, "host:123"], [1, "{"], [1, "directive"], [1, "}"]],
  },
  {
    name: "comments",
    input: "host:123 {\n\t#comment\n\tdirective\n\t# comment\n\tfoobar # another comment\n}",
    expected: [[1, "host:123"], [1, "{"], [3, "directive"], [5, "foobar"], [6, "}"]],
  },
  {
    name: "quoted value",
    input: 'a "quoted value" b\n\t\t\t\t\tfoobar',
    expected: [[1, "a"], [1, "quoted value"], [1, "b"], [2, "foobar"]],
  },
  {
    name: "escaped quotes",
    input: 'A "quoted \\"value\\" inside" B',
    expected: [[1, "A"], [1, 'quoted "value" inside'], [1, "B"]],
  },
  { name: "other backslash kept", input: '"don\'t\\escape"', expected: [[1, "don't\\escape"]] },
  {
    name: "double backslash kept",
    input: '"don\'t\\\\escape"',
    expected: [[1, "don't\\\\escape"]],
  },
  {
    name: "quoted line break",
    input: 'A "quoted value with line\n\t\t\t\t\tbreak inside" {\n\t\t\t\t\t\tfoobar\n\t\t\t\t\t}',
    expected: [
      [1, "A"],
      [1, "quoted value with line\n\t\t\t\t\tbreak inside"],
      [2, "{"],
      [3, "foobar"],
      [4, "}"],
    ],
  },
  {
    name: "windows path",
    input: '"C:\\php\\php-cgi.exe"',
    expected: [[1, "C:\\php\\php-cgi.exe"]],
  },
  {
    name: "empty quoted token",
    input: 'empty "" string',
    expected: [[1, "empty"], [1, ""], [1, "string"]],
  },
  {
    name: "CR skipped",
    input: "skip those\r\nCR characters",
    expected: [[1, "skip"], [1, "those"], [2, "CR"], [2, "characters"]],
  },
];

for (const c of caddyCases) {
  Deno.test(`lex: ${c.name}`, () => {
    equal(tokens(c.input), c.expected);
  });
}

Deno.test("lex: empty, whitespace-only and comment-only input give no tokens", () => {
  for (const input of ["", "\n", " ", "\t\n", "# only a comment", "\uFEFF"]) {
    equal(tokens(input), [], JSON.stringify(input));
  }
});

Deno.test("lex: tokens are split on whitespace and carry the file name", () => {
  equal(lex("a b c\nd e", "x.conf"), [
    { text: "a", file: "x.conf", line: 1 },
    { text: "b", file: "x.conf", line: 1 },
    { text: "c", file: "x.conf", line: 1 },
    { text: "d", file: "x.conf", line: 2 },
    { text: "e", file: "x.conf", line: 2 },
  ]);
});

Deno.test("lex: a leading BOM is dropped, a later one is kept", () => {
  equal(tokens("\uFEFFexample.org"), [[1, "example.org"]]);
  equal(tokens("a \uFEFFb"), [[1, "a"], [1, "\uFEFFb"]]);
});

Deno.test("lex: # inside a word ends the word", () => {
  equal(tokens("foo#bar"), [[1, "foo"]]);
  equal(tokens("foo#bar\nbaz"), [[1, "foo"], [2, "baz"]]);
  equal(tokens("a #b c\nd"), [[1, "a"], [2, "d"]]);
});

Deno.test("lex: a mid-word comment only lasts to the next whitespace (Caddy quirk)", () => {
  // Caddy's next() emits "foo" at the space and starts afresh, comment flag reset.
  equal(tokens("foo#bar baz"), [[1, "foo"], [1, "baz"]]);
});

Deno.test("lex: # inside quotes is literal", () => {
  equal(tokens('"a#b" c'), [[1, "a#b"], [1, "c"]]);
});

Deno.test("lex: the closing quote ends the token", () => {
  equal(tokens('"a"b'), [[1, "a"], [1, "b"]]);
  equal(tokens('"a""b"'), [[1, "a"], [1, "b"]]);
});

Deno.test("lex: a quote that does not start a token is literal", () => {
  equal(tokens('a"b" c'), [[1, 'a"b"'], [1, "c"]]);
  equal(tokens('x="y z"'), [[1, 'x="y'], [1, 'z"']]);
});

Deno.test("lex: braces are tokens only when separated by whitespace", () => {
  equal(tokens("a{ }b {c}"), [[1, "a{"], [1, "}b"], [1, "{c}"]]);
});

Deno.test("lex: CR outside quotes is ignored even inside a word", () => {
  equal(tokens("fo\ro bar\r\n"), [[1, "foo"], [1, "bar"]]);
});

Deno.test("lex: CR inside quotes is kept", () => {
  equal(tokens('"a\r\nb"'), [[1, "a\r\nb"]]);
});

Deno.test("lex: a quoted token records its line breaks", () => {
  const [first, second] = lex('"a\nb\nc" d\ne', "Corefile");
  equal(first, { text: "a\nb\nc", file: "Corefile", line: 1, lineBreaks: 2 });
  equal(second, { text: "d", file: "Corefile", line: 3 });
  equal(lex('"a\nb" d\ne', "C")[2].line, 3);
});

Deno.test("lex: unterminated quotes at EOF", () => {
  equal(tokens('a "bc'), [[1, "a"], [1, "bc"]]);
  equal(tokens('a "'), [[1, "a"]]);
  equal(tokens('"bc\\'), [[1, "bc"]]);
});

Deno.test("lex: escaped newline inside quotes keeps the backslash and counts the line", () => {
  const [t, next] = lex('"a\\\nb" c', "C");
  equal([t.text, t.line, t.lineBreaks], ["a\\\nb", 1, 1]);
  equal(next.line, 2);
});

Deno.test("lex: Unicode white space separates tokens", () => {
  equal(tokens("a\u00a0b\u2003c\u3000d\u0085e\vf\fg"), [
    [1, "a"],
    [1, "b"],
    [1, "c"],
    [1, "d"],
    [1, "e"],
    [1, "f"],
    [1, "g"],
  ]);
  // Zero-width space is not white space in Go.
  equal(tokens("a\u200bb"), [[1, "a\u200bb"]]);
});

Deno.test("lex: non-BMP characters pass through", () => {
  equal(tokens("héllo 😀.example"), [[1, "héllo"], [1, "😀.example"]]);
});
