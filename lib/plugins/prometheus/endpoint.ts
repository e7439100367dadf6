/**
 * The /metrics HTTP endpoint: the process registry in the text format.
 *
 * @module
 */

import { CONTENT_TYPE, render } from "../../server/metrics.ts";
import { type HttpAddress, HttpEndpoint } from "../health/http.ts";

/** The /metrics server of one address, shared by the blocks and configurations naming it. */
export function metricsEndpoint(address: HttpAddress): HttpEndpoint {
  const endpoint = new HttpEndpoint(address, "prometheus");
  endpoint.route(
    "/metrics",
    () => new Response(render(), { headers: { "content-type": CONTENT_TYPE } }),
  );
  return endpoint;
}
