/**
 * `idetcd status` and `idetcd hosts` (placeholder until they are built).
 *
 * @module
 */

import type { IdetcdConfig } from "./setup.ts";

/** Runs `status` or `hosts`; resolves with the exit code. */
export function runReport(name: string, _args: string[], _config: IdetcdConfig): Promise<number> {
  console.error(`idetcd ${name}: not available yet`);
  return Promise.resolve(1);
}
