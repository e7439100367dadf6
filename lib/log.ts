/**
 * CoreDNS-style logging: `[INFO] plugin/idetcd: claimed worker4.tf.local. (ID 4)`.
 *
 * @module
 */

/** Log severity. */
export type Level = "DEBUG" | "INFO" | "WARNING" | "ERROR" | "FATAL";

/** A logger bound to a source such as "plugin/etcd". */
export interface Logger {
  /** Writes `msg` at DEBUG while {@link setDebug} has DEBUG on; drops it otherwise. */
  debug(msg: string): void;
  /** Writes `msg` at INFO (stdout, with {@link consoleSink}). */
  info(msg: string): void;
  /** Writes `msg` at WARNING: something went wrong and was worked around (stderr). */
  warning(msg: string): void;
  /** Writes `msg` at ERROR: something failed (stderr); it does not end the process. */
  error(msg: string): void;
  /** A logger for another source sharing this one's sink. */
  child(source: string): Logger;
}

/** Where lines go; tests swap it to capture output. */
export type Sink = (level: Level, line: string) => void;

const encoder = new TextEncoder();

/** Writes INFO/DEBUG to stdout and the rest to stderr, synchronously, as CoreDNS does. */
export const consoleSink: Sink = (level, line) => {
  const bytes = encoder.encode(line + "\n");
  try {
    if (level === "INFO" || level === "DEBUG") Deno.stdout.writeSync(bytes);
    else Deno.stderr.writeSync(bytes);
  } catch {
    // A closed stdout must not take the server down.
  }
};

let debugEnabled = false;

/** Turns DEBUG lines on or off process-wide (the `debug` plugin, IDETCD_DEBUG=1). */
export function setDebug(on: boolean): void {
  debugEnabled = on;
}

/** Creates a logger for `source` ("" for unprefixed lines) writing to `sink`. */
export function createLogger(source = "", sink: Sink = consoleSink): Logger {
  const prefix = source ? `${source}: ` : "";
  const emit = (level: Level, msg: string) => sink(level, `[${level}] ${prefix}${msg}`);
  return {
    debug: (msg) => {
      if (debugEnabled) emit("DEBUG", msg);
    },
    info: (msg) => emit("INFO", msg),
    warning: (msg) => emit("WARNING", msg),
    error: (msg) => emit("ERROR", msg),
    child: (other) => createLogger(other, sink),
  };
}

/** The process-wide root logger. */
export const rootLog: Logger = createLogger("");
