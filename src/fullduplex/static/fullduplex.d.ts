// Types of fullduplex.js, the browser client of fullduplex (served at /fullduplex.js as an ES
// module and at /fullduplex.global.js as a classic script defining `FullDuplex`).

/**
 * Close codes after which the client reconnects (with backoff); every other code is final.
 *
 * | code | meaning | class |
 * |---|---|---|
 * | 1001 | going away (server shutdown, drain) | reconnect |
 * | 1005 | no status | reconnect |
 * | 1006 | connection lost, or the handshake was refused (403, 429, 503...) | reconnect |
 * | 1011 | server error | reconnect |
 * | 1012 | service restart | reconnect |
 * | 1013 | try again later | reconnect |
 * | 1014 | bad gateway | reconnect |
 * | 1000 | normal closure: the server meant it | final |
 * | 1002, 1003, 1007, 1008, 1009, 1010, 1015 | protocol/data/policy errors: retrying would fail again | final |
 * | 3000-4999 | the application's codes | final (use `shouldReconnect` to retry some) |
 */
export declare const RECONNECT_CODES: readonly number[];

/** Whether `code` is in the reconnect class of the table above. */
export declare function isReconnectCode(code: number): boolean;

/**
 * The delay (ms) before reconnect attempt `attempt` (0 for the first): uniformly random
 * between `minDelay` and min(maxDelay, minDelay * 2^(attempt+2)), never below `minDelay`.
 */
export declare function backoff(
  attempt: number,
  minDelay: number,
  maxDelay: number,
  random?: () => number,
): number;

export type QueuePolicy = "reject" | "drop-oldest" | "drop-newest";

export interface FullDuplexOptions {
  /** Subprotocols offered, as for `new WebSocket(url, protocols)`. */
  protocols?: string | string[];
  /** Send values as JSON and parse every text message received (default false). */
  json?: boolean;
  /** Reconnect after a close in the reconnect class (default true). */
  reconnect?: boolean;
  /** Decides instead of the table: true to reconnect after this close. */
  shouldReconnect?: (code: number, reason: string) => boolean;
  /** The least delay between two connection attempts, ms (default 500). */
  minDelay?: number;
  /** The largest backoff delay, ms (default 20000). */
  maxDelay?: number;
  /** A connection still not open after this long (wall clock, ms) is dropped and retried (default 10000; 0: off). */
  connectTimeout?: number;
  /**
   * An open connection that received nothing for this long (wall clock, ms) is considered dead
   * and reconnected (default 0: off). Only set it when the server sends application messages
   * regularly (a heartbeat): the server's WebSocket pings are answered by the browser and
   * invisible to JavaScript.
   */
  idleTimeout?: number;
  /** A connection open this long resets the backoff to its first step (ms, default 5000). */
  stableAfter?: number;
  /** How many messages `send` queues while disconnected (default 1000; 0: no queue). */
  queueSize?: number;
  /** What `send` does when the queue is full (default "reject": it throws). */
  queuePolicy?: QueuePolicy;
  /** In JSON mode, keep the last `epoch`/`offset` received and reconnect with them (default true). */
  recover?: boolean;
  /** As WebSocket's binaryType (default "blob"). */
  binaryType?: BinaryType;
  /** React to online, pagehide, pageshow and visibilitychange (default true). */
  lifecycle?: boolean;
  /**
   * The transports tried, in order (default all three). WebSocket first; HTTP streaming when
   * `WebSocket` is missing or its constructor throws, when the last handshake was refused, or
   * after 3 WebSocket opens in a row that closed before any message; long-polling when a
   * stream brought nothing. E.g. `["poll"]` forces long-polling.
   */
  transports?: Transport[];
}

/** "websocket", or a fallback: HTTP "stream" (fetch read as a stream) or long-"poll". */
export type Transport = "websocket" | "stream" | "poll";

export interface FullDuplexCloseEvent extends Event {
  readonly code: number;
  readonly reason: string;
  readonly wasClean: boolean;
  /** True when the client will reconnect (then `delay` is the wait in ms). */
  readonly willReconnect: boolean;
  readonly delay: number;
}

export interface FullDuplexMessageEvent<T = any> extends Event {
  /** string, Blob or ArrayBuffer; in JSON mode the parsed value of a text message. */
  readonly data: T;
}

export interface FullDuplexConnectingEvent extends Event {
  /** Attempts since the last stable connection (0: the first). */
  readonly attempt: number;
  /** The URL connected to, with `epoch` and `offset` when recovering. */
  readonly url: string;
}

export interface FullDuplexRecoveryEvent extends Event {
  /** Whether the server replayed every message missed. */
  readonly recovered: boolean;
  readonly reason: string;
  readonly replayed: number;
}

export interface FullDuplexDropEvent extends Event {
  /** The message the queue policy dropped. */
  readonly data: unknown;
}

export interface FullDuplexErrorEvent extends Event {
  readonly error?: unknown;
}

export interface FullDuplexEventMap {
  open: Event;
  message: FullDuplexMessageEvent;
  close: FullDuplexCloseEvent;
  error: FullDuplexErrorEvent;
  connecting: FullDuplexConnectingEvent;
  recovery: FullDuplexRecoveryEvent;
  drop: FullDuplexDropEvent;
}

/** The position of the last stamped message: what the server replays after. */
export interface Position {
  epoch: string;
  offset: number;
}

/** A WebSocket that reconnects, queues while disconnected, and recovers missed messages. */
export declare class FullDuplex extends EventTarget {
  static readonly CONNECTING: 0;
  static readonly OPEN: 1;
  static readonly CLOSING: 2;
  static readonly CLOSED: 3;
  readonly CONNECTING: 0;
  readonly OPEN: 1;
  readonly CLOSING: 2;
  readonly CLOSED: 3;

  /** `url`: ws://, wss://, http(s):// or relative to the page (its scheme then mapped). */
  constructor(url: string | URL, options?: FullDuplexOptions);

  /** The URL given (absolute, ws: or wss:), without the recovery parameters. */
  readonly url: string;
  /** The transport of the current (or last) connection; "" before the first. */
  readonly transport: Transport | "";
  /** CONNECTING while connecting or waiting to reconnect; CLOSED only when final. */
  readonly readyState: 0 | 1 | 2 | 3;
  readonly protocol: string;
  readonly extensions: string;
  readonly bufferedAmount: number;
  binaryType: BinaryType;
  /** Messages waiting in the send queue. */
  readonly queued: number;
  /** Sockets created so far. */
  readonly attempts: number;
  /** The last `epoch`/`offset` seen (JSON mode); settable, e.g. from sessionStorage. */
  position: Position | null;
  /** The last recovery notice's verdict; null before any. */
  recovered: boolean | null;

  onopen: ((this: FullDuplex, ev: Event) => any) | null;
  onmessage: ((this: FullDuplex, ev: FullDuplexMessageEvent) => any) | null;
  onclose: ((this: FullDuplex, ev: FullDuplexCloseEvent) => any) | null;
  onerror: ((this: FullDuplex, ev: FullDuplexErrorEvent) => any) | null;
  onconnecting: ((this: FullDuplex, ev: FullDuplexConnectingEvent) => any) | null;
  onrecovery: ((this: FullDuplex, ev: FullDuplexRecoveryEvent) => any) | null;
  ondrop: ((this: FullDuplex, ev: FullDuplexDropEvent) => any) | null;

  /**
   * Send now when open, else queue (flushed in order on the next open). Returns true when sent
   * or queued, false when "drop-newest" dropped it. Throws when the queue is full under
   * "reject", and once closed.
   */
  send(data: any): boolean;
  /** Close for good: `code` 1000 or 3000-4999. */
  close(code?: number, reason?: string): void;
  /** Reconnect now, no sooner than `minDelay` after the previous attempt. */
  reconnect(): void;

  addEventListener<K extends keyof FullDuplexEventMap>(
    type: K,
    listener: (this: FullDuplex, ev: FullDuplexEventMap[K]) => any,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof FullDuplexEventMap>(
    type: K,
    listener: (this: FullDuplex, ev: FullDuplexEventMap[K]) => any,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject,
    options?: boolean | EventListenerOptions,
  ): void;
}
