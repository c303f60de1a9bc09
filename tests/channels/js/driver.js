// Drives wsskit.js from tests/channels/test_wsskit_js.py: reads one JSON command
// per line on stdin, writes one JSON line per result or event on stdout.
//   node --experimental-websocket driver.js <path of wsskit.js>
"use strict";
const readline = require("readline");

const WsskitChannels = require(process.argv[2]);
let client = null;

function out(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function reply(re, promise) {
  Promise.resolve(promise).then(
    (result) => out({ re: re, ok: result === undefined ? null : result }),
    (error) => out({ re: re, error: { name: error.name, code: error.code, message: String(error.message) } })
  );
}

const ops = {
  codes(command) {
    const table = {};
    for (let code = 1000; code < 5000; code++) table[code] = WsskitChannels.shouldReconnect(code);
    return table;
  },
  connect(command) {
    client = new WsskitChannels.Client(command.url, Object.assign({
      token: command.token,
      onConnect: () => out({ event: "connect" }),
      onDisconnect: (code, reason) => out({ event: "disconnect", code: code, reason: reason }),
      onReconnecting: (attempt, delay) => out({ event: "reconnecting", attempt: attempt, delay: delay }),
      onClosed: (error) => out({ event: "closed", error: error ? String(error.message) : null }),
    }, command.options || {}));
    return client.connect().then(() => null);
  },
  subscribe(command) {
    return client.subscribe(command.channel, {
      since: command.since,
      onPublication: (m) => out({ event: "pub", channel: m.channel, offset: m.offset, epoch: m.epoch, data: m.data }),
      onRecovery: (recovered, missed) => out({ event: "recovery", recovered: recovered, missed: missed }),
      onJoin: (info) => out({ event: "join", info: info }),
      onLeave: (info) => out({ event: "leave", info: info }),
      onError: (error) => out({ event: "suberror", code: error.code }),
    }).then((sub) => ({ offset: sub.offset, epoch: sub.epoch }));
  },
  unsubscribe(command) {
    return client._subscriptions.get(command.channel).unsubscribe();
  },
  publish(command) { return client.publish(command.channel, command.data, command.options); },
  history(command) { return client.history(command.channel, command.options); },
  presence(command) { return client.presence(command.channel); },
  ping() { return client.ping(); },
  close() {
    client.close();
    return null;
  },
};

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  try {
    reply(command.re, ops[command.op](command));
  } catch (error) {
    reply(command.re, Promise.reject(error));
  }
});
