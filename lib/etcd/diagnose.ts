/**
 * Errors that say what is wrong. gRPC reports every failed connection as
 * `14 UNAVAILABLE: No connection established. Last error: ...` with, at
 * best, a low-level hint (`write EPIPE`, `Failed to connect`, often `null`).
 * When that is all there is, {@link probeEndpoint} asks the endpoint itself:
 * a TCP connect, then a TLS handshake with the same CA, certificate and key
 * (or a plain HTTP request), and names the cause and what to check:
 *
 * ```txt
 * etcd at https://127.0.0.1:2379: TLS handshake failed: certificate signed by unknown authority; check the CA file given to tls (/etc/idetcd/ca.pem)
 * ```
 *
 * {@link cleanEtcdError} is the one-line cleaner every etcd message goes
 * through (no stack, no empty `Resolution note:`, no `Last error: null`).
 *
 * @module
 */

import type { Buffer } from "node:buffer";
import net from "node:net";
import tls from "node:tls";
import { parseEndpoint, readPem, resolveTlsPaths } from "./endpoint.ts";
import type { EtcdOptions } from "./options.ts";

/** How long one endpoint probe may take in all (connect, handshake, first reply), ms. */
export const PROBE_TIMEOUT_MS = 1_500;

/**
 * One line for an etcd error: the first line of its message without gRPC's
 * empty suffixes (`Resolution note:` with nothing after it, `Last error: null`),
 * timestamps and `Error: ` prefixes inside it.
 */
export function cleanEtcdError(err: unknown): string {
  let text = err instanceof Error ? err.message : String(err);
  text = text.split("\n")[0];
  // grpc-js stamps connection errors: "Failed to connect (2026-12-01T17:25:30.740Z)".
  text = text.replace(/\s*\(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z\)/g, "");
  text = text.replace(/[.\s]*Resolution note:\s*$/, "");
  text = text.replace(/[.\s]*Last error:\s*(?:null|undefined)?\s*\.?\s*$/, "");
  text = text.replace(/Last error: (?:Error: )+/, "Last error: ");
  // A message of ours carried through gRPC: "14 UNAVAILABLE: etcd at ...".
  text = text.replace(/^\d+ [A-Z_]+: (?=etcd at )/, "");
  // "Deadline exceeded after 0.000s,waiting for name resolution"
  text = text.replace(/(\d(?:\.\d+)?s),(?=\S)/g, "$1, ");
  return text.replace(/[\s.]+$/, "").trim() || "unknown error";
}

/** True when etcd itself answered and refused (auth, permissions, `etcdserver:` errors). */
export function isEtcdAnswer(err: unknown): boolean {
  const text = err instanceof Error ? err.message : String(err);
  return /etcdserver:|PERMISSION_DENIED|UNAUTHENTICATED|INVALID_ARGUMENT|FAILED_PRECONDITION|OUT_OF_RANGE|NOT_FOUND|ALREADY_EXISTS|permission denied|authentication failed/i
    .test(text);
}

/**
 * True for a connection failure whose message names no cause worth showing
 * as it is: gRPC's `UNAVAILABLE` without an answer from etcd.
 */
export function needsProbe(err: unknown): boolean {
  const text = err instanceof Error ? err.message : String(err);
  if (isEtcdAnswer(err)) return false;
  const code = (err as { code?: unknown } | null)?.code;
  return code === 14 || /^14 UNAVAILABLE|UNAVAILABLE:|No connection established/.test(text);
}

/** What a probe of one endpoint found. */
export interface EndpointDiagnosis {
  /** The endpoint as configured. */
  endpoint: string;
  /** True when the endpoint answered as a working etcd would (nothing found to blame). */
  ok: boolean;
  /** What is wrong, e.g. "TLS handshake failed: certificate signed by unknown authority". */
  cause: string;
  /** What to check, e.g. "the CA file given to tls (/etc/ca.pem)". */
  check?: string;
}

/** `etcd at ENDPOINT: CAUSE; check CHECK` */
export function formatDiagnosis(diagnosis: EndpointDiagnosis): string {
  const check = diagnosis.check ? `; check ${diagnosis.check}` : "";
  return `etcd at ${diagnosis.endpoint}: ${diagnosis.cause}${check}`;
}

/** Everything needed to probe one endpoint as the client dials it. */
export interface ProbeTarget {
  /** The endpoint as configured (for messages). */
  endpoint: string;
  /** Host without brackets. */
  host: string;
  /** TCP port. */
  port: number;
  /** TLS is used (an https:// endpoint or the `tls` option). */
  secure: boolean;
  /** CA bundle (PEM); the system roots when absent. */
  ca?: Buffer;
  /** Its path, for messages. */
  caFile?: string;
  /** Client certificate (PEM). */
  cert?: Buffer;
  /** Its path, for messages. */
  certFile?: string;
  /** Client key (PEM). */
  key?: Buffer;
}

/**
 * The probe targets for `options`, one per endpoint, with the TLS material
 * the client uses (files relative to `configDir`). Throws as clientOptions
 * does on unreadable files.
 */
export function probeTargets(options: EtcdOptions, configDir: string): ProbeTarget[] {
  const parsed = options.endpoints.map((e) => ({ endpoint: e, ...parseEndpoint(e) }));
  const secure = options.tls !== undefined || parsed.some((e) => e.secure);
  const files = resolveTlsPaths(options, configDir).tls ?? {};
  const ca = files.ca ? readPem(files.ca, "CA file", configDir) : undefined;
  const cert = files.cert ? readPem(files.cert, "cert file", configDir) : undefined;
  const key = files.key ? readPem(files.key, "key file", configDir) : undefined;
  return parsed.map((e) => {
    const colon = e.address.lastIndexOf(":");
    return {
      endpoint: e.endpoint,
      host: e.address.slice(0, colon).replace(/^\[(.*)\]$/, "$1"),
      port: Number(e.address.slice(colon + 1)),
      secure,
      ca,
      caFile: files.ca,
      cert,
      certFile: files.cert,
      key,
    };
  });
}

// ---------------------------------------------------------------------------
// Probing.

type Outcome<T> = { ok: true; value: T } | { ok: false; error: Error & { code?: string } };

/** Runs `start` (which gets resolve/reject) with a deadline; cleans up through `cleanup`. */
function withDeadline<T>(
  deadline: number,
  start: (resolve: (v: T) => void, reject: (e: Error) => void) => () => void,
): Promise<Outcome<T> | "timeout"> {
  return new Promise((done) => {
    let settled = false;
    let cleanup = () => {};
    const finish = (result: Outcome<T> | "timeout") => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      try {
        cleanup();
      } catch {
        // best effort
      }
      done(result);
    };
    const timer = setTimeout(() => finish("timeout"), Math.max(0, deadline - Date.now()));
    cleanup = start(
      (value) => finish({ ok: true, value }),
      (error) => finish({ ok: false, error }),
    );
  });
}

/** Opens a TCP connection and closes it again; reports how it went. */
function tcpConnect(target: ProbeTarget, deadline: number): Promise<Outcome<void> | "timeout"> {
  return withDeadline<void>(deadline, (resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port }, () => resolve());
    socket.on("error", reject);
    return () => socket.destroy();
  });
}

const HEALTH_REQUEST = (host: string) =>
  `GET /health HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;

/** Sends a plain HTTP request; resolves with the first bytes of the reply ("" when closed). */
function plainRequest(target: ProbeTarget, deadline: number): Promise<Outcome<string> | "timeout"> {
  return withDeadline<string>(deadline, (resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port }, () => {
      socket.write(HEALTH_REQUEST(target.host));
    });
    socket.on("data", (chunk: Buffer) => resolve(chunk.toString("latin1")));
    socket.on("error", reject);
    socket.on("close", () => resolve(""));
    return () => socket.destroy();
  });
}

/** How a TLS attempt ended. */
type TlsResult =
  /** Handshake done and an HTTP reply came back: TLS works. */
  | { stage: "ok" }
  /** The handshake itself failed. */
  | { stage: "handshake"; error: Error & { code?: string } }
  /** Handshake done, then etcd sent an alert or closed (client certificate rejected). */
  | { stage: "after"; error?: Error & { code?: string } }
  | { stage: "timeout"; handshaken: boolean };

/** A TLS handshake as the client makes it, then one HTTP request to see whether etcd accepts us. */
async function tlsAttempt(
  target: ProbeTarget,
  deadline: number,
  verify: boolean,
): Promise<TlsResult> {
  let handshaken = false;
  const result = await withDeadline<TlsResult>(deadline, (resolve) => {
    const socket = tls.connect({
      host: target.host,
      port: target.port,
      // SNI carries only DNS names; Deno's node:tls rejects an IP literal here.
      servername: net.isIP(target.host) ? undefined : target.host,
      ca: target.ca,
      cert: target.cert,
      key: target.key,
      rejectUnauthorized: verify,
    });
    socket.on("secureConnect", () => {
      handshaken = true;
      socket.write(HEALTH_REQUEST(target.host));
    });
    socket.on("data", () => resolve({ stage: "ok" }));
    socket.on("error", (error: Error & { code?: string }) => {
      resolve(handshaken ? { stage: "after", error } : { stage: "handshake", error });
    });
    socket.on("close", () => {
      resolve(
        handshaken ? { stage: "after" } : {
          stage: "handshake",
          error: new Error("connection closed during the TLS handshake"),
        },
      );
    });
    return () => socket.destroy();
  });
  if (result === "timeout") return { stage: "timeout", handshaken };
  return result.ok ? result.value : { stage: "handshake", error: result.error };
}

/** The certificate problem a failed verification reports, in words; undefined if not one. */
function certificateProblem(error: Error & { code?: string }): string | undefined {
  const text = `${error.code ?? ""} ${error.message}`;
  if (
    /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED|unknown ?issuer|unknown authority|unable to verify|self[- ]signed/i
      .test(text)
  ) return "certificate signed by unknown authority";
  if (/ALTNAME|not valid for|NotValidForName|does not match|hostname/i.test(text)) {
    return "etcd's certificate is not valid for this host name or address";
  }
  if (/EXPIRED|expired|not yet valid|NotValidYet/i.test(text)) {
    return "etcd's certificate has expired or is not valid yet";
  }
  return undefined;
}

/** True for errors of a TLS client that got something other than TLS back. */
function looksLikePlaintextPeer(error: Error & { code?: string }): boolean {
  return /ECONNRESET|disconnected before secure TLS|wrong version number|packet length too long|corrupt message|InvalidContentType|unknown protocol|http request|closed during the TLS handshake|InvalidMessage/i
    .test(`${error.code ?? ""} ${error.message}`);
}

/** True for alerts etcd sends when it refuses the client certificate (or its absence). */
function isClientCertificateAlert(error: Error & { code?: string }): boolean {
  return /BAD_CERTIFICATE|BadCertificate|CertificateRequired|CERTIFICATE_REQUIRED|UnknownCA|UNKNOWN_CA|alert|certificate/i
    .test(`${error.code ?? ""} ${error.message}`);
}

/** Where the client's CA comes from, for "check ..." hints. */
function caHint(target: ProbeTarget): string {
  return target.caFile
    ? `the CA file given to tls (${target.caFile}): it must be the CA that signed etcd's certificate (--cert-file)`
    : "tls: no CA file is given, so only the system's CAs are trusted; give it etcd's CA";
}

/**
 * Probes one endpoint the way the client connects to it and says what is
 * wrong, within `timeoutMs`. Never throws.
 */
export async function probeEndpoint(
  target: ProbeTarget,
  timeoutMs = PROBE_TIMEOUT_MS,
): Promise<EndpointDiagnosis> {
  const deadline = Date.now() + timeoutMs;
  const seconds = `${(timeoutMs / 1000).toFixed(1)} s`;
  const where = `${target.host.includes(":") ? `[${target.host}]` : target.host}:${target.port}`;
  const diagnosis = (ok: boolean, cause: string, check?: string): EndpointDiagnosis => ({
    endpoint: target.endpoint,
    ok,
    cause,
    check,
  });

  const tcp = await tcpConnect(target, deadline);
  if (tcp === "timeout") {
    return diagnosis(
      false,
      `no answer: connecting to ${where} took longer than ${seconds}`,
      "that etcd runs there and that no firewall drops the traffic",
    );
  }
  if (!tcp.ok) {
    const code = tcp.error.code ?? "";
    if (code === "ECONNREFUSED" || /refused/i.test(tcp.error.message)) {
      return diagnosis(
        false,
        `connection refused: nothing listens on ${where}`,
        "that etcd runs and that the endpoint's host and port are its --listen-client-urls",
      );
    }
    if (
      code === "ENOTFOUND" || code === "EAI_AGAIN" ||
      /getaddrinfo|not known|resolve/i.test(tcp.error.message)
    ) {
      return diagnosis(false, `cannot resolve ${target.host}`, "the endpoint's host name");
    }
    return diagnosis(false, `cannot connect to ${where}: ${cleanEtcdError(tcp.error)}`);
  }

  if (!target.secure) {
    const reply = await plainRequest(target, deadline);
    if (reply === "timeout") return silent();
    if (reply.ok && reply.value.startsWith("HTTP/")) {
      if (/HTTPS server/i.test(reply.value)) return plaintextToTls();
      return diagnosis(true, "answers plain HTTP");
    }
    // Closed without an HTTP reply: is it TLS?
    const secure = await tlsAttempt(target, deadline, false);
    if (
      secure.stage === "ok" || secure.stage === "after" ||
      (secure.stage === "timeout" && secure.handshaken)
    ) {
      return plaintextToTls();
    }
    return diagnosis(
      false,
      `${where} does not answer as etcd does (no reply to plain HTTP, no TLS either)`,
      "that the endpoint is etcd's client URL (--listen-client-urls), not its peer URL or another service",
    );
  }

  const attempt = await tlsAttempt(target, deadline, true);
  switch (attempt.stage) {
    case "ok":
      return diagnosis(true, "TLS handshake and client certificate accepted");
    case "timeout":
      return attempt.handshaken ? diagnosis(true, "TLS handshake done; no HTTP reply") : diagnosis(
        false,
        `TLS handshake with ${where} did not finish within ${seconds}`,
        "that etcd runs there and is not overloaded",
      );
    case "after": {
      if (target.cert) {
        return diagnosis(
          false,
          `etcd rejected the client certificate (${target.certFile ?? "tls cert"})${
            attempt.error ? `: ${cleanEtcdError(attempt.error)}` : ""
          }`,
          "that the client certificate is signed by a CA etcd trusts (--trusted-ca-file) and allows client authentication",
        );
      }
      return diagnosis(
        false,
        `etcd requires a client certificate (--client-cert-auth) and none was sent${
          attempt.error ? ` (${cleanEtcdError(attempt.error)})` : ""
        }`,
        "that tls is given a client certificate and key: tls CERT KEY CACERT",
      );
    }
    case "handshake": {
      const problem = certificateProblem(attempt.error);
      if (problem === "certificate signed by unknown authority") {
        return diagnosis(false, `TLS handshake failed: ${problem}`, caHint(target));
      }
      if (problem) {
        return diagnosis(
          false,
          `TLS handshake failed: ${problem}`,
          `etcd's certificate (--cert-file): its subject alternative names must include ${target.host}, and its dates must be valid`,
        );
      }
      if (isClientCertificateAlert(attempt.error) && !looksLikePlaintextPeer(attempt.error)) {
        return target.cert
          ? diagnosis(
            false,
            `etcd rejected the client certificate (${target.certFile ?? "tls cert"}): ${
              cleanEtcdError(attempt.error)
            }`,
            "that the client certificate is signed by a CA etcd trusts (--trusted-ca-file)",
          )
          : diagnosis(
            false,
            `etcd requires a client certificate (--client-cert-auth) and none was sent`,
            "that tls is given a client certificate and key: tls CERT KEY CACERT",
          );
      }
      // Not TLS at all on the other side? Ask in plain HTTP.
      const reply = await plainRequest(target, deadline);
      if (reply !== "timeout" && reply.ok && reply.value.startsWith("HTTP/")) {
        return diagnosis(
          false,
          `etcd serves plain HTTP on ${where}, not TLS`,
          "the endpoint's scheme: use http:// (and no tls) for this etcd, or start etcd with --cert-file and --key-file and https:// client URLs",
        );
      }
      return diagnosis(
        false,
        `TLS handshake failed: ${cleanEtcdError(attempt.error)}`,
        caHint(target),
      );
    }
  }

  function silent(): EndpointDiagnosis {
    return diagnosis(
      false,
      `no answer: ${where} accepts connections but did not reply within ${seconds}`,
      "that etcd runs there and is not stopped or overloaded",
    );
  }

  function plaintextToTls(): EndpointDiagnosis {
    return diagnosis(
      false,
      `etcd serves TLS on ${where}, but the endpoint is plain http://`,
      "the endpoint's scheme: use https:// and tls (with etcd's CA, and a client certificate if etcd requires one)",
    );
  }
}

/** A hint for errors etcd answered that are already clear. */
function answerHint(text: string): string {
  if (/authentication failed|invalid user ID or password/i.test(text)) {
    return "; check the user name and password given to credentials";
  }
  if (/permission denied/i.test(text)) {
    return "; check that the user's roles grant access to these keys (etcdctl role grant-permission)";
  }
  if (/user name is empty|token/i.test(text) && /auth/i.test(text)) {
    return "; etcd has auth enabled: give credentials";
  }
  return "";
}

/**
 * One line for an etcd error that names the endpoint, the cause and what to
 * check. When gRPC reports a connection failure without a usable cause, every
 * endpoint is probed (in parallel, within {@link PROBE_TIMEOUT_MS}) and the
 * ones that are at fault are described. Never throws.
 */
export async function describeEtcdError(
  err: unknown,
  options: EtcdOptions,
  configDir: string,
): Promise<string> {
  const text = cleanEtcdError(err);
  const where = `etcd at ${options.endpoints.join(", ")}`;
  // Already described by the client's own probe (see client.ts).
  if (/^etcd at /.test(text)) return text;
  if (!needsProbe(err)) return `${where}: ${text}${answerHint(text)}`;
  let targets: ProbeTarget[];
  try {
    targets = probeTargets(options, configDir);
  } catch (problem) {
    return `${where}: ${text} (${cleanEtcdError(problem)})`;
  }
  const found = await Promise.all(targets.map((t) => probeEndpoint(t)));
  const faults = found.filter((d) => !d.ok);
  if (faults.length === 0) return `${where}: ${text}`;
  return faults.map(formatDiagnosis).join(". ");
}
