/**
 * What a UDP socket of either path (batched FFI, portable Deno.listenDatagram)
 * offers the listener.
 *
 * @module
 */

/** The two ways to serve UDP. */
export type UdpPathName = "batched" | "portable";

/**
 * Where one datagram came from. Read it during the handler's synchronous
 * call only: on the batched path it reads the receive slot, which the next
 * batch overwrites.
 */
export interface UdpSource {
  /** The client's address: IPv4 dotted (IPv4-mapped IPv6 unwrapped) or IPv6 text. */
  readonly address: string;
  /** The client's port. */
  readonly port: number;
}

/**
 * The reply to one datagram: bytes to send now, a promise of them (sent
 * later through the same socket), or nothing.
 */
export type UdpAnswer = Uint8Array | null | undefined | Promise<Uint8Array | null | undefined>;

/**
 * Answers one datagram. `data` is valid only during the synchronous call (on
 * the batched path it is a view of the receive slot): keep a copy
 * (`data.slice()`) for anything that outlives it.
 */
export type UdpHandler = (data: Uint8Array, source: UdpSource) => UdpAnswer;

/** A bound UDP socket serving one handler. */
export interface UdpSocket {
  /** Which path this socket is. */
  readonly path: UdpPathName;
  /** The address bound, as text ("::" for the dual-stack wildcard). */
  readonly localAddress: string;
  /** The port bound (the kernel's choice when 0 was asked). */
  readonly localPort: number;
  /** Receives and answers until {@link close}; resolves once the socket is closed. */
  serve(handler: UdpHandler): Promise<void>;
  /** Closes the socket; resolves when the receive loop has ended and the descriptor is closed. */
  close(): Promise<void>;
}
