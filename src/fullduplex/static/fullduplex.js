// fullduplex.js: the browser client of fullduplex. No dependency; an ES module (this file,
// served at /fullduplex.js) and a classic script defining the global `FullDuplex` (served at
// /fullduplex.global.js, made from this file by replacing the final export statement).
// Types: fullduplex.d.ts. Rules (close-code classes, backoff, queue): the README's "Browser
// client" section.

const CONNECTING = 0;
const OPEN = 1;
const CLOSING = 2;
const CLOSED = 3;

// Close codes after which the client reconnects; every other code is final. 1006 is also what
// a refused handshake (403, 429, 503...) looks like from JavaScript, so it must retry.
const RECONNECT_CODES = [1001, 1005, 1006, 1011, 1012, 1013, 1014];

const DEFAULTS = {
  protocols: undefined,
  json: false,
  reconnect: true,
  minDelay: 500,
  maxDelay: 20000,
  connectTimeout: 10000,
  idleTimeout: 0,
  stableAfter: 5000,
  queueSize: 1000,
  queuePolicy: "reject",
  recover: true,
  binaryType: "blob",
  lifecycle: true,
  shouldReconnect: undefined,
  transports: ["websocket", "stream", "poll"],
};

/** Tell whether a close code is in the "reconnect" class of the default table. */
function isReconnectCode(code) {
  return RECONNECT_CODES.indexOf(code) >= 0;
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first): full jitter between
 * `minDelay` and a ceiling that doubles per attempt up to `maxDelay`. The floor is what rules
 * out zero-delay loops: two attempts are never closer than `minDelay`. The first ceiling is
 * 4 x minDelay, so that clients dropped together (a server restart) spread their first
 * attempts over 1.5 s by default, not 0.5 s.
 */
function backoff(attempt, minDelay, maxDelay, random = Math.random) {
  const ceiling = Math.min(maxDelay, minDelay * 2 ** Math.min(attempt + 2, 30));
  return minDelay + random() * Math.max(0, ceiling - minDelay);
}

function toWebSocketURL(url) {
  const base = typeof location !== "undefined" ? location.href : undefined;
  const parsed = new URL(String(url), base);
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  else if (parsed.protocol === "https:") parsed.protocol = "wss:";
  return parsed;
}

// ---- the fallback transports: HTTP streaming and long-polling -----------------------------------
// The server's side and wire format: fullduplex/fallback/ (service.py, wire.py). HttpSocket has
// the shape of a WebSocket (readyState, send, close, on* handlers), so FullDuplex drives either.

const FALLBACK_UNUSABLE = 3; // WebSocket opens that got no message before closing, in a row

// UTF-8 bytes of a value as JSON: what it adds to a POST body.
const jsonSize = (value) => new TextEncoder().encode(JSON.stringify(value)).length;
// A body's numbers and brackets, {"a":N,"q":N,"m":[]}, at their longest.
const BATCH_OVERHEAD = 64;

function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

class HttpSocket {
  constructor(url, mode, binaryType) {
    // ws://host/path?q -> http://host/path/_fd/<action>?q
    const u = new URL(url);
    u.protocol = u.protocol === "wss:" ? "https:" : "http:";
    this._base = u.origin + u.pathname.replace(/\/$/, "") + "/_fd/";
    this._mode = mode;
    this.binaryType = binaryType;
    this.readyState = CONNECTING;
    this.protocol = this.extensions = "";
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    this._last = 0; // the number of the last message received
    this._acked = 0;
    this._seq = 0;
    this._out = []; // messages not yet posted, then the close request
    this._posting = false;
    this._lines = 0; // lines received by this transport
    this._abort = new AbortController();
    this._post(this._base + "open" + u.search, "").then(async (reply) => {
      if (!reply.ok) throw new Error("HTTP " + reply.status);
      const info = await reply.json();
      if (this.readyState !== CONNECTING) return;
      this._sid = info.s;
      // What one POST may carry: bytes and messages (the server closes with 1009 beyond).
      this._maxBody = info.p || 1 << 20;
      this._maxCount = info.n || 1024;
      this._deadline = info.h + info.t; // ms without a line after which the server is gone
      this._seen = Date.now();
      this.readyState = OPEN;
      this._check = setInterval(() => {
        if (Date.now() - this._seen > this._deadline) this._end(1006, "no heartbeat", false);
      }, 1000);
      // A stream opens once its response is attached (the server can then reach this page,
      // its close included); a poll, at once, since its first answer may be a heartbeat away.
      this._unopened = mode === "stream";
      if (!this._unopened) this.onopen && this.onopen({});
      this._receive();
      this._flush();
    }).catch(() => this._end(1006, "", false));
  }

  get bufferedAmount() {
    return this._out.reduce((sum, m) => sum + (m.n || 0), 0);
  }

  _url(action, query = "") {
    return this._base + action + "?s=" + encodeURIComponent(this._sid) + query;
  }

  _post(url, body) {
    return fetch(url, {
      method: "POST", body, cache: "no-store", signal: this._abort.signal,
    });
  }

  async _receive() {
    // One stream (or poll) at a time; after a network error, again from the last message
    // received: the server sends what came after it, so nothing is lost or duplicated.
    let failures = 0;
    while (this.readyState <= CLOSING) {
      try {
        const reply = await fetch(this._url(this._mode, "&a=" + this._last), {
          cache: "no-store", signal: this._abort.signal,
        });
        if (reply.status === 404) return this._end(1006, "session expired", false);
        if (!reply.ok || !reply.body) throw new Error("HTTP " + reply.status);
        if (this._unopened) {
          this._unopened = false;
          this.onopen && this.onopen({});
        }
        const reader = reply.body.pipeThrough(new TextDecoderStream()).getReader();
        let rest = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          failures = 0;
          const lines = (rest + value).split("\n");
          rest = lines.pop();
          for (const line of lines) if (line && this._line(JSON.parse(line))) return;
        }
      } catch {
        if (this.readyState > CLOSING) return;
        // Bounded by the liveness check, which ends the session after `_deadline`.
        await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** failures++, 4000)));
      }
    }
  }

  _line(m) {
    // True at the close line: the session is over.
    this._seen = Date.now();
    this._lines++;
    if (m.c !== undefined) {
      this._end(m.c, m.r || "", true);
      return true;
    }
    if (m.i !== undefined) {
      if (m.i <= this._last) return false; // sent again after a lost response
      this._last = m.i;
      let data = m.t;
      if (data === undefined) {
        const bytes = Uint8Array.from(atob(m.b), (ch) => ch.charCodeAt(0));
        data = this.binaryType === "arraybuffer" ? bytes.buffer : new Blob([bytes]);
      }
      this.onmessage && this.onmessage({ data, origin: "" });
    }
    // A stream carries no ack: acknowledge soon after messages (the server keeps them until
    // then, within the endpoint's max_buffered) and at each heartbeat, which also tells the
    // server that the client is alive.
    if (this._mode === "stream") {
      if (m.h) this._flush(true);
      else this._ackTimer = this._ackTimer || setTimeout(() => {
        this._ackTimer = null;
        this._flush(true);
      }, 250);
    }
    return false;
  }

  send(data) {
    if (this.readyState !== OPEN) throw new Error("not open");
    // Each message with its size in the body (binary goes as base64: 4 bytes for 3).
    const size = typeof data === "string" ? 0 : data.size ?? data.byteLength;
    this._out.push(typeof data === "string" ? { v: data, n: jsonSize(data) } : {
      n: 4 * Math.ceil(size / 3) + 8,
      v: data instanceof Blob ? data.arrayBuffer().then((b) => ({ b: toBase64(new Uint8Array(b)) }))
        : { b: toBase64(new Uint8Array(ArrayBuffer.isView(data) ? data.buffer.slice(
          data.byteOffset, data.byteOffset + data.byteLength) : data)) },
    });
    this._flush();
  }

  async _flush(ack) {
    // One POST at a time, numbered: a POST retried after a network error carries the same
    // number, and the server delivers each number once. A batch stays under the server's
    // limits (bytes and messages); a message that fits no batch ends the session with 1009.
    if (this._posting || this.readyState > CLOSING || !this._sid) return;
    const out = this._out;
    let count = 0;
    let bytes = BATCH_OVERHEAD;
    while (count < out.length && out[count].v !== undefined && count < this._maxCount
      && bytes + out[count].n < this._maxBody) bytes += out[count++].n + 1;
    let close = {};
    if (count < out.length && out[count].c !== undefined) {
      if (bytes + jsonSize(out[count]) < this._maxBody) close = out[count++];
    } else if (!count && out.length) {
      out.length = 0;
      close = { c: 1009, r: "message too big" };
    }
    const batch = out.splice(0, count);
    if (!batch.length && !ack && close.c === undefined) return;
    this._posting = true;
    const body = Object.assign({ a: this._last }, close);
    const messages = await Promise.all(batch.filter((m) => m.v !== undefined).map((m) => m.v));
    if (messages.length) Object.assign(body, { q: this._seq, m: messages });
    const text = JSON.stringify(body);
    let status = 0;
    for (let tries = 0; this.readyState <= CLOSING; tries++) {
      try {
        status = (await this._post(this._url("send"), text)).status;
        if (status >= 500) throw new Error("busy"); // 503: the inbox is full
        break;
      } catch {
        status = 0;
        await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** tries, 4000)));
      }
    }
    this._posting = false;
    if (close.c === 1009) return this._end(1009, close.r, false);
    if (status === 410) {
      // The server is closing the session: its close comes on the stream.
      this.readyState = CLOSING;
      this._out = [];
      return this._closeSoon(1006, "");
    }
    if (status >= 300) {
      // The batch was refused for good: nothing after it could be delivered in order.
      return this._end(status === 413 ? 1009 : 1006,
        status === 404 ? "session expired" : "HTTP " + status, false);
    }
    if (!status) return;
    if (messages.length) this._seq++;
    this._acked = Math.max(this._acked, body.a);
    if (this._out.length || this._last > this._acked) this._flush(true);
  }

  close(code = 1000, reason = "") {
    if (this.readyState >= CLOSING) return;
    if (this.readyState === CONNECTING) return this._end(code, reason, false);
    this.readyState = CLOSING;
    this._out.push({ c: code, r: reason });
    this._flush();
    this._closeSoon(code, reason);
  }

  _closeSoon(code, reason) {
    // The server answers with its close on the stream; do not wait for ever.
    setTimeout(() => this._end(code, reason, false), 3000);
  }

  _end(code, reason, wasClean) {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    clearInterval(this._check);
    clearTimeout(this._ackTimer);
    this._abort.abort();
    this.onclose && this.onclose({ code, reason, wasClean });
  }
}

function event(type, props) {
  // Plain Events with own properties: CloseEvent and MessageEvent have read-only accessors,
  // and CloseEvent is missing outside browsers.
  return Object.assign(new Event(type), props);
}

class FullDuplex extends EventTarget {
  constructor(url, options = {}) {
    super();
    this._options = Object.assign({}, DEFAULTS, options);
    const o = this._options;
    if (!(o.minDelay > 0) || !(o.maxDelay >= o.minDelay)) {
      throw new RangeError("minDelay must be > 0 and maxDelay >= minDelay");
    }
    if (["reject", "drop-oldest", "drop-newest"].indexOf(o.queuePolicy) < 0) {
      throw new RangeError("queuePolicy: reject, drop-oldest or drop-newest");
    }
    this._url = toWebSocketURL(url);
    this._ws = null;
    this._state = CONNECTING;
    this._queue = [];
    this._attempt = 0; // reconnect attempts since the last stable connection
    this._attempts = 0; // sockets created in all
    this._timer = null; // the pending reconnect
    this._check = null; // the liveness / connect-timeout interval
    this._lastAttemptAt = 0;
    this._openedAt = 0;
    this._lastReceivedAt = 0;
    this._hidden = false; // between pagehide and pageshow
    this._closedByPage = null; // the socket pagehide closed: its close is not final
    // Which transport the next attempt uses: WebSocket unless it is missing, throws, was
    // refused last time, or opened FALLBACK_UNUSABLE times in a row without a message; then
    // HTTP streaming, or long-polling when streaming brought nothing.
    this._noWS = typeof WebSocket !== "function";
    this._wsRefused = false;
    this._unusable = 0;
    this._noStream = false;
    this._transport = "";
    this.position = null; // {epoch, offset} of the last stamped JSON message
    this.recovered = null; // the last recovery notice's verdict, null before any
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this.onconnecting = this.onrecovery = this.ondrop = null;
    this._onOnline = () => this._retrySoon();
    this._onPageHide = () => this._pageHide();
    this._onPageShow = () => this._pageShow();
    this._onVisible = () => this._checkAlive();
    if (o.lifecycle && typeof addEventListener === "function") {
      addEventListener("online", this._onOnline);
      addEventListener("pagehide", this._onPageHide);
      addEventListener("pageshow", this._onPageShow);
      if (typeof document !== "undefined") {
        document.addEventListener("visibilitychange", this._onVisible);
      }
    }
    // In a microtask, as the browser's events: listeners added right after `new` see the
    // first "connecting" event.
    queueMicrotask(() => {
      if (this._state === CONNECTING && !this._ws && !this._timer) this._connect();
    });
  }

  get url() {
    return this._url.href;
  }
  /** The transport of the current (or last) connection: "websocket", "stream" or "poll". */
  get transport() {
    return this._transport;
  }
  get readyState() {
    return this._state;
  }
  get protocol() {
    return this._ws ? this._ws.protocol : "";
  }
  get extensions() {
    return this._ws ? this._ws.extensions : "";
  }
  get bufferedAmount() {
    return this._ws ? this._ws.bufferedAmount : 0;
  }
  get binaryType() {
    return this._options.binaryType;
  }
  set binaryType(value) {
    this._options.binaryType = value;
    if (this._ws) this._ws.binaryType = value;
  }
  /** How many messages wait in the send queue. */
  get queued() {
    return this._queue.length;
  }
  /** How many sockets were created so far (1 + the reconnect attempts). */
  get attempts() {
    return this._attempts;
  }

  /**
   * Send now when open; queue while (re)connecting. Returns true when sent or queued, false
   * when the "drop-newest" policy dropped it; throws when the queue is full under "reject",
   * and after the client was closed for good.
   */
  send(data) {
    if (this._state === CLOSED || this._state === CLOSING) {
      throw new Error("FullDuplex is closed");
    }
    const payload = this._options.json ? JSON.stringify(data) : data;
    // A socket already closing would discard the message without a word: queue it instead,
    // for the next connection.
    if (this._state === OPEN && this._ws && this._ws.readyState === OPEN) {
      this._ws.send(payload);
      return true;
    }
    const o = this._options;
    if (this._queue.length >= o.queueSize) {
      if (o.queuePolicy === "reject" || o.queueSize <= 0) {
        throw new Error(`send queue full (${o.queueSize} messages) while disconnected`);
      }
      if (o.queuePolicy === "drop-newest") {
        this._emit("drop", { data });
        return false;
      }
      this._emit("drop", { data: this._unpack(this._queue.shift()) });
    }
    this._queue.push(payload);
    return true;
  }

  /** Close for good (no reconnect): `code` is 1000 or 3000-4999, as for WebSocket. */
  close(code = 1000, reason = "") {
    if (this._state === CLOSED || this._state === CLOSING) return;
    this._stopTimers();
    this._removeListeners();
    this._queue = [];
    const ws = this._ws;
    if (ws && ws.readyState <= OPEN) {
      this._state = CLOSING;
      ws.close(code, reason);
      return; // the socket's close event finishes, with reconnect off
    }
    this._state = CLOSED;
    this._ws = null;
    // Asynchronous, as the browser's own close event.
    setTimeout(() => this._emitClose(code, reason, true, false), 0);
  }

  /** Reconnect now (still no sooner than minDelay after the previous attempt). */
  reconnect() {
    if (this._state === CLOSED || this._state === CLOSING) {
      throw new Error("FullDuplex is closed");
    }
    this._retrySoon();
  }

  // ---- connecting ------------------------------------------------------------------------

  _connectURL() {
    const url = new URL(this._url.href);
    const p = this.position;
    if (this._options.recover && p) {
      url.searchParams.set("epoch", p.epoch);
      url.searchParams.set("offset", String(p.offset));
    }
    return url.href;
  }

  _connect() {
    this._timer = null;
    this._lastAttemptAt = Date.now();
    this._attempts += 1;
    const url = this._connectURL();
    this._emit("connecting", { attempt: this._attempt, url });
    let ws;
    const allowed = (name) => this._options.transports.indexOf(name) >= 0;
    for (;;) {
      const stream = allowed("stream") && !this._noStream;
      this._transport = allowed("websocket") && !this._noWS && !this._wsRefused
        && this._unusable < FALLBACK_UNUSABLE ? "websocket"
        : stream ? "stream" : allowed("poll") ? "poll" : "websocket";
      try {
        ws = this._transport === "websocket" ? new WebSocket(url, this._options.protocols)
          : new HttpSocket(url, this._transport, this._options.binaryType);
        break;
      } catch (error) {
        // The URL was parsed already: a throwing constructor is the page's WebSocket
        // (removed, replaced or blocked), so the fallback is tried. A second throw is final.
        if (this._transport === "websocket" && !this._noWS) {
          this._noWS = true;
          continue;
        }
        this._state = CLOSED;
        this._emit("error", { error });
        this._emitClose(1006, String(error && error.message), false, false);
        return;
      }
    }
    this._received1 = false;
    ws.binaryType = this._options.binaryType;
    this._ws = ws;
    this._state = CONNECTING;
    ws.onopen = () => this._opened(ws);
    ws.onmessage = (e) => this._received(ws, e);
    ws.onerror = () => ws === this._ws && this._emit("error", {});
    ws.onclose = (e) => this._closed(ws, e.code, e.reason, e.wasClean);
    this._startCheck();
  }

  _opened(ws) {
    if (ws !== this._ws) return;
    this._state = OPEN;
    this._openedAt = this._lastReceivedAt = Date.now();
    // Queued messages first, in order, so that what open handlers send comes after them.
    const queue = this._queue;
    this._queue = [];
    for (const payload of queue) ws.send(payload);
    this._emit("open", {});
  }

  _received(ws, e) {
    if (ws !== this._ws) return;
    this._lastReceivedAt = Date.now();
    this._received1 = true;
    if (this._transport === "websocket") this._unusable = 0;
    let data = e.data;
    if (this._options.json && typeof data === "string") {
      try {
        data = JSON.parse(data);
      } catch (error) {
        this._emit("error", { error, data });
        return;
      }
      this._track(data);
    }
    this._emit("message", { data, origin: e.origin, lastEventId: "" });
  }

  _track(msg) {
    if (!msg || typeof msg !== "object" || !this._options.recover) return;
    const known = this.position;
    if (typeof msg.epoch === "string" && Number.isInteger(msg.offset)) {
      // Messages arrive in offset order; another epoch means the history restarted.
      if (!known || known.epoch !== msg.epoch || msg.offset > known.offset) {
        this.position = { epoch: msg.epoch, offset: msg.offset };
      }
    }
    if (msg.type === "recovery" && typeof msg.recovered === "boolean") {
      this.recovered = msg.recovered;
      this._emit("recovery", {
        recovered: msg.recovered,
        reason: msg.reason || "",
        replayed: msg.replayed || 0,
      });
    }
  }

  _closed(ws, code, reason, wasClean) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._stopCheck();
    if (this._transport === "websocket") {
      // Refused (a proxy that strips Upgrade, a server that says 426) or useless once open.
      this._wsRefused = !this._openedAt;
      if (this._openedAt && !this._received1) this._unusable++;
    } else {
      // The next attempt tries WebSocket again (unless it is missing or unusable): after a
      // server restart, a refusal must not pin the page to the fallback.
      this._wsRefused = false;
      if (this._transport === "stream" && this._openedAt && !ws._lines) this._noStream = true;
    }
    if (this._state === CLOSING || this._state === CLOSED) {
      this._state = CLOSED;
      this._emitClose(code, reason, wasClean, false);
      return;
    }
    const o = this._options;
    const byPage = ws === this._closedByPage;
    this._closedByPage = null;
    const retry = byPage || (o.shouldReconnect ? o.shouldReconnect(code, reason)
      : o.reconnect && isReconnectCode(code));
    if (!retry) {
      this._state = CLOSED;
      this._removeListeners();
      this._emitClose(code, reason, wasClean, false);
      return;
    }
    if (this._openedAt && Date.now() - this._openedAt >= o.stableAfter) this._attempt = 0;
    this._openedAt = 0;
    this._state = CONNECTING;
    if (this._hidden) {
      this._emitClose(code, reason, wasClean, true);
      return; // pageshow reconnects
    }
    const delay = this._schedule(
      byPage ? Math.random() * o.minDelay : backoff(this._attempt++, o.minDelay, o.maxDelay),
    );
    this._emitClose(code, reason, wasClean, true, delay);
  }

  _schedule(delay) {
    // Measured from the previous attempt too: whatever asked (online, reconnect(), a close),
    // two attempts are never closer than minDelay.
    const earliest = this._lastAttemptAt + this._options.minDelay - Date.now();
    const wait = Math.max(delay, earliest, 0);
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._connect(), wait);
    return wait;
  }

  _retrySoon() {
    // The network is back (or the caller asks): start the backoff over, soon but jittered,
    // so that a whole office coming back online does not reconnect in the same millisecond.
    if (this._state !== CONNECTING || this._hidden) return;
    this._attempt = 0;
    if (this._ws) {
      if (this._ws.readyState === OPEN) return;
      // Still connecting on a dead network: drop that attempt.
      this._abandon(this._ws);
    }
    this._schedule(Math.random() * this._options.minDelay);
  }

  _abandon(ws) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(4000, "abandoned");
    } catch {
      // already closing
    }
    if (ws === this._ws) this._ws = null;
    this._stopCheck();
  }

  // ---- liveness, by wall-clock time --------------------------------------------------------

  _startCheck() {
    this._stopCheck();
    const o = this._options;
    const limit = Math.min(o.connectTimeout || Infinity, o.idleTimeout || Infinity);
    if (limit === Infinity) return;
    // Background tabs run timers late (a minute or more): the interval only prompts the
    // check, and the check compares Date.now() with when something last happened.
    this._check = setInterval(() => this._checkAlive(), Math.max(250, Math.min(limit / 4, 5000)));
  }

  _stopCheck() {
    clearInterval(this._check);
    this._check = null;
  }

  _checkAlive() {
    const ws = this._ws;
    if (!ws || this._state === CLOSING || this._state === CLOSED) return;
    const o = this._options;
    const now = Date.now();
    if (this._state === CONNECTING && o.connectTimeout && now - this._lastAttemptAt > o.connectTimeout) {
      this._dead(ws, "connect timeout");
    } else if (this._state === OPEN && o.idleTimeout && now - this._lastReceivedAt > o.idleTimeout) {
      this._dead(ws, `nothing received for ${o.idleTimeout} ms`);
    }
  }

  _dead(ws, why) {
    // A dead TCP connection would make the close handshake wait for minutes: let the socket
    // go and report the close now, then reconnect as after a drop.
    this._abandon(ws);
    this._ws = ws; // _closed checks it is the current socket
    this._closed(ws, 1006, why, false);
  }

  // ---- page lifecycle ------------------------------------------------------------------------

  _pageHide() {
    // Close cleanly, so the server frees the session at once and the page can enter the
    // back/forward cache (the JavaScript close() only allows 1000 and 3000-4999, not 1001).
    if (this._state === CLOSED || this._state === CLOSING) return;
    this._hidden = true;
    clearTimeout(this._timer);
    this._timer = null;
    if (this._ws) {
      this._closedByPage = this._ws;
      this._ws.close(1000, "page hidden");
    }
  }

  _pageShow() {
    if (!this._hidden) return;
    this._hidden = false;
    // Not yet closed (the close event comes later): _closed reconnects then.
    if (this._state === CONNECTING && !this._ws && !this._timer) {
      this._schedule(Math.random() * this._options.minDelay);
    }
  }

  // ---- events ----------------------------------------------------------------------------------

  _stopTimers() {
    clearTimeout(this._timer);
    this._timer = null;
    this._stopCheck();
  }

  _removeListeners() {
    if (typeof removeEventListener !== "function") return;
    removeEventListener("online", this._onOnline);
    removeEventListener("pagehide", this._onPageHide);
    removeEventListener("pageshow", this._onPageShow);
    if (typeof document !== "undefined") {
      document.removeEventListener("visibilitychange", this._onVisible);
    }
  }

  _unpack(payload) {
    return this._options.json ? JSON.parse(payload) : payload;
  }

  _emitClose(code, reason, wasClean, willReconnect, delay = 0) {
    this._emit("close", { code, reason, wasClean, willReconnect, delay });
  }

  _emit(type, props) {
    const e = event(type, props);
    this.dispatchEvent(e);
    const handler = this["on" + type];
    if (typeof handler !== "function") return;
    try {
      handler.call(this, e);
    } catch (error) {
      // As for listeners: reported, and the client goes on (a throwing onconnecting must not
      // stop the connection from being made).
      if (typeof reportError === "function") reportError(error);
      else setTimeout(() => { throw error; }, 0);
    }
  }
}

FullDuplex.CONNECTING = FullDuplex.prototype.CONNECTING = CONNECTING;
FullDuplex.OPEN = FullDuplex.prototype.OPEN = OPEN;
FullDuplex.CLOSING = FullDuplex.prototype.CLOSING = CLOSING;
FullDuplex.CLOSED = FullDuplex.prototype.CLOSED = CLOSED;
// The global form has only `FullDuplex`: the helpers ride on it.
FullDuplex.RECONNECT_CODES = RECONNECT_CODES;
FullDuplex.backoff = backoff;
FullDuplex.isReconnectCode = isReconnectCode;

export { FullDuplex, RECONNECT_CODES, backoff, isReconnectCode };
