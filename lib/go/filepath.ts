/**
 * Go's path/filepath Match and Glob on POSIX: the shell patterns of a
 * Corefile's `import` (`*`, `?`, `[...]`, `\` escapes; wildcards never match
 * `/`), with Go's quirks kept, such as checking the whole pattern for
 * syntax errors even when an early part already failed to match.
 *
 * @module
 */

import { join } from "./path.ts";

/** Go's filepath.ErrBadPattern text, the message of every malformed-pattern error. */
export const BAD_PATTERN = "syntax error in pattern";

/**
 * Go's filepath.Match: whether `name` matches the shell pattern (`*`, `?`,
 * `[...]`, `\` escapes; wildcards never match `/`). Throws on a malformed pattern.
 */
export function match(pattern: string, name: string): boolean {
  let pat = pattern;
  let str = name;
  outer: while (pat.length > 0) {
    const { star, chunk, rest } = scanChunk(pat);
    pat = rest;
    if (star && chunk === "") return !str.includes("/");
    const first = matchChunk(chunk, str);
    if (first !== null && (first.length === 0 || pat.length > 0)) {
      str = first;
      continue;
    }
    if (star) {
      for (let i = 0; i < str.length && str[i] !== "/"; i++) {
        const t = matchChunk(chunk, str.slice(i + 1));
        if (t !== null) {
          if (pat.length === 0 && t.length > 0) continue;
          str = t;
          continue outer;
        }
      }
    }
    // Before answering "no", make sure the rest of the pattern is well formed.
    while (pat.length > 0) {
      const next = scanChunk(pat);
      pat = next.rest;
      matchChunk(next.chunk, "");
    }
    return false;
  }
  return str.length === 0;
}

function scanChunk(pattern: string): { star: boolean; chunk: string; rest: string } {
  let p = pattern;
  let star = false;
  while (p.length > 0 && p[0] === "*") {
    p = p.slice(1);
    star = true;
  }
  let inRange = false;
  let i = 0;
  scan: for (; i < p.length; i++) {
    switch (p[i]) {
      case "\\":
        if (i + 1 < p.length) i++;
        break;
      case "[":
        inRange = true;
        break;
      case "]":
        inRange = false;
        break;
      case "*":
        if (!inRange) break scan;
    }
  }
  return { star, chunk: p.slice(0, i), rest: p.slice(i) };
}

function codePointLength(s: string): number {
  const c = s.codePointAt(0)!;
  return c > 0xffff ? 2 : 1;
}

// Returns the rest of `s` after matching `chunk` at its start, or null; throws on a bad chunk.
function matchChunk(chunkIn: string, sIn: string): string | null {
  let chunk = chunkIn;
  let s = sIn;
  let failed = false;
  while (chunk.length > 0) {
    if (!failed && s.length === 0) failed = true;
    switch (chunk[0]) {
      case "[": {
        let r = -1;
        if (!failed) {
          r = s.codePointAt(0)!;
          s = s.slice(codePointLength(s));
        }
        chunk = chunk.slice(1);
        let negated = false;
        if (chunk.length > 0 && chunk[0] === "^") {
          negated = true;
          chunk = chunk.slice(1);
        }
        let matched = false;
        let ranges = 0;
        for (;;) {
          if (chunk.length > 0 && chunk[0] === "]" && ranges > 0) {
            chunk = chunk.slice(1);
            break;
          }
          const lo = getEscaped(chunk);
          chunk = lo.rest;
          let hi = lo.rune;
          if (chunk[0] === "-") {
            const h = getEscaped(chunk.slice(1));
            chunk = h.rest;
            hi = h.rune;
          }
          if (lo.rune <= r && r <= hi) matched = true;
          ranges++;
        }
        if (matched === negated) failed = true;
        break;
      }
      case "?":
        if (!failed) {
          if (s[0] === "/") failed = true;
          s = s.slice(codePointLength(s));
        }
        chunk = chunk.slice(1);
        break;
      case "\\":
        chunk = chunk.slice(1);
        if (chunk.length === 0) throw new Error(BAD_PATTERN);
        // falls through: the escaped character is matched literally
      default:
        if (!failed) {
          if (chunk[0] !== s[0]) failed = true;
          s = s.slice(1);
        }
        chunk = chunk.slice(1);
    }
  }
  return failed ? null : s;
}

function getEscaped(chunkIn: string): { rune: number; rest: string } {
  let chunk = chunkIn;
  if (chunk.length === 0 || chunk[0] === "-" || chunk[0] === "]") throw new Error(BAD_PATTERN);
  if (chunk[0] === "\\") {
    chunk = chunk.slice(1);
    if (chunk.length === 0) throw new Error(BAD_PATTERN);
  }
  const rune = chunk.codePointAt(0)!;
  const rest = chunk.slice(codePointLength(chunk));
  if (rest.length === 0) throw new Error(BAD_PATTERN);
  return { rune, rest };
}

function hasMeta(path: string): boolean {
  return /[*?[\\]/.test(path);
}

/** Go's filepath.Glob over the real file system: sorted matches, [] when nothing matches. */
export function glob(pattern: string): string[] {
  match(pattern, ""); // validates the whole pattern first, as Go does
  if (!hasMeta(pattern)) {
    try {
      Deno.lstatSync(pattern);
      return [pattern];
    } catch {
      return [];
    }
  }
  const slash = pattern.lastIndexOf("/");
  let dir = pattern.slice(0, slash + 1);
  const file = pattern.slice(slash + 1);
  dir = dir === "" ? "." : dir === "/" ? dir : dir.slice(0, -1);
  if (!hasMeta(dir)) return globDir(dir, file, []);
  if (dir === pattern) throw new Error(BAD_PATTERN);
  let matches: string[] = [];
  for (const d of glob(dir)) matches = globDir(d, file, matches);
  return matches;
}

function globDir(dir: string, pattern: string, matches: string[]): string[] {
  let names: string[];
  try {
    if (!Deno.statSync(dir).isDirectory) return matches;
    names = [...Deno.readDirSync(dir)].map((e) => e.name);
  } catch {
    return matches; // Go ignores I/O errors here
  }
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const name of names) {
    if (match(pattern, name)) matches.push(join(dir, name));
  }
  return matches;
}
