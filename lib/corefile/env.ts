/**
 * Environment references in Corefile tokens, as Caddy's `replaceEnvVars`:
 * `{%NAME%}` then `{$NAME}`, expanded in every token (keys, directive names,
 * arguments, import patterns) after lexing, so a value with spaces stays
 * one token.
 *
 * @module
 */

// A value that refers to itself ({$A} = "{$A}") makes Go loop forever; stop instead.
const MAX_ENV_ROUNDS = 1000;

/** Expands `{%NAME%}` then `{$NAME}` references in `text`, Caddy's replaceEnvVars. */
export function replaceEnvVars(text: string, env: (name: string) => string | undefined): string {
  if (!text.includes("{")) return text;
  return replaceEnvReferences(replaceEnvReferences(text, "{%", "%}", env), "{$", "}", env);
}

function replaceEnvReferences(
  text: string,
  refStart: string,
  refEnd: string,
  env: (name: string) => string | undefined,
): string {
  let s = text;
  let index = s.indexOf(refStart);
  for (let round = 0; index !== -1 && round < MAX_ENV_ROUNDS; round++) {
    const endIndex = s.indexOf(refEnd, index);
    if (endIndex === -1) break;
    // An empty name (`{$}`) stops all further expansion in this token, as in Caddy.
    if (endIndex <= index + refStart.length) return s;
    const ref = s.slice(index, endIndex + refEnd.length);
    const value = env(ref.slice(refStart.length, ref.length - refEnd.length)) ?? "";
    s = s.split(ref).join(value);
    index = s.indexOf(refStart);
  }
  return s;
}

/** Reads the process environment; names Deno refuses (empty, `=`, NUL) are unset, as in Go. */
export function processEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch (err) {
    if (err instanceof TypeError) return undefined;
    throw err;
  }
}
