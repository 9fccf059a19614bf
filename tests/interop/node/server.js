#!/usr/bin/env node
// Interop test peer: a Node `ws` echo server on 127.0.0.1 and a free port.
//
//   node server.js [--no-deflate] [--deflate-params JSON] [--protocols a,b]
//
// --deflate-params: RFC 7692 parameter names and values, as for client.js.
// Prints its port on the first stdout line, then one JSON line per event:
//   {"event": "open", "path", "protocol", "extensions", "request_extensions",
//    "response_extensions"}
//   {"event": "ping", "path", "data"}   {"event": "close", "path", "code", "reason"}
// Echoes every message with its type, except these text commands (test peer only):
//   "close:CODE:REASON"   close with that code and reason
//   "ping:DATA"           ping with DATA; on the pong, send "pong:DATA"
//   "fragment:N:TEXT"     send TEXT back as one text message in N fragments (N >= 1)
'use strict';

const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
const deflate = !args.includes('--no-deflate');
const pIndex = args.indexOf('--protocols');
const protocols = pIndex >= 0 ? args[pIndex + 1].split(',').filter(Boolean) : [];
const dIndex = args.indexOf('--deflate-params');
const names = {
  server_no_context_takeover: 'serverNoContextTakeover',
  client_no_context_takeover: 'clientNoContextTakeover',
  server_max_window_bits: 'serverMaxWindowBits',
  client_max_window_bits: 'clientMaxWindowBits',
};
const deflateOptions =
  dIndex >= 0
    ? Object.fromEntries(Object.entries(JSON.parse(args[dIndex + 1])).map(([k, v]) => [names[k], v]))
    : true;

const emit = (event) => process.stdout.write(JSON.stringify(event) + '\n');

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: deflate && deflateOptions,
  maxPayload: 64 * 1024 * 1024,
  // The server's preference order wins; no match means no subprotocol (RFC 6455 4.2.2).
  handleProtocols: (offered) => protocols.find((p) => offered.has(p)) ?? false,
});

// The Sec-WebSocket-Extensions header the server answered, per request.
const responseExtensions = new WeakMap();
wss.on('headers', (headers, req) => {
  const line = headers.find((h) => /^sec-websocket-extensions:/i.test(h));
  if (line) responseExtensions.set(req, line.slice(line.indexOf(':') + 1).trim());
});

wss.on('connection', (ws, req) => {
  const path = req.url;
  emit({
    event: 'open',
    path,
    protocol: ws.protocol,
    extensions: ws.extensions,
    request_extensions: req.headers['sec-websocket-extensions'] ?? null,
    response_extensions: responseExtensions.get(req) ?? null,
  });
  ws.on('ping', (data) => emit({ event: 'ping', path, data: data.toString('utf8') }));
  ws.on('close', (code, reason) =>
    emit({ event: 'close', path, code, reason: reason.toString('utf8') }),
  );
  ws.on('error', (err) => emit({ event: 'error', path, message: err.message }));
  ws.on('message', (data, isBinary) => {
    const text = isBinary ? null : data.toString('utf8');
    const command = text === null ? null : /^(close|ping|fragment):(.*)$/s.exec(text);
    if (command === null) {
      ws.send(data, { binary: isBinary });
    } else if (command[1] === 'close') {
      const [code, ...reason] = command[2].split(':');
      ws.close(Number(code), reason.join(':'));
    } else if (command[1] === 'ping') {
      ws.once('pong', (pong) => ws.send(`pong:${pong.toString('utf8')}`));
      ws.ping(command[2]);
    } else {
      const [count, ...rest] = command[2].split(':');
      // Split by code points so that no fragment ends inside a surrogate pair.
      const chars = Array.from(rest.join(':'));
      const n = Number(count);
      const size = Math.ceil(chars.length / n);
      for (let i = 0; i < n; i++) {
        const part = chars.slice(i * size, (i + 1) * size).join('');
        ws.send(part, { binary: false, fin: i === n - 1 });
      }
    }
  });
});

wss.on('listening', () => process.stdout.write(`${wss.address().port}\n`));
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const ws of wss.clients) ws.terminate();
    wss.close(() => process.exit(0));
  });
}
