/**
 * The etcd connection options of the `etcd` block (`endpoint`, `credentials`,
 * `tls`), shared with the `idetcd` directive, with CoreDNS's error texts.
 *
 * @module
 */

import { isAbsolute, join, normalize } from "node:path";
import type { Dispenser } from "../../corefile/dispenser.ts";
import type { EtcdOptions, EtcdTLS } from "../../etcd/options.ts";

/**
 * Applies one block line if it is a connection option and returns true;
 * returns false for lines it does not own. Throws CorefileError as CoreDNS's
 * etcd setup does: `endpoint` needs an argument; `credentials` exactly two
 * (`credentials requires 2 arguments, username and password`); `tls` at
 * most three (`maximum of three arguments allowed for TLS config, found N`).
 */
export function parseEtcdConnectionOption(line: Dispenser, options: EtcdOptions): boolean {
  const args = line.args.map((t) => t.text);
  switch (line.name.text) {
    case "endpoint":
      if (args.length === 0) throw line.argErr();
      options.endpoints = args;
      return true;
    case "credentials":
      if (args.length === 0) throw line.argErr();
      if (args.length !== 2) {
        throw line.err(
          "credentials requires 2 arguments, username and password",
          line.args[line.args.length - 1],
        );
      }
      // The client authenticates only when both are non-empty; a later line replaces an earlier one.
      if (args[0] !== "" && args[1] !== "") {
        options.username = args[0];
        options.password = args[1];
      } else {
        delete options.username;
        delete options.password;
      }
      return true;
    case "tls":
      options.tls = tlsFromArgs(args, line);
      return true;
    default:
      return false;
  }
}

/** NewTLSConfigFromArgs' reading of 0..3 arguments: CA / cert key / cert key CA. */
function tlsFromArgs(args: string[], line: Dispenser): EtcdTLS {
  switch (args.length) {
    case 0:
      return {};
    case 1:
      return { ca: args[0] };
    case 2:
      return { cert: args[0], key: args[1] };
    case 3:
      return { cert: args[0], key: args[1], ca: args[2] };
    default:
      throw line.err(
        `maximum of three arguments allowed for TLS config, found ${args.length}`,
        line.name,
      );
  }
}

/** Go's error text for a failed os.ReadFile. */
function readError(path: string, err: unknown): string {
  const shown = normalize(path);
  if (err instanceof Deno.errors.NotFound) return `open ${shown}: no such file or directory`;
  if (err instanceof Deno.errors.PermissionDenied) return `open ${shown}: permission denied`;
  if (err instanceof Deno.errors.IsADirectory) return `read ${shown}: is a directory`;
  return `open ${shown}: ${(err as Error).message}`;
}

/** The PEM block types in `text`, in order. */
function pemTypes(text: string): string[] {
  const types: string[] = [];
  for (const m of text.matchAll(/-----BEGIN ([^\r\n-]*)-----[\s\S]*?-----END \1-----/g)) {
    types.push(m[1]);
  }
  return types;
}

/**
 * Checks the TLS files as CoreDNS's setup loads them (missing or PEM-less
 * files abort it), with Go's texts such as `could not load TLS cert: open
 * cert.pem: no such file or directory` or `could not read root certs from
 * ca.pem`. Relative paths are read from `configDir`. Undefined when fine.
 */
export function checkEtcdTLSFiles(tls: EtcdTLS, configDir: string): string | undefined {
  const read = (path: string): string | { error: string } => {
    try {
      return new TextDecoder().decode(
        Deno.readFileSync(isAbsolute(path) ? path : join(configDir, path)),
      );
    } catch (err) {
      return { error: readError(path, err) };
    }
  };
  if (tls.cert !== undefined && tls.key !== undefined) {
    const cert = read(tls.cert);
    if (typeof cert !== "string") return `could not load TLS cert: ${cert.error}`;
    const key = read(tls.key);
    if (typeof key !== "string") return `could not load TLS cert: ${key.error}`;
    const certTypes = pemTypes(cert);
    if (!certTypes.includes("CERTIFICATE")) {
      return certTypes.length === 0
        ? "could not load TLS cert: tls: failed to find any PEM data in certificate input"
        : `could not load TLS cert: tls: failed to find "CERTIFICATE" PEM block in certificate input after skipping PEM blocks of the following types: [${
          certTypes.join(" ")
        }]`;
    }
    const keyTypes = pemTypes(key);
    if (!keyTypes.some((t) => t === "PRIVATE KEY" || t.endsWith(" PRIVATE KEY"))) {
      return keyTypes.length === 0
        ? "could not load TLS cert: tls: failed to find any PEM data in key input"
        : `could not load TLS cert: tls: failed to find PEM block with type ending in "PRIVATE KEY" in key input after skipping PEM blocks of the following types: [${
          keyTypes.join(" ")
        }]`;
    }
  }
  if (tls.ca !== undefined) {
    const ca = read(tls.ca);
    if (typeof ca !== "string") return `error reading ${tls.ca}: ${ca.error}`;
    if (!pemTypes(ca).includes("CERTIFICATE")) return `could not read root certs from ${tls.ca}`;
  }
  return undefined;
}
