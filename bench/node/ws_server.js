// The Node `ws` server of the benchmark (ws 8, from tests/interop/node/node_modules).
//
// node bench/node/ws_server.js [--host H] [--port 0] [--mode echo|broadcast] [--compression]
// prints "node-ws MODE server listening on ws://HOST:PORT" first and stops on SIGINT or
// SIGTERM. Node has one event loop: --loop is refused.
//
// Settings: perMessageDeflate true (ws' default parameters: among them a threshold of 1024
// bytes, below which messages are sent uncompressed) with --compression, false (ws' default)
// without. Everything else is ws' default: maxPayload 100 MiB (above the 64 MiB the bench
// asks for), no keepalive pings (ws has none built in), clientTracking on.
//
// Echo: every message goes back with its type (ws.send(data, {binary: isBinary})).
// Broadcast: a loop over wss.clients, sending the same data to each open one, as ws' README
// shows (ws has no broadcast helper).
'use strict';

const path = require('path');
const { createRequire } = require('module');

// ws is installed once, for the interop tests (`make node-deps`): load it from there.
const requireFromInterop = createRequire(
  path.resolve(__dirname, '..', '..', 'tests', 'interop', 'node', 'package.json'),
);
const { WebSocket, WebSocketServer } = requireFromInterop('ws');

function parseArgs(argv) {
  const options = { host: '127.0.0.1', port: 0, mode: 'echo', compression: false };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--host') options.host = argv[(i += 1)];
    else if (arg === '--port') options.port = Number(argv[(i += 1)]);
    else if (arg === '--mode') options.mode = argv[(i += 1)];
    else if (arg === '--compression') options.compression = true;
    else {
      process.stderr.write(`ws_server.js: unsupported argument ${arg}\n`);
      process.exit(2);
    }
  }
  if (options.mode !== 'echo' && options.mode !== 'broadcast') {
    process.stderr.write(`ws_server.js: unknown mode ${options.mode}\n`);
    process.exit(2);
  }
  return options;
}

const options = parseArgs(process.argv.slice(2));
const wss = new WebSocketServer({
  host: options.host,
  port: options.port,
  perMessageDeflate: options.compression,
});

wss.on('connection', (ws) => {
  if (options.mode === 'echo') {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  } else {
    ws.on('message', (data, isBinary) => {
      for (const client of wss.clients) {
        if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
      }
    });
  }
});

wss.on('listening', () => {
  const { port } = wss.address();
  process.stdout.write(`node-ws ${options.mode} server listening on ws://${options.host}:${port}\n`);
});

function stop() {
  // Like the Python servers' library closes: 1001 to every client, then exit.
  for (const client of wss.clients) client.close(1001);
  wss.close(() => process.exit(0));
  // Clients that do not answer the close do not keep the process alive.
  setTimeout(() => process.exit(0), 1000).unref();
}

process.on('SIGTERM', stop);
process.on('SIGINT', stop);
