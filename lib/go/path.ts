/**
 * Go's `path` package for slash-separated paths (what `path/filepath` does
 * on POSIX): Clean, Join, Dir, IsAbs, and Abs against a given working
 * directory. The Corefile parser resolves `import` patterns with these so
 * that the files it names, and the errors that name them, are CoreDNS's.
 *
 * @module
 */

/** Go's path.Clean: the shortest equivalent path ("" -> ".", "/../a" -> "/a", "a/.." -> "."). */
export function clean(path: string): string {
  if (path === "") return ".";
  const rooted = path.startsWith("/");
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!rooted) out.push("..");
      continue;
    }
    out.push(part);
  }
  const joined = out.join("/");
  if (rooted) return "/" + joined;
  return joined === "" ? "." : joined;
}

/** Go's path.Join: the non-empty elements joined by "/" and cleaned; "" when all are empty. */
export function join(...elements: string[]): string {
  const parts = elements.filter((e) => e !== "");
  return parts.length === 0 ? "" : clean(parts.join("/"));
}

/** Go's path.Dir: everything but the last element, cleaned ("a/b" -> "a", "b" -> "."). */
export function dir(path: string): string {
  return clean(path.slice(0, path.lastIndexOf("/") + 1));
}

/** Go's path.IsAbs: whether the path starts at the root. */
export function isAbs(path: string): boolean {
  return path.startsWith("/");
}

/**
 * Go's filepath.Abs with the working directory passed in (asked for only
 * when `path` is relative, so a caller with an absolute path needs no
 * permission to read it).
 */
export function abs(path: string, cwd: () => string): string {
  return isAbs(path) ? clean(path) : join(cwd(), path);
}
