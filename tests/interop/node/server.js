// A Node.js `ws` server for wsskit's interop tests.
//
//   node server.js [--cert PEM --key PEM]
//
// Listens on 127.0.0.1, on four ephemeral ports: ws:// and (with --cert and
// --key) wss://, each with and without permessage-deflate. Once all listen it
// prints one JSON line on stdout: {"ws": {"deflate": port, "plain": port},
// "wss": {...}}. It exits when its standard input closes, so it never
// outlives the test run that started it.
//
// Paths:
//   /echo       sends every message back, text as text and binary as binary
//   /describe   answers every message with JSON: its number on this
//               connection, whether it was binary, its length in bytes, its
//               SHA-256, and the extensions negotiated
//   /close      closes with 4000 "bye" when the first message arrives

'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const { WebSocketServer } = require('ws');

function option(name) {
  const index = process.argv.indexOf(name);
  return index === -1 ? undefined : process.argv[index + 1];
}

function onConnection(socket, request) {
  const path = new URL(request.url, 'http://placeholder').pathname;
  let count = 0;
  socket.on('message', (data, isBinary) => {
    count += 1;
    if (path === '/echo') {
      socket.send(data, { binary: isBinary });
    } else if (path === '/describe') {
      socket.send(
        JSON.stringify({
          number: count,
          binary: isBinary,
          length: data.length,
          sha256: crypto.createHash('sha256').update(data).digest('hex'),
          extensions: socket.extensions,
        }),
      );
    } else if (path === '/close') {
      socket.close(4000, 'bye');
    } else {
      socket.close(1008, 'unknown path');
    }
  });
}

function listen(tls, deflate) {
  const server = tls ? https.createServer(tls) : http.createServer();
  const wss = new WebSocketServer({
    server,
    perMessageDeflate: deflate,
    maxPayload: 64 * 1024 * 1024,
  });
  wss.on('connection', onConnection);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

async function main() {
  const certFile = option('--cert');
  const keyFile = option('--key');
  const ports = {
    ws: { deflate: await listen(null, true), plain: await listen(null, false) },
  };
  if (certFile && keyFile) {
    const tls = { cert: fs.readFileSync(certFile), key: fs.readFileSync(keyFile) };
    ports.wss = { deflate: await listen(tls, true), plain: await listen(tls, false) };
  }
  process.stdout.write(JSON.stringify(ports) + '\n');
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

main().catch((error) => {
  process.stderr.write(`server.js: ${error.stack || error}\n`);
  process.exit(1);
});
