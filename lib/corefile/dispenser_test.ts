import { deepStrictEqual as equal, ok, throws } from "node:assert/strict";
import { Dispenser, dispensers, onlyOnce, TokenStream } from "./dispenser.ts";
import { parseCorefile } from "./parser.ts";
import { CorefileError, type Directive } from "./types.ts";

function lines(text: string): Directive[] {
  return parseCorefile(`. {\n${text}\n}`, "Corefile", { isDirective: () => true })[0].directives;
}

Deno.test("dispenser: nextArg walks the line and stops at its end", () => {
  const d = new Dispenser("demo", lines("demo a b")[0]);
  equal(d.val(), "demo");
  ok(d.nextArg());
  equal(d.val(), "a");
  ok(d.nextArg());
  equal(d.val(), "b");
  ok(!d.nextArg());
  equal(d.val(), "b");
});

Deno.test("dispenser: argErr names the token under the cursor, as Caddy's ArgErr", () => {
  const d = new Dispenser("demo", lines("demo a b c")[0]);
  const err = (() => d.argErr())();
  ok(err instanceof CorefileError);
  equal(
    err.describe(),
    "plugin/demo: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'demo'",
  );
  equal(d.remainingArgs().map((t) => t.text), ["a", "b", "c"]);
  equal(d.argErr().message, "Wrong argument count or unexpected line ending after 'c'");
  equal(d.remainingArgs(), []);
});

Deno.test("dispenser: block lines are dispensers of their own; unknownProperty names the option", () => {
  const [d] = dispensers("demo", lines("demo {\n  opt 1\n  other\n}"));
  ok(d.hasBlock());
  const [opt, other] = d.blockLines();
  equal(opt.remainingArgs().map((t) => t.text), ["1"]);
  equal(other.unknownProperty().message, "unknown property 'other'");
  equal(other.unknownProperty().line, 4);
  const plain = new Dispenser("demo", lines("demo")[0]);
  ok(!plain.hasBlock());
  equal(plain.blockLines(), []);
});

Deno.test("dispenser: err defaults to the cursor's token; onlyOnce refuses a second line", () => {
  const d = new Dispenser("demo", lines("demo x")[0]);
  d.nextArg();
  const e = d.err("bad x");
  equal([e.message, e.line, e.plugin], ["bad x", 2, "demo"]);
  throws(() => onlyOnce("demo", lines("demo\ndemo")), {
    message: "this plugin can only be used once per Server Block",
  });
  equal(onlyOnce("demo", lines("demo")).name.text, "demo");
});

Deno.test("dispenser: args leaves the cursor on the name, so argErr names the option", () => {
  const d = new Dispenser("demo", lines("demo a b")[0]);
  equal(d.args.map((t) => t.text), ["a", "b"]);
  equal(d.argErr().message, "Wrong argument count or unexpected line ending after 'demo'");
});

Deno.test("token stream: Caddy's NextBlock reads an option's unread tokens as the next option", () => {
  const s = new TokenStream("demo", lines("demo z {\n  path /a b\n  other 1\n}")[0]);
  ok(s.next());
  equal(s.val(), "demo");
  equal(s.remainingArgs().map((t) => t.text), ["z"]);
  ok(s.nextBlock());
  equal(s.val(), "path");
  ok(s.nextArg());
  equal(s.val(), "/a");
  // "b" is on the same line: the next NextBlock stands on it.
  ok(s.nextBlock());
  equal(s.val(), "b");
  equal(s.err("unknown property 'b'").line, 3);
  ok(s.nextBlock());
  equal(s.val(), "other");
  ok(s.nextArg());
  equal(s.val(), "1");
  ok(!s.nextArg());
  equal(s.argErr().message, "Wrong argument count or unexpected line ending after '1'");
  ok(!s.nextBlock());
  equal(s.val(), "}");
});

Deno.test("token stream: a `{` under the cursor is Caddy's `expecting argument`", () => {
  const s = new TokenStream("demo", lines("demo {\n  x\n}")[0]);
  s.next();
  ok(s.nextArg());
  equal(s.val(), "{");
  equal(s.argErr().message, "Unexpected token '{', expecting argument");
  equal(s.argErr().plugin, "demo");
});
