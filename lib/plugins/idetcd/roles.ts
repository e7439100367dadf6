/**
 * Roles: named ranges of IDs from one Corefile (`role chief 1`, `role ps
 * 2-3`, `role worker 4-8`), so TensorFlow's chief / ps / worker / evaluator
 * or a head / worker split come from the same file on every node. A role's
 * size is its limit, and since every ID is claimed atomically, so is the
 * role's: there are never two chiefs.
 *
 * @module
 */

/** One role and the IDs it owns, ascending. */
export interface Role {
  /**
   * As the Corefile's `role NAME` writes it: what IDETCD_ROLE, `claim-role` and `_NAME._nodes`
   * name.
   */
  name: string;
  /** The IDs it owns, ascending; their count is the role's size. */
  ids: number[];
}

/** Every role of a pattern; empty when the Corefile declares none. */
export class RoleMap {
  /** The roles in the Corefile's order. */
  readonly roles: readonly Role[];
  readonly #byId = new Map<number, string>();

  /** Builds the map; the roles must not share an ID (setup.ts checks it with file:line). */
  constructor(roles: readonly Role[]) {
    this.roles = roles;
    for (const role of roles) for (const id of role.ids) this.#byId.set(id, role.name);
  }

  /** True when no role is declared. */
  get empty(): boolean {
    return this.roles.length === 0;
  }

  /** The role of `id`: "" when no role is declared. */
  roleOf(id: number): string {
    return this.#byId.get(id) ?? "";
  }

  /** The IDs a node asking for `role` may claim (undefined: any). */
  idsOf(role: string | undefined): readonly number[] | undefined {
    if (!role) return undefined;
    return this.roles.find((r) => r.name === role)?.ids;
  }

  /** The role named `name`, if declared. */
  get(name: string): Role | undefined {
    return this.roles.find((r) => r.name === name);
  }
}

/** Parses `N` or `N-M` into IDs; undefined when malformed. */
export function parseIdRange(text: string): number[] | undefined {
  const m = /^(\d+)(?:-(\d+))?$/.exec(text);
  if (!m) return undefined;
  const first = Number(m[1]);
  const last = m[2] === undefined ? first : Number(m[2]);
  if (first < 1 || last < first || last - first > 1_000_000) return undefined;
  const ids: number[] = [];
  for (let id = first; id <= last; id++) ids.push(id);
  return ids;
}

/** A valid role name: what a DNS label `_NAME` and TF_CONFIG can carry. */
export function isRoleName(name: string): boolean {
  return /^[a-z][a-z0-9-]{0,30}$/.test(name);
}
