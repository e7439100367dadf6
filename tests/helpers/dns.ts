/**
 * The tests' DNS vocabulary in one place: a whole {@link Message} from the
 * fields a test cares about, RFC 1035 section 4.2.2 TCP framing, and one
 * query over UDP or TCP with a deadline. tests/helpers/process.ts's
 * `queryUdp`/`queryTcp` and lib/plugins/forward/testkit.ts's `ask` are
 * these with their own defaults, and tests/helpers/exchange.ts's
 * `exchangeTcp` is {@link tcpExchange} (its `UdpClient`, many queries on one
 * socket, is also the bench's Probe).
 *
 * @module
 */

import { decodeMessage, type Message } from "../../lib/dns/wire.ts";

/**
 * A message with every header flag clear, rcode 0, ID 0 and empty sections,
 * then `fields` on top: a test names only what it is about.
 */
export function message(fields: Partial<Message> = {}): Message {
  return {
    id: 0,
    response: false,
    opcode: 0,
    authoritative: false,
    truncated: false,
    recursionDesired: false,
    recursionAvailable: false,
    zero: false,
    authenticData: false,
    checkingDisabled: false,
    rcode: 0,
    question: [],
    answer: [],
    authority: [],
    additional: [],
    ...fields,
  };
}

/** `packet` with its 2-byte length in front, as DNS over TCP sends it. */
export function frame(packet: Uint8Array): Uint8Array {
  const out = new Uint8Array(packet.length + 2);
  out[0] = packet.length >> 8;
  out[1] = packet.length & 0xff;
  out.set(packet, 2);
  return out;
}

/** Writes all of `bytes` (a write may take only part). */
export async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

/** Reads one length-prefixed message; null when the connection ends before a whole one. */
export async function readFrame(conn: Deno.Conn): Promise<Uint8Array | null> {
  const want = async (n: number) => {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const r = await conn.read(out.subarray(got));
      if (r === null) return null;
      got += r;
    }
    return out;
  };
  const head = await want(2);
  if (!head) return null;
  return await want((head[0] << 8) | head[1]);
}

/** How long and how often {@link udpQuery} and {@link tcpQuery} try. */
export interface QueryTries {
  /** Milliseconds to wait for each try (default 2,000; tcpQuery: none, wait for the server). */
  timeoutMs?: number;
  /** UDP sends before giving up (default 3), each under a fresh ID. */
  tries?: number;
}

/**
 * Sends `packet` over UDP to `host`:`port` under a fresh random ID per try
 * and resolves with the decoded reply carrying that ID, or null when none
 * came. Datagrams that are not a DNS message, or answer another ID, are
 * ignored.
 */
export async function udpQuery(
  host: string,
  port: number,
  packet: Uint8Array,
  options: QueryTries = {},
): Promise<Message | null> {
  const { timeoutMs = 2_000, tries = 3 } = options;
  const sock = Deno.listenDatagram({
    transport: "udp",
    hostname: host.includes(":") ? "::" : "0.0.0.0",
    port: 0,
  });
  try {
    for (let attempt = 0; attempt < tries; attempt++) {
      const id = Math.floor(Math.random() * 65536);
      const query = packet.slice();
      query[0] = id >> 8;
      query[1] = id & 0xff;
      await sock.send(query, { transport: "udp", hostname: host, port });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<null>((r) => (timer = setTimeout(() => r(null), timeoutMs)));
      try {
        while (true) {
          const got = await Promise.race([sock.receive(), timeout]);
          if (!got) break;
          let msg: Message;
          try {
            msg = decodeMessage(got[0]);
          } catch {
            continue; // not a DNS message
          }
          if (msg.id === id) return msg;
        }
      } finally {
        clearTimeout(timer);
      }
    }
    return null;
  } finally {
    sock.close();
  }
}

/**
 * Sends `packet` over a new TCP connection to `host`:`port` and resolves
 * with the first framed reply, or null when the connection ended or broke
 * first or `timeoutMs` (when given) passed. Connecting errors are thrown.
 */
export async function tcpExchange(
  host: string,
  port: number,
  packet: Uint8Array,
  options: Pick<QueryTries, "timeoutMs"> = {},
): Promise<Uint8Array | null> {
  const conn = await Deno.connect({ hostname: host, port });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<null>((resolve) => {
    if (options.timeoutMs !== undefined) timer = setTimeout(() => resolve(null), options.timeoutMs);
  });
  const read = (async () => {
    await writeAll(conn, frame(packet));
    return await readFrame(conn);
  })().catch(() => null);
  try {
    return await Promise.race([read, deadline]);
  } finally {
    clearTimeout(timer);
    conn.close();
    await read;
  }
}

/** {@link tcpExchange}, the reply decoded. */
export async function tcpQuery(
  host: string,
  port: number,
  packet: Uint8Array,
  options: Pick<QueryTries, "timeoutMs"> = {},
): Promise<Message | null> {
  const reply = await tcpExchange(host, port, packet, options);
  return reply ? decodeMessage(reply) : null;
}
