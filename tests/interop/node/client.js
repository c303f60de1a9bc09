// A Node.js `ws` client for wsskit's interop tests: it talks to an echo server.
//
//   node client.js URL [--ca PEM] [--no-deflate]
//
// Sends text, binary, a 4 MiB binary message, and text and binary messages
// in fragments, checks that each comes back whole and unchanged, pings,
// then closes with 1000 "done". Prints one JSON line on stdout (the checks
// passed, the extensions negotiated, the close code seen) and exits 0; on
// any mismatch it prints the reason on stderr and exits 1.

'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const WebSocket = require('ws');

const url = process.argv[2];
const caIndex = process.argv.indexOf('--ca');
const options = {
  perMessageDeflate: !process.argv.includes('--no-deflate'),
  maxPayload: 64 * 1024 * 1024,
};
if (caIndex !== -1) {
  options.ca = fs.readFileSync(process.argv[caIndex + 1]);
}

const socket = new WebSocket(url, options);
const arrived = []; // messages not yet awaited: [data, isBinary]
const waiting = []; // resolvers waiting for a message
let closed = null;

socket.on('message', (data, isBinary) => {
  const waiter = waiting.shift();
  if (waiter) waiter.resolve([data, isBinary]);
  else arrived.push([data, isBinary]);
});
socket.on('close', (code, reason) => {
  closed = { code, reason: reason.toString() };
  for (const waiter of waiting.splice(0)) waiter.reject(new Error(`closed with ${code} while waiting`));
});

function next() {
  if (arrived.length) return Promise.resolve(arrived.shift());
  if (closed) return Promise.reject(new Error(`closed with ${closed.code}`));
  return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
}

function sent(data, sendOptions) {
  return new Promise((resolve, reject) => {
    socket.send(data, sendOptions, (error) => (error ? reject(error) : resolve()));
  });
}

async function roundTrip(name, expected, isBinary, send) {
  await send();
  const [data, binary] = await next();
  assert.equal(binary, isBinary, `${name}: binary flag`);
  if (isBinary) assert.ok(Buffer.compare(data, expected) === 0, `${name}: bytes differ`);
  else assert.equal(data.toString('utf8'), expected, `${name}: text differs`);
  return name;
}

async function run() {
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  const checks = [];
  checks.push(await roundTrip('text', 'hello ünïcødé ✓', false, () => sent('hello ünïcødé ✓', {})));
  const small = Buffer.from([0, 1, 2, 255]);
  checks.push(await roundTrip('binary', small, true, () => sent(small, { binary: true })));
  const large = crypto.randomBytes(4 * 1024 * 1024);
  checks.push(await roundTrip('large', large, true, () => sent(large, { binary: true })));
  checks.push(
    await roundTrip('fragmented text', 'fragmented', false, async () => {
      await sent('frag', { fin: false });
      await sent('men', { fin: false });
      await sent('ted', { fin: true });
    }),
  );
  const parts = [Buffer.alloc(1000, 1), Buffer.alloc(1000, 2)];
  checks.push(
    await roundTrip('fragmented binary', Buffer.concat(parts), true, async () => {
      await sent(parts[0], { binary: true, fin: false });
      await sent(parts[1], { binary: true, fin: true });
    }),
  );
  await new Promise((resolve) => {
    socket.once('pong', resolve);
    socket.ping(Buffer.from('ping!'));
  });
  checks.push('ping');
  const extensions = socket.extensions;
  socket.close(1000, 'done');
  await new Promise((resolve) => (closed ? resolve() : socket.once('close', resolve)));
  process.stdout.write(JSON.stringify({ checks, extensions, close: closed }) + '\n');
}

run().catch((error) => {
  process.stderr.write(`client.js: ${error.stack || error}\n`);
  process.exit(1);
});
