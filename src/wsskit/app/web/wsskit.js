/*
 * wsskit.js: a browser client for wsskit channels (protocol wsskit.channels.v1).
 *
 * Plain ES2017, no build step, no dependencies. Load it as a classic script; it
 * defines `window.WsskitChannels` (in Node, `require()` returns the same object):
 *
 *   <script src="/wsskit.js"></script>
 *   <script>
 *     const client = new WsskitChannels.Client("wss://example.com/channels", {token});
 *     const sub = await client.subscribe("chat:lobby", {
 *       onPublication: (m) => show(m.data),       // {channel, offset, epoch, data}, in order, once
 *       onRecovery: (recovered, missed) => { if (!recovered) reloadState(); },
 *       onJoin: (info) => {}, onLeave: (info) => {},   // {client, user}
 *       onError: (error) => {},                    // the server refused a resubscription for good
 *       since: {offset, epoch}, token: "...",      // optional: resume from a position; a channel token
 *     });
 *     await client.publish("chat:lobby", {text: "hello"});
 *   </script>
 *
 * The client reconnects after a random, growing delay (full jitter) when the
 * server's close code allows it (docs/channels-protocol.md §7), subscribes again
 * to every channel from the last position it received, and delivers what was
 * missed before anything live, or calls onRecovery(false, 0): never a silent gap.
 * A publish carries an idempotency key (random by default), so one sent again
 * after a reconnect is stored once. Received data is handed to callbacks as
 * parsed JSON; render it as text (textContent), never as HTML.
 *
 * Options of `new Client(url, options)`:
 *   token           bearer token, offered as the subprotocol "access_token.<token>"
 *   reconnect       true (default) or false
 *   firstDelay, initialDelay, factor, maxDelay   backoff in ms (1000, 500, 2, 30000)
 *   stableAfter     ms a connection must live to reset the backoff (10000)
 *   maxAttempts     failed attempts in a row before giving up (default: never)
 *   timeout         ms a command waits for its reply, reconnection included (10000)
 *   onConnect(), onDisconnect(code, reason), onReconnecting(attempt, delayMs), onClosed(error|null)
 *   WebSocket       a WebSocket class to use instead of the global one
 */
(function (root, factory) {
  "use strict";
  const api = factory();
  if (typeof module === "object" && module && module.exports) {
    module.exports = api;
  } else {
    root.WsskitChannels = api;
  }
})(typeof globalThis !== "undefined" ? globalThis : this, function () {
  "use strict";

  const SUBPROTOCOL = "wsskit.channels.v1";
  const TOKEN_PREFIX = "access_token.";
  // Close code -> reconnect? (docs/channels-protocol.md §7)
  const CLOSE_CODES = {
    1000: false, 1001: true, 1006: true, 1008: false, 1009: false, 1011: true,
    1012: true, 1013: true, 4000: true, 4001: true, 4002: true, 4003: false, 4008: false,
  };
  const RESYNC = 4002; // we drop a connection to resume on a new one
  const TRANSIENT = [100, 108, 109]; // errors worth retrying on a new connection

  function shouldReconnect(code) {
    if (code === undefined || code === null) return true;
    if (Object.prototype.hasOwnProperty.call(CLOSE_CODES, code)) return CLOSE_CODES[code];
    return code >= 4000 && code < 4500;
  }

  class ChannelError extends Error {
    constructor(code, message) {
      super(code + ": " + message);
      this.name = "ChannelError";
      this.code = code;
      this.reason = message;
    }
  }

  function randomKey() {
    const bytes = new Uint8Array(18);
    globalThis.crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function call(callback, args) {
    if (typeof callback !== "function") return;
    try {
      const result = callback.apply(undefined, args);
      if (result && typeof result.catch === "function") {
        result.catch((error) => console.error("wsskit: a callback failed", error));
      }
    } catch (error) {
      console.error("wsskit: a callback failed", error);
    }
  }

  function check(condition, what) {
    if (!condition) throw new TypeError("wsskit: malformed message from the server: " + what);
  }

  class Subscription {
    constructor(client, channel, handlers, since, token) {
      this.client = client;
      this.channel = channel;
      this.handlers = handlers;
      this.position = since ? { offset: since.offset, epoch: since.epoch } : null;
      this.active = true;
      this.error = null;
      this._token = token;
      this._everSubscribed = false;
      this._live = false;
      this._sentOn = null; // the socket its last subscribe went on
      this._ready = new Promise((resolve, reject) => {
        this._resolve = resolve;
        this._reject = reject;
      });
      this._ready.catch(() => {}); // handled by subscribe()
    }

    get offset() { return this.position ? this.position.offset : null; }
    get epoch() { return this.position ? this.position.epoch : null; }

    /** Stop receiving the channel's publications. */
    unsubscribe() { return this.client._unsubscribe(this); }

    _fields() {
      const fields = { channel: this.channel };
      if (this.position) fields.since = { offset: this.position.offset, epoch: this.position.epoch };
      if (this._token !== undefined) fields.token = this._token;
      return fields;
    }

    _onReply(reply, resumed, since) {
      if (!this.active) return;
      if (reply.error) {
        const error = new ChannelError(reply.error.code, reply.error.message);
        if (this._everSubscribed && TRANSIENT.includes(error.code)) {
          this.client._resync();
        } else {
          this._end(error);
        }
        return;
      }
      const result = reply.result;
      check(result && typeof result.epoch === "string" && Number.isInteger(result.offset), "subscribe result");
      check(Array.isArray(result.publications) && typeof result.recovered === "boolean", "subscribe result");
      let missed = 0;
      for (const p of result.publications) {
        check(p && Number.isInteger(p.offset), "publication");
        if (since && since.epoch === result.epoch && p.offset <= since.offset) continue;
        missed += 1;
        call(this.handlers.onPublication, [{ channel: this.channel, offset: p.offset, epoch: result.epoch, data: p.data }]);
      }
      this.position = { offset: result.offset, epoch: result.epoch };
      this._live = true;
      const first = !this._everSubscribed;
      this._everSubscribed = true;
      // After the recovered publications, before any live one.
      if (resumed) call(this.handlers.onRecovery, [result.recovered, missed]);
      if (first) this._resolve(this);
    }

    _onPush(push) {
      if (!this._live) return;
      if (push.push === "pub") {
        check(Number.isInteger(push.offset) && typeof push.epoch === "string", "pub push");
        const position = this.position;
        if (position) {
          if (push.epoch === position.epoch && push.offset <= position.offset) return; // a duplicate
          const expected = push.epoch === position.epoch ? position.offset + 1 : 1;
          if (push.offset !== expected) {
            this.client._resync(); // a gap: resume from what we hold
            return;
          }
        }
        this.position = { offset: push.offset, epoch: push.epoch };
        call(this.handlers.onPublication, [{ channel: this.channel, offset: push.offset, epoch: push.epoch, data: push.data }]);
      } else {
        check(push.info && typeof push.info.client === "string", "join/leave push");
        const info = { client: push.info.client, user: push.info.user === undefined ? null : push.info.user };
        call(push.push === "join" ? this.handlers.onJoin : this.handlers.onLeave, [info]);
      }
    }

    _end(error) {
      const wasReady = this._everSubscribed;
      this.active = false;
      this._live = false;
      if (this.client._subscriptions.get(this.channel) === this) this.client._subscriptions.delete(this.channel);
      if (error) this.error = error;
      if (!wasReady) {
        this._reject(error || new Error("wsskit: unsubscribed"));
      } else if (error) {
        call(this.handlers.onError, [error]);
      }
    }
  }

  class Client {
    constructor(url, options) {
      const o = options || {};
      this.url = url;
      this.options = {
        reconnect: o.reconnect !== false,
        firstDelay: o.firstDelay !== undefined ? o.firstDelay : 1000,
        initialDelay: o.initialDelay !== undefined ? o.initialDelay : 500,
        factor: o.factor !== undefined ? o.factor : 2,
        maxDelay: o.maxDelay !== undefined ? o.maxDelay : 30000,
        stableAfter: o.stableAfter !== undefined ? o.stableAfter : 10000,
        maxAttempts: o.maxAttempts !== undefined ? o.maxAttempts : Infinity,
        timeout: o.timeout !== undefined ? o.timeout : 10000,
      };
      this.onConnect = o.onConnect;
      this.onDisconnect = o.onDisconnect;
      this.onReconnecting = o.onReconnecting;
      this.onClosed = o.onClosed;
      this._WebSocket = o.WebSocket || globalThis.WebSocket;
      if (typeof this._WebSocket !== "function") throw new TypeError("wsskit: no WebSocket implementation");
      this._protocols = [SUBPROTOCOL];
      if (o.token) this._protocols.push(TOKEN_PREFIX + o.token);
      this._subscriptions = new Map();
      this._ws = null;
      this._ready = false;
      this._broken = false;
      this._wantResync = false;
      this._fatal = false;
      this._nextId = 0;
      this._inflight = new Map();
      this._backlog = [];
      this._attempt = 0;
      this._failures = 0;
      this._timer = null;
      this._closing = false;
      this.closed = false;
      this.failure = null;
      this._connected = new Promise((resolve, reject) => {
        this._resolveConnected = resolve;
        this._rejectConnected = reject;
      });
      this._connected.catch(() => {});
      this._started = false;
    }

    get connected() { return this._ready && !this._broken; }

    /** Open the connection; resolves once it is ready, rejects if the client ends first. */
    connect() {
      if (!this._started) {
        this._started = true;
        this._open();
      }
      return this._connected;
    }

    /** Close for good: no reconnect; pending commands reject. */
    close() {
      this._closing = true;
      clearTimeout(this._timer);
      const ws = this._ws;
      if (ws) ws.close(1000, "");
      this._finish(null);
    }

    subscribe(channel, handlers) {
      handlers = handlers || {};
      const error = this._unusable();
      if (error) return Promise.reject(error);
      if (this._subscriptions.has(channel)) return Promise.reject(new ChannelError(106, "already subscribed"));
      const sub = new Subscription(this, channel, handlers, handlers.since, handlers.token);
      this._subscriptions.set(channel, sub);
      if (this.connected) {
        sub._sentOn = this._ws;
        this._send(this._ws, this._subscribeCommand(sub));
      }
      return this._withTimeout(sub._ready, "subscribe", () => this._unsubscribe(sub).catch(() => {}));
    }

    publish(channel, data, options) {
      const o = options || {};
      const fields = { channel: channel, data: data, idempotency_key: o.idempotencyKey || randomKey() };
      if (o.token !== undefined) fields.token = o.token;
      return this._call("publish", fields, "retry");
    }

    history(channel, options) {
      const o = options || {};
      const fields = { channel: channel };
      if (o.since) fields.since = { offset: o.since.offset, epoch: o.since.epoch };
      if (o.limit !== undefined) fields.limit = o.limit;
      if (o.token !== undefined) fields.token = o.token;
      return this._call("history", fields, "retry");
    }

    presence(channel, options) {
      const o = options || {};
      const fields = { channel: channel };
      if (o.token !== undefined) fields.token = o.token;
      return this._call("presence", fields, "retry").then((result) => result.clients);
    }

    ping() { return this._call("ping", {}, "retry").then(() => undefined); }

    // -- commands ----------------------------------------------------------------------

    _unusable() {
      if (!this._started) return new Error("wsskit: call connect() first");
      if (this.closed || this._closing) return this.failure || new Error("wsskit: the client is closed");
      return null;
    }

    _call(cmd, fields, onLoss) {
      const error = this._unusable();
      if (error) return Promise.reject(error);
      const pending = { cmd: cmd, fields: fields, onLoss: onLoss, id: 0, handler: null };
      const promise = new Promise((resolve, reject) => {
        pending.resolve = resolve;
        pending.reject = reject;
      });
      if (this.connected) this._send(this._ws, pending);
      else this._backlog.push(pending);
      return this._withTimeout(promise, cmd, () => this._forget(pending));
    }

    _withTimeout(promise, what, onTimeout) {
      let timer;
      const timeout = new Promise((resolve, reject) => {
        timer = setTimeout(() => {
          onTimeout();
          reject(new Error("wsskit: no reply to " + what + " within " + this.options.timeout + " ms"));
        }, this.options.timeout);
      });
      return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
    }

    _forget(pending) {
      if (this._inflight.get(pending.id) === pending) this._inflight.delete(pending.id);
      const index = this._backlog.indexOf(pending);
      if (index >= 0) this._backlog.splice(index, 1);
    }

    _subscribeCommand(sub) {
      const since = sub.position;
      const pending = { cmd: "subscribe", fields: sub._fields(), onLoss: "drop", id: 0 };
      pending.handler = (reply) => sub._onReply(reply, since !== null, since);
      return pending;
    }

    _send(ws, pending) {
      this._nextId += 1;
      pending.id = this._nextId;
      this._inflight.set(pending.id, pending);
      const text = JSON.stringify(Object.assign({ id: pending.id, cmd: pending.cmd }, pending.fields));
      ws.send(text);
    }

    _unsubscribe(sub) {
      if (!sub.active) return Promise.resolve();
      sub._end(null);
      if (!this._ws || sub._sentOn !== this._ws || this._broken || this._closing) return Promise.resolve();
      return this._call("unsubscribe", { channel: sub.channel }, "done").then(
        () => undefined,
        (error) => { if (!(error instanceof ChannelError && error.code === 107)) throw error; }
      );
    }

    // -- the connection ----------------------------------------------------------------

    _open() {
      this._timer = null;
      let ws;
      try {
        ws = new this._WebSocket(this.url, this._protocols);
      } catch (error) {
        this._finish(error); // an invalid URL: retrying will not help
        return;
      }
      this._ws = ws;
      this._ready = false;
      this._broken = false;
      let openedAt = null;
      ws.onopen = () => {
        if (ws !== this._ws) return;
        openedAt = Date.now();
        if (ws.protocol !== SUBPROTOCOL) {
          this._finish(new Error("wsskit: the server did not select " + SUBPROTOCOL));
          ws.close(1000, "");
          return;
        }
        this._resume(ws);
      };
      ws.onmessage = (event) => {
        if (ws !== this._ws || this._broken) return;
        try {
          this._handle(event.data);
        } catch (error) {
          console.error("wsskit: the server broke the protocol", error);
          this._broken = true;
          this._wantResync = false;
          this._fatal = true;
          ws.close(4008, "bad protocol usage");
        }
      };
      ws.onclose = (event) => {
        if (ws !== this._ws) return;
        this._ws = null;
        this._ready = false;
        this._lost();
        const code = event.code;
        if (openedAt !== null) call(this.onDisconnect, [code, event.reason || ""]);
        const resync = this._wantResync;
        this._wantResync = false;
        if (this._closing || this.closed) return;
        if (!this.options.reconnect || this._fatal || (openedAt !== null && !resync && !shouldReconnect(code))) {
          this._finish(new Error("wsskit: connection closed: " + code + (event.reason ? " (" + event.reason + ")" : "")));
          return;
        }
        if (openedAt !== null && Date.now() - openedAt >= this.options.stableAfter) {
          this._failures = 0;
          this._attempt = 0;
        } else {
          this._failures += 1; // refused, or accepted then dropped at once
        }
        this._schedule();
      };
    }

    _schedule() {
      const o = this.options;
      if (this._failures >= o.maxAttempts) {
        this._finish(new Error("wsskit: gave up reconnecting after " + this._failures + " attempts"));
        return;
      }
      this._attempt += 1;
      // Full jitter: a random first delay, then up to initialDelay * factor^n (RFC 6455 §7.2.3).
      const ceiling = this._attempt === 1 ? o.firstDelay
        : Math.min(o.maxDelay, o.initialDelay * Math.pow(o.factor, this._attempt - 2));
      const delay = Math.random() * ceiling;
      call(this.onReconnecting, [this._attempt, delay]);
      this._timer = setTimeout(() => this._open(), delay);
    }

    _resume(ws) {
      // Subscriptions first, then the commands that waited: order holds.
      for (const sub of this._subscriptions.values()) {
        if (sub._sentOn === ws) continue;
        sub._sentOn = ws;
        sub._live = false;
        this._send(ws, this._subscribeCommand(sub));
      }
      const backlog = this._backlog;
      this._backlog = [];
      for (const pending of backlog) this._send(ws, pending);
      this._ready = true;
      this._resolveConnected();
      call(this.onConnect, []);
    }

    _lost() {
      // The connection ended: decide the fate of each command it carried.
      const retry = [];
      for (const pending of this._inflight.values()) {
        if (pending.onLoss === "retry") retry.push(pending);
        else if (pending.onLoss === "done") pending.resolve({});
      }
      this._inflight.clear();
      this._backlog = retry.concat(this._backlog);
      for (const sub of this._subscriptions.values()) sub._live = false;
    }

    _resync() {
      const ws = this._ws;
      if (!ws || this._broken) return;
      this._broken = true;
      this._wantResync = true;
      ws.close(RESYNC, "resuming");
    }

    _finish(error) {
      if (this.closed) return;
      this.closed = true;
      this._closing = true;
      this.failure = error;
      clearTimeout(this._timer);
      const reason = error || new Error("wsskit: the client is closed");
      for (const pending of this._inflight.values()) if (pending.reject) pending.reject(reason);
      for (const pending of this._backlog) if (pending.reject) pending.reject(reason);
      this._inflight.clear();
      this._backlog = [];
      for (const sub of Array.from(this._subscriptions.values())) {
        if (!sub._everSubscribed) sub._reject(reason);
        sub.active = false;
        sub._live = false;
      }
      this._subscriptions.clear();
      this._rejectConnected(reason);
      call(this.onClosed, [error]);
    }

    _handle(text) {
      check(typeof text === "string", "a binary message");
      const message = JSON.parse(text);
      check(message !== null && typeof message === "object" && !Array.isArray(message), "not an object");
      if (message.id !== undefined) {
        const pending = this._inflight.get(message.id);
        if (!pending) return; // its caller gave up waiting
        this._inflight.delete(message.id);
        if (pending.handler) pending.handler(message);
        else if (message.error) pending.reject(new ChannelError(message.error.code, message.error.message));
        else pending.resolve(message.result);
        return;
      }
      if (message.push !== "pub" && message.push !== "join" && message.push !== "leave") return;
      const sub = this._subscriptions.get(message.channel);
      if (sub) sub._onPush(message);
    }
  }

  return { Client: Client, Subscription: Subscription, ChannelError: ChannelError, shouldReconnect: shouldReconnect, SUBPROTOCOL: SUBPROTOCOL };
});
