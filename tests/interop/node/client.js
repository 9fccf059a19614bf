#!/usr/bin/env node
// Interop test peer: a Node `ws` client that runs a scenario and prints JSON results.
//
//   node client.js URL [--no-deflate] [--deflate-params JSON] [--protocols a,b] [--timeout MS]
//                  [SCENARIO_JSON]
//
// --deflate-params takes RFC 7692 names: {"server_no_context_takeover": true,
// "client_no_context_takeover": true, "server_max_window_bits": 10, "client_max_window_bits": 10}
//
// SCENARIO_JSON (argv, else stdin) is a list of steps; each step appends one result:
//   {"op": "echo", "type": "text"|"binary", "size": N}   send N random bytes (ASCII for text),
//                                                        receive the echo, compare
//   {"op": "send", "text": S} | {"op": "send", "hex": H} one message
//   {"op": "send", "type": "text"|"binary", "fragments": [S | H, ...]}  one fragmented message
//   {"op": "recv"}                                       the next message
//   {"op": "ping", "data": S}                            ping, wait for the pong
//   {"op": "close", "code": C, "reason": R}              start the close handshake, wait for it
//   {"op": "wait_close"}                                 wait for the peer to close
// After the last step the client closes with 1000 (if still open) and waits for the close.
// Output: {"protocol", "extensions", "response_extensions", "deflate_params", "results",
//          "pings_received", "close", "error"}; exit status 0 only when error is null.
'use strict';

const crypto = require('node:crypto');
const WebSocket = require('ws');

function parseArgs(argv) {
  const opts = { deflate: true, protocols: [], timeout: 30000, url: null, scenario: null };
  opts.deflateParams = null;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--no-deflate') opts.deflate = false;
    else if (arg === '--deflate') opts.deflate = true;
    else if (arg === '--deflate-params') opts.deflateParams = JSON.parse(argv[++i]);
    else if (arg === '--protocols') opts.protocols = argv[++i].split(',').filter(Boolean);
    else if (arg === '--timeout') opts.timeout = Number(argv[++i]);
    else if (opts.url === null) opts.url = arg;
    else opts.scenario = arg;
  }
  return opts;
}

function readStdin() {
  return new Promise((resolve) => {
    const chunks = [];
    process.stdin.on('data', (c) => chunks.push(c));
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

// RFC 7692 parameter names to ws's perMessageDeflate option names.
function wsDeflateOptions(params) {
  const names = {
    server_no_context_takeover: 'serverNoContextTakeover',
    client_no_context_takeover: 'clientNoContextTakeover',
    server_max_window_bits: 'serverMaxWindowBits',
    client_max_window_bits: 'clientMaxWindowBits',
  };
  return Object.fromEntries(Object.entries(params).map(([k, v]) => [names[k], v]));
}

const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

// Random printable ASCII keeps text valid UTF-8 with one byte per character, and random data
// does not compress, so permessage-deflate is exercised on its slow path too.
function payload(type, size) {
  const bytes = crypto.randomBytes(size);
  if (type === 'binary') return bytes;
  for (let i = 0; i < size; i++) bytes[i] = 32 + (bytes[i] % 95);
  return bytes.toString('latin1');
}

function describe(msg) {
  const buf = msg.isBinary ? msg.data : Buffer.from(msg.data, 'utf8');
  const out = { type: msg.isBinary ? 'binary' : 'text', length: buf.length, sha256: sha256(buf) };
  if (buf.length <= 4096) {
    if (msg.isBinary) out.hex = buf.toString('hex');
    else out.text = msg.data;
  }
  return out;
}

const output = {
  protocol: null,
  extensions: null,
  response_extensions: null,
  deflate_params: null,
  results: [],
  pings_received: [],
  close: null,
  error: null,
};
let finished = false;

// Print the results (partial ones too, on error) exactly once, then exit.
function finish(error) {
  if (finished) return;
  finished = true;
  if (error !== undefined) output.error = String(error && error.stack ? error.stack : error);
  process.stdout.write(JSON.stringify(output) + '\n', () => process.exit(output.error ? 1 : 0));
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const scenario = JSON.parse(opts.scenario ?? (await readStdin()));
  setTimeout(() => finish(`timeout after ${opts.timeout} ms`), opts.timeout);

  const ws = new WebSocket(opts.url, opts.protocols, {
    perMessageDeflate: opts.deflate && (opts.deflateParams ? wsDeflateOptions(opts.deflateParams) : true),
    maxPayload: 64 * 1024 * 1024,
  });
  // Messages and close are queued as they arrive; steps consume them in order.
  const messages = [];
  let wakeup = null;
  const wake = () => {
    if (wakeup) {
      const w = wakeup;
      wakeup = null;
      w();
    }
  };
  const closed = new Promise((resolve) => {
    ws.on('close', (code, reason) => {
      output.close = { code, reason: reason.toString('utf8') };
      wake();
      resolve(output.close);
    });
  });
  ws.on('message', (data, isBinary) => {
    messages.push({ isBinary, data: isBinary ? data : data.toString('utf8') });
    wake();
  });
  ws.on('ping', (data) => output.pings_received.push(data.toString('utf8')));
  ws.on('upgrade', (res) => {
    output.response_extensions = res.headers['sec-websocket-extensions'] ?? null;
  });
  ws.on('unexpected-response', (req, res) => finish(`unexpected HTTP response ${res.statusCode}`));
  ws.on('error', (err) => finish(err.message));

  async function nextMessage() {
    while (messages.length === 0) {
      if (output.close !== null) throw new Error(`closed while waiting: ${output.close.code}`);
      await new Promise((resolve) => (wakeup = resolve));
    }
    return messages.shift();
  }
  const send = (data, options) =>
    new Promise((resolve, reject) => ws.send(data, options, (err) => (err ? reject(err) : resolve())));

  await new Promise((resolve) => ws.once('open', resolve));
  output.protocol = ws.protocol;
  output.extensions = ws.extensions;
  const pmd = ws._extensions['permessage-deflate']; // eslint-disable-line no-underscore-dangle
  output.deflate_params = pmd ? pmd.params : null;

  for (const step of scenario) {
    if (step.op === 'echo') {
      const data = payload(step.type, step.size);
      const sent = Buffer.isBuffer(data) ? data : Buffer.from(data, 'latin1');
      await send(data, { binary: step.type === 'binary' });
      const { type, length, sha256: digest } = describe(await nextMessage());
      const ok = type === step.type && length === sent.length && digest === sha256(sent);
      output.results.push({ ok, type, length, sent_length: sent.length });
    } else if (step.op === 'send') {
      const binary = step.hex !== undefined || step.type === 'binary';
      const parts = step.fragments ?? [step.hex ?? step.text];
      for (let i = 0; i < parts.length; i++) {
        const part = binary ? Buffer.from(parts[i], 'hex') : parts[i];
        await send(part, { binary, fin: i === parts.length - 1 });
      }
      output.results.push({ sent: parts.length });
    } else if (step.op === 'recv') {
      output.results.push(describe(await nextMessage()));
    } else if (step.op === 'ping') {
      const pong = new Promise((resolve) => ws.once('pong', (d) => resolve(d.toString('utf8'))));
      ws.ping(step.data ?? '');
      output.results.push({ pong: await pong });
    } else if (step.op === 'close') {
      ws.close(step.code, step.reason);
      output.results.push(await closed);
    } else if (step.op === 'wait_close') {
      output.results.push(await closed);
    } else {
      throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
  }
  // End with a normal close handshake, as the Python clients do when their `async with` ends.
  if (ws.readyState === WebSocket.OPEN) ws.close(1000);
  await closed;
  finish();
}

main().catch(finish);
