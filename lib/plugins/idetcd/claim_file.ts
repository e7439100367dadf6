/**
 * The `file` directive's state file: what programs on the node read to learn
 * whether, and as what, this node holds a name.
 *
 * While the name is held:
 *
 *     {"held":true,"id":4,"name":"worker4.tf.local.",...,"fence":1234}
 *
 * and as soon as the node stops vouching for it (fenced, lost, released):
 *
 *     {"held":false,"state":"fenced","reason":"...","lastId":4,"lastName":"worker4.tf.local.",...}
 *
 * without `id` and `name`, so a reader that only looks for the name finds
 * none. Written atomically (temporary file, then rename).
 *
 * @module
 */

import { dirname } from "node:path";

/** The file while the name is held. */
export interface HeldClaimFile {
  /** Always true here: the discriminant readers test before trusting `id` and `name`. */
  held: true;
  /** The ID held, in 1..limit. */
  id: number;
  /** Fully qualified ("worker4.tf.local."). */
  name: string;
  /** The pattern's zone ("tf.local."). */
  zone: string;
  /**
   * The `pattern` as written in the Corefile; a later start reuses `id` only under the same
   * pattern.
   */
  pattern: string;
  /** The addresses advertised under `name`. */
  addresses: string[];
  /** The service port advertised in SRV answers and TF_CONFIG; absent when none is configured. */
  port?: number;
  /** The sticky identity the claim was made with (see identity.ts). */
  identity: string;
  /** When the name was claimed (ISO 8601); kept across take-overs of the same claim. */
  claimedAt: string;
  /** The fencing token: the lock's create_revision, which grows with every new claim. */
  fence: number;
}

/** The file while no name is held. */
export interface UnheldClaimFile {
  /** Always false here: no name is vouched for, whatever `lastName` says. */
  held: false;
  /** The driver's state: "claiming", "waiting", "fenced" or "stopped". */
  state: string;
  /** Why no name is held, one line for the user. */
  reason: string;
  /** The ID held last, tried first at the next start. */
  lastId?: number;
  /** The name held last (fully qualified); it is not this node's now. */
  lastName?: string;
  /** The pattern's zone ("tf.local."). */
  zone: string;
  /** The `pattern` as written in the Corefile; `lastId` is reused only under the same pattern. */
  pattern: string;
  /** The sticky identity this node claims with (see identity.ts). */
  identity: string;
  /** When this state began (ISO 8601). */
  since: string;
}

/** Either form of the state file. */
export type ClaimFile = HeldClaimFile | UnheldClaimFile;

/** The ID to try first from a state file written for the same pattern, if any. */
export function previousId(path: string, pattern: string): number | undefined {
  const data = readClaimFile(path);
  if (!data || data.pattern !== pattern) return undefined;
  const id = data.held ? data.id : data.lastId;
  return Number.isSafeInteger(id) ? id : undefined;
}

/** Reads the state file; undefined when missing or unreadable. */
export function readClaimFile(path: string): ClaimFile | undefined {
  try {
    const data = JSON.parse(Deno.readTextFileSync(path)) as Partial<ClaimFile> & { id?: number };
    if (typeof data !== "object" || data === null) return undefined;
    // Files written before `held` existed describe a held name.
    if (data.held === undefined && Number.isSafeInteger(data.id)) {
      return { ...data, held: true } as HeldClaimFile;
    }
    return typeof data.held === "boolean" ? data as ClaimFile : undefined;
  } catch {
    return undefined;
  }
}

/** Writes the state file atomically (temporary file, then rename). */
export function writeClaimFile(path: string, data: ClaimFile): void {
  Deno.mkdirSync(dirname(path), { recursive: true });
  const temporary = `${path}.tmp-${Deno.pid}`;
  Deno.writeTextFileSync(temporary, JSON.stringify(data, null, 2) + "\n");
  Deno.renameSync(temporary, path);
}
