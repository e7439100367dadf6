import { deepStrictEqual as equal } from "node:assert/strict";
import { abs, clean, dir, isAbs, join } from "./path.ts";

Deno.test("clean: Go's path.Clean cases", () => {
  const cases: [string, string][] = [
    ["", "."],
    ["abc/", "abc"],
    ["abc//def", "abc/def"],
    ["./abc", "abc"],
    ["/../abc", "/abc"],
    ["abc/../..", ".."],
    ["abc/..", "."],
    ["/a/b/./c/../d/", "/a/b/d"],
    ["/", "/"],
    ["//", "/"],
    ["../../a", "../../a"],
    // The etcd plugin's key cases.
    ["//a//b/", "/a/b"],
    ["/a/./b", "/a/b"],
    ["/a/../b", "/b"],
    ["/../a", "/a"],
    ["a/../..", ".."],
    ["a/b/../../..", ".."],
    ["abc/./../def", "def"],
  ];
  for (const [input, expected] of cases) equal(clean(input), expected, input);
});

Deno.test("join: Go's path.Join skips empty elements and cleans", () => {
  equal(join("a", "b"), "a/b");
  equal(join("a", ""), "a");
  equal(join("", "b"), "b");
  equal(join("", ""), "");
  equal(join("/etc/coredns", "../x.conf"), "/etc/x.conf");
  equal(join("a/", "/b"), "a/b");
  equal(join("/skydns/", "", "x"), "/skydns/x");
});

Deno.test("dir: Go's path.Dir", () => {
  equal(dir("/a/b/c"), "/a/b");
  equal(dir("a/b"), "a");
  equal(dir("b"), ".");
  equal(dir("/b"), "/");
  equal(dir(""), ".");
});

Deno.test("isAbs and abs: relative paths resolve against the given working directory", () => {
  equal(isAbs("/x"), true);
  equal(isAbs("x"), false);
  equal(abs("/a/./b", () => "/unused"), "/a/b");
  equal(abs("conf/x", () => "/etc/coredns"), "/etc/coredns/conf/x");
  let asked = false;
  abs("/a", () => {
    asked = true;
    return "/";
  });
  equal(asked, false);
});
