/**
 * The host questions the project's scripts share (tests' prerequisites, the
 * demo, the benchmark): where a command is, and whether missing Debian
 * packages can be installed here.
 *
 * @module
 */

/** Folders searched after PATH: knotd and apt-get live in sbin, not always on PATH. */
const SBIN_DIRS = ["/usr/sbin", "/sbin", "/usr/local/sbin"];

/** The absolute path of an executable `command` on PATH (or in the sbin folders), or undefined. */
export function which(command: string): string | undefined {
  const separator = Deno.build.os === "windows" ? ";" : ":";
  const dirs = [...(Deno.env.get("PATH") ?? "").split(separator), ...SBIN_DIRS];
  for (const dir of dirs) {
    if (!dir) continue;
    try {
      const info = Deno.statSync(`${dir}/${command}`);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return `${dir}/${command}`;
    } catch {
      // not in this folder
    }
  }
  return undefined;
}

/** True when `command` is an executable file on PATH (or in the sbin folders). */
export function onPath(command: string): boolean {
  return which(command) !== undefined;
}

/** True on Debian, Ubuntu and their derivatives (per /etc/os-release). */
export function isDebianLike(): boolean {
  try {
    const release = Deno.readTextFileSync("/etc/os-release");
    return [...release.matchAll(/^(?:ID|ID_LIKE)=(.*)$/gm)]
      .flatMap((m) => m[1].replace(/"/g, "").split(/\s+/))
      .some((id) => id === "debian" || id === "ubuntu");
  } catch {
    return false;
  }
}

/** True when missing packages can be installed with apt here (root on Debian/Ubuntu). */
export function canAptInstall(): boolean {
  return Deno.build.os === "linux" && Deno.uid() === 0 && isDebianLike() && onPath("apt-get");
}
