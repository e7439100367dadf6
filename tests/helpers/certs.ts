/**
 * Test PKI made with the real `openssl` binary: two independent CAs, a
 * server certificate for 127.0.0.1/localhost and client certificates signed
 * by either CA, in a temporary directory.
 *
 * @module
 */

/** A certificate and its key, as PEM file paths. */
export interface CertPair {
  /** Certificate (PEM). */
  readonly cert: string;
  /** Private key (PEM). */
  readonly key: string;
}

/** Everything a TLS test needs; remove it with `await using`. */
export interface TestPki {
  /** The directory holding every file. */
  readonly dir: string;
  /** The CA etcd trusts and that signed etcd's server certificate. */
  readonly ca: CertPair;
  /** A second CA that etcd does not know. */
  readonly otherCa: CertPair;
  /** etcd's server certificate (signed by `ca`; SANs 127.0.0.1, ::1, localhost). */
  readonly server: CertPair;
  /** A client certificate signed by `ca`. */
  readonly client: CertPair;
  /** A client certificate signed by `otherCa`. */
  readonly otherClient: CertPair;
  /** Removes the directory. */
  [Symbol.asyncDispose](): Promise<void>;
}

async function openssl(cwd: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/** A self-signed CA (EC P-256, 1 day). */
async function makeCa(dir: string, name: string): Promise<CertPair> {
  const pair = { cert: `${dir}/${name}.pem`, key: `${dir}/${name}-key.pem` };
  await openssl(
    dir,
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    pair.key,
    "-out",
    pair.cert,
    "-days",
    "1",
    "-subj",
    `/CN=${name}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  );
  return pair;
}

/** A leaf certificate signed by `ca`, for server or client use. */
async function makeLeaf(
  dir: string,
  name: string,
  ca: CertPair,
  usage: "server" | "client",
): Promise<CertPair> {
  const pair = { cert: `${dir}/${name}.pem`, key: `${dir}/${name}-key.pem` };
  const csr = `${dir}/${name}.csr`;
  const ext = `${dir}/${name}.ext`;
  await openssl(
    dir,
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    pair.key,
    "-out",
    csr,
    "-subj",
    `/CN=${name}`,
  );
  await Deno.writeTextFile(
    ext,
    [
      "basicConstraints=CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      usage === "server"
        ? "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"
        : "extendedKeyUsage=clientAuth",
      "",
    ].join("\n"),
  );
  await openssl(
    dir,
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    ca.cert,
    "-CAkey",
    ca.key,
    "-CAcreateserial",
    "-out",
    pair.cert,
    "-days",
    "1",
    "-extfile",
    ext,
  );
  return pair;
}

/** Creates two CAs, a server certificate and two client certificates in a new temp dir. */
export async function createTestPki(): Promise<TestPki> {
  const dir = await Deno.makeTempDir({ prefix: "idetcd-test-pki-" });
  try {
    const ca = await makeCa(dir, "ca");
    const otherCa = await makeCa(dir, "other-ca");
    const server = await makeLeaf(dir, "server", ca, "server");
    const client = await makeLeaf(dir, "client", ca, "client");
    const otherClient = await makeLeaf(dir, "other-client", otherCa, "client");
    return {
      dir,
      ca,
      otherCa,
      server,
      client,
      otherClient,
      async [Symbol.asyncDispose]() {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      },
    };
  } catch (err) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
}
