/**
 * The small HTTP side of the observability plugins (health, ready,
 * prometheus): Go's address syntax and one Deno.serve per address.
 *
 * @module
 */

import { CorefileError, type Token } from "../../corefile/types.ts";
import { type HostPort, splitHostPort } from "../../go/net.ts";

/** A listen address as a plugin argument: `[HOST]:PORT`. */
export interface HttpAddress {
  /** As written (the sharing key). */
  text: string;
  /** "" for every address. */
  host: string;
  /** The TCP port. */
  port: number;
}

/** Checks a `host:port` argument as the plugins' setup does (net.SplitHostPort), and a numeric port. */
export function parseHttpAddress(
  text: string,
  where: Token | undefined,
  plugin: string,
): HttpAddress {
  let parts: HostPort;
  try {
    parts = splitHostPort(text);
  } catch (err) {
    throw new CorefileError((err as Error).message, where, plugin);
  }
  // Go would also accept a service name ("http"); a number is all idetcd takes.
  if (!/^\d{1,5}$/.test(parts.port) || Number(parts.port) > 65535) {
    throw new CorefileError(`listen tcp ${text}: unknown port`, where, plugin);
  }
  return { text, host: parts.host, port: Number(parts.port) };
}

/** Answers one request. */
export type Route = (req: Request) => Response | Promise<Response>;

/** Go's http.ServeMux answer for unknown paths. */
function notFound(): Response {
  return new Response("404 page not found\n", {
    status: 404,
    headers: { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" },
  });
}

/** One HTTP server on one address, with exact-path routes. Close it with close(). */
export class HttpEndpoint {
  /** Where it listens. */
  readonly address: HttpAddress;
  #server: Deno.HttpServer<Deno.NetAddr>;
  #routes = new Map<string, Route>();
  #closing?: Promise<void>;

  /**
   * Binds at once (so a busy port fails the configuration that asked for
   * it); throws Error `plugin/NAME: listen tcp ADDR: REASON`.
   */
  constructor(address: HttpAddress, plugin: string) {
    this.address = address;
    // No host means every address: "::" is dual-stack on Linux and macOS;
    // fall back to IPv4 on hosts without IPv6.
    const hosts = address.host ? [address.host] : ["::", "0.0.0.0"];
    let server: Deno.HttpServer<Deno.NetAddr> | undefined;
    let lastError: unknown;
    for (const hostname of hosts) {
      try {
        server = Deno.serve(
          { hostname, port: address.port, onListen: () => {} },
          (req) => this.#handle(req),
        );
        break;
      } catch (err) {
        lastError = err;
        if (err instanceof Deno.errors.AddrInUse || err instanceof Deno.errors.PermissionDenied) {
          break;
        }
      }
    }
    if (!server) {
      const reason = lastError instanceof Error ? lastError.message : String(lastError);
      throw new Error(`plugin/${plugin}: listen tcp ${address.text}: ${reason}`);
    }
    this.#server = server;
  }

  /** The port actually bound. */
  get port(): number {
    return this.#server.addr.port;
  }

  /** Installs (or replaces) the handler of `path`. */
  route(path: string, handler: Route): void {
    this.#routes.set(path, handler);
  }

  async #handle(req: Request): Promise<Response> {
    const route = this.#routes.get(new URL(req.url).pathname);
    if (!route) return notFound();
    try {
      return await route(req);
    } catch (err) {
      return new Response(`${(err as Error).message}\n`, { status: 500 });
    }
  }

  /** Stops listening and waits for in-flight requests; idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#server.shutdown().then(() => this.#server.finished);
    return this.#closing;
  }
}

/** A plain-text response as Go's handlers write them. */
export function textResponse(status: number, body: string): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain; charset=utf-8" } });
}
