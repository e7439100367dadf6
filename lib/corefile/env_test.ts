import { deepStrictEqual as equal } from "node:assert/strict";
import { processEnv, replaceEnvVars } from "./env.ts";

const ENV: Record<string, string> = { PORT: "8080" };
const env = (name: string) => ENV[name];

Deno.test("env: replaceEnvVars edge cases", () => {
  equal(replaceEnvVars("{$}", env), "{$}");
  equal(replaceEnvVars("{%}", env), "{%}");
  equal(replaceEnvVars("{%%}", env), "{%%}");
  equal(replaceEnvVars("{$$}", env), "");
  equal(
    replaceEnvVars("{$PORT}{$PORT}-{%PORT%}", env),
    "80808080-8080",
  );
  equal(replaceEnvVars("{{ .Name }}", env), "{{ .Name }}");
  equal(replaceEnvVars("{$} {$PORT}", env), "{$} {$PORT}");
  // A self-referencing value would hang Go; here expansion simply stops.
  equal(replaceEnvVars("{$LOOP}", () => "{$LOOP}"), "{$LOOP}");
});

Deno.test("env: processEnv reads the process environment; names Deno refuses are unset", () => {
  Deno.env.set("IDETCD_ENV_TEST", "x");
  try {
    equal(processEnv("IDETCD_ENV_TEST"), "x");
    equal(processEnv("A=B"), undefined);
    equal(processEnv(""), undefined);
  } finally {
    Deno.env.delete("IDETCD_ENV_TEST");
  }
});
