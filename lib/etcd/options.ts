/**
 * How to reach etcd: the options shared by the `etcd` and `idetcd` directives.
 *
 * @module
 */

/** TLS material for the etcd client; paths are absolute or relative to the Corefile. */
export interface EtcdTLS {
  /** Client certificate (PEM file). */
  cert?: string;
  /** Client key (PEM file). */
  key?: string;
  /** CA bundle (PEM file); the system roots when absent. */
  ca?: string;
}

/** Connection options for one etcd cluster. */
export interface EtcdOptions {
  /** Client URLs, e.g. ["http://localhost:2379"]. */
  endpoints: string[];
  /** etcd user for authentication; used only together with `password`. */
  username?: string;
  /** That user's password; without both, the client connects unauthenticated. */
  password?: string;
  /** Set when the `tls` option is present (even with no files). */
  tls?: EtcdTLS;
}

/** CoreDNS's default endpoint. */
export const DEFAULT_ENDPOINT = "http://localhost:2379";
