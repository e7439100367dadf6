/**
 * bind: listen only on the given addresses or interfaces, as CoreDNS's bind plugin.
 *
 * @module
 */

import { CorefileError, type Token } from "../../corefile/types.ts";
import type { PluginDefinition } from "../../server/plugin.ts";

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

function isAddress(text: string): boolean {
  return IPV4.test(text) || text.includes(":");
}

/**
 * Resolves `bind` arguments to addresses: IPs as given, interface names to
 * every address of that interface; `except` removes addresses.
 */
export function resolveBindAddresses(
  args: Token[],
  except: Token[],
  interfaces: Deno.NetworkInterfaceInfo[],
): string[] {
  const expand = (tok: Token): string[] => {
    if (isAddress(tok.text)) return [tok.text.replace(/^\[|\]$/g, "")];
    const found = interfaces.filter((i) => i.name === tok.text).map((i) =>
      i.family === "IPv6" && i.scopeid ? `${i.address}%${i.name}` : i.address
    );
    if (found.length === 0) {
      throw new CorefileError(
        `not a valid IP address or interface name: '${tok.text}'`,
        tok,
        "bind",
      );
    }
    // Link-local IPv6 needs a zone to bind; leave those out.
    return found.filter((a) => !a.includes("%"));
  };
  const excluded = new Set(except.flatMap(expand));
  const out: string[] = [];
  for (const tok of args) {
    for (const a of expand(tok)) if (!excluded.has(a) && !out.includes(a)) out.push(a);
  }
  return out;
}

/** The bind directive: `bind ADDRESS|IFACE... [{ except ADDRESS|IFACE... }]`; no handler. */
export const bindPlugin: PluginDefinition = {
  name: "bind",
  setup(ctx) {
    const args: Token[] = [];
    const except: Token[] = [];
    for (const d of ctx.directives) {
      args.push(...d.args);
      for (const line of d.block ?? []) {
        if (line.name.text !== "except") {
          throw new CorefileError(`unknown property '${line.name.text}'`, line.name, "bind");
        }
        if (line.args.length === 0) {
          throw new CorefileError(
            `Wrong argument count or unexpected line ending after 'except'`,
            line.name,
            "bind",
          );
        }
        except.push(...line.args);
      }
    }
    if (args.length === 0) {
      throw new CorefileError(
        `Wrong argument count or unexpected line ending after 'bind'`,
        ctx.directives[0].name,
        "bind",
      );
    }
    const needsInterfaces = [...args, ...except].some((t) => !isAddress(t.text));
    const addresses = resolveBindAddresses(
      args,
      except,
      needsInterfaces ? Deno.networkInterfaces() : [],
    );
    if (addresses.length === 0) {
      throw new CorefileError("bind: no address left to listen on", ctx.directives[0].name, "bind");
    }
    ctx.serverOptions.bind.push(...addresses.filter((a) => !ctx.serverOptions.bind.includes(a)));
    return null;
  },
};
