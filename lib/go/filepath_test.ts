import { deepStrictEqual as equal, throws } from "node:assert/strict";
import { BAD_PATTERN, glob, match } from "./filepath.ts";

Deno.test("match: Go filepath.Match cases", () => {
  const cases: [string, string, boolean | "error"][] = [
    ["abc", "abc", true],
    ["*", "abc", true],
    ["*c", "abc", true],
    ["a*", "a", true],
    ["a*", "abc", true],
    ["a*", "ab/c", false],
    ["a*/b", "abc/b", true],
    ["a*/b", "a/c/b", false],
    ["a*b*c*d*e*/f", "axbxcxdxe/f", true],
    ["ab[c]", "abc", true],
    ["ab[b-d]", "abc", true],
    ["ab[e-g]", "abc", false],
    ["ab[^c]", "abc", false],
    ["ab[^b-d]", "abe", true],
    ["a\\*b", "a*b", true],
    ["a\\*b", "ab", false],
    ["a?b", "a☺b", true],
    ["a?b", "a/b", false],
    ["a*b", "a/b", false],
    ["[\\]a]", "]", true],
    ["[", "a", "error"],
    ["[^", "a", "error"],
    ["a[", "a", "error"],
    ["a[", "x", "error"],
    ["*x", "xxx", true],
    ["\\", "a", "error"],
    ["a\\", "a", "error"],
  ];
  for (const [pattern, name, expected] of cases) {
    if (expected === "error") {
      throws(() => match(pattern, name), { message: BAD_PATTERN }, pattern);
    } else {
      equal(match(pattern, name), expected, `${pattern} ~ ${name}`);
    }
  }
});

Deno.test("glob: literal paths, one wildcard, sorted matches, missing directories", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "idetcd-go-glob-" }));
  try {
    for (const name of ["b.conf", "a.conf", "c.txt"]) {
      await Deno.writeTextFile(`${dir}/${name}`, "");
    }
    equal(glob(`${dir}/a.conf`), [`${dir}/a.conf`]);
    equal(glob(`${dir}/z.conf`), []);
    equal(glob(`${dir}/*.conf`), [`${dir}/a.conf`, `${dir}/b.conf`]);
    equal(glob(`${dir}/missing/*.conf`), []);
    equal(glob(`${dir}/?.txt`), [`${dir}/c.txt`]);
    throws(() => glob(`${dir}/[`), { message: BAD_PATTERN });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
