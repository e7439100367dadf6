/**
 * bind: listen only on the given addresses or interfaces, as CoreDNS's bind plugin.
 *
 * @module
 */

import { Dispenser, dispensers } from "../../corefile/dispenser.ts";
import { CorefileError, type Token } from "../../corefile/types.ts";
import { isIP } from "../../go/ip.ts";
import type { PluginDefinition } from "../../server/plugin.ts";

/** Whether a bind argument is an address (brackets and a zone allowed) rather than an interface. */
function isAddress(text: string): boolean {
  return isIP(text.replace(/^\[|\]$/g, "").replace(/%[^%]*$/, ""));
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
    for (const d of dispensers("bind", ctx.directives)) {
      args.push(...d.remainingArgs());
      for (const line of d.blockLines()) {
        if (line.val() !== "except") throw line.unknownProperty();
        const excepted = line.remainingArgs();
        if (excepted.length === 0) throw line.argErr();
        except.push(...excepted);
      }
    }
    // Every bind line of the block may be empty but one must name something: after 'bind'.
    if (args.length === 0) throw new Dispenser("bind", ctx.directives[0]).argErr();
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
