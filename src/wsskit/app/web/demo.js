/*
 * wsskit demo page: a chat over channels (wsskit.js) and a raw WebSocket panel.
 *
 * Every piece of text that comes from a user or the network is put into the page
 * with textContent, never parsed as HTML: WSS encrypts the bytes, it does not make
 * them safe to render (a chat message "<img src=x onerror=...>" stays text).
 */
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const base = scheme + "//" + location.host;

  // -- small helpers -------------------------------------------------------------------

  function time() {
    return new Date().toLocaleTimeString();
  }

  function logLine(list, kind, text) {
    const item = document.createElement("li");
    item.className = kind;
    item.dataset.kind = kind;
    item.textContent = time() + "  " + kind + (text ? ": " + text : "");
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
    return item;
  }

  function setStatus(element, state, text) {
    element.dataset.state = state;
    element.textContent = text;
  }

  function describe(data) {
    if (typeof data === "string") return data;
    if (data instanceof ArrayBuffer) return "<" + data.byteLength + " bytes>";
    if (data && typeof data.size === "number") return "<" + data.size + " bytes>";
    return String(data);
  }

  // -- chat ------------------------------------------------------------------------------

  const chat = {
    client: null,
    sub: null,
    channel: null,
    name: null,
  };

  function chatLog(kind, text) {
    logLine($("chat-log"), kind, text);
  }

  function showPublication(publication) {
    const data = publication.data;
    const item = document.createElement("li");
    item.dataset.offset = String(publication.offset);
    item.dataset.epoch = publication.epoch;
    const name = data && typeof data.name === "string" ? data.name : "?";
    if (data && data.note === "joined") {
      item.className = "note";
      item.textContent = name + " joined";
    } else {
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = name;
      const text = document.createElement("span");
      text.className = "text";
      text.textContent = data && typeof data.text === "string" ? data.text : JSON.stringify(data);
      item.append(who, text);
    }
    const list = $("messages");
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
  }

  async function refreshPresence() {
    const client = chat.client;
    const channel = chat.channel;
    if (!client || !channel) return;
    let clients;
    try {
      clients = await client.presence(channel);
    } catch (error) {
      chatLog("error", "presence: " + error.message);
      return;
    }
    if (channel !== chat.channel) return;
    const list = $("presence");
    list.replaceChildren();
    for (const info of clients) {
      const item = document.createElement("li");
      item.textContent = info.user || "guest " + info.client.slice(0, 8);
      list.appendChild(item);
    }
    $("presence-count").textContent = String(clients.length);
  }

  function ensureClient() {
    if (chat.client) return chat.client;
    setStatus($("chat-status"), "connecting", "connecting");
    const client = new WsskitChannels.Client(base + "/channels", {
      onConnect: () => {
        setStatus($("chat-status"), "open", "connected");
        chatLog("connect", base + "/channels");
      },
      onDisconnect: (code, reason) => {
        setStatus($("chat-status"), "reconnecting", "disconnected (" + code + ")");
        chatLog("disconnect", code + (reason ? " " + reason : ""));
      },
      onReconnecting: (attempt, delay) => {
        setStatus($("chat-status"), "reconnecting", "reconnecting (attempt " + attempt + ")");
        chatLog("reconnecting", "attempt " + attempt + " in " + Math.round(delay) + " ms");
      },
      onClosed: (error) => {
        setStatus($("chat-status"), "closed", error ? "closed: " + error.message : "closed");
        chatLog("closed", error ? error.message : "");
      },
    });
    chat.client = client;
    client.connect().catch((error) => chatLog("error", error.message));
    return client;
  }

  async function join(event) {
    event.preventDefault();
    const name = $("name").value.trim();
    const room = $("room").value.trim();
    if (!name || !/^[A-Za-z0-9_-]{1,40}$/.test(room)) {
      chatLog("error", "pick a name, and a room of letters, digits, _ and -");
      return;
    }
    const channel = "chat:" + room;
    const client = ensureClient();
    if (chat.sub && chat.channel !== channel) {
      const old = chat.sub;
      chat.sub = null;
      old.unsubscribe().catch(() => {});
      $("messages").replaceChildren();
    }
    chat.name = name;
    if (chat.channel === channel && chat.sub) return;
    chat.channel = channel;
    try {
      chat.sub = await client.subscribe(channel, {
        onPublication: showPublication,
        onRecovery: (recovered, missed) => {
          chatLog("recovery", recovered ? "resumed, " + missed + " missed message(s) delivered" : "history lost: some messages may be missing");
          refreshPresence();
        },
        onJoin: () => refreshPresence(),
        onLeave: () => refreshPresence(),
        onError: (error) => chatLog("error", channel + ": " + error.message),
      });
    } catch (error) {
      chatLog("error", "subscribe: " + error.message);
      chat.channel = null;
      return;
    }
    chatLog("subscribed", channel);
    document.body.dataset.room = channel;
    $("text").disabled = false;
    $("send").disabled = false;
    refreshPresence();
    client.publish(channel, { name: name, note: "joined" }).catch((error) => chatLog("error", error.message));
  }

  async function send(event) {
    event.preventDefault();
    const input = $("text");
    const text = input.value;
    if (!text || !chat.client || !chat.channel) return;
    input.value = "";
    try {
      await chat.client.publish(chat.channel, { name: chat.name, text: text });
    } catch (error) {
      chatLog("error", "publish: " + error.message);
    }
  }

  // -- raw WebSocket -----------------------------------------------------------------------

  const raw = { ws: null };
  const rawUrl = base + "/echo";

  function rawLog(kind, text) {
    logLine($("raw-log"), kind, text);
  }

  function rawControls(open) {
    $("raw-open").disabled = open;
    $("raw-close").disabled = !open;
    $("raw-text").disabled = !open;
    $("raw-send").disabled = !open;
  }

  function rawOpen() {
    if (raw.ws) return;
    setStatus($("raw-status"), "connecting", "connecting");
    const ws = new WebSocket(rawUrl);
    raw.ws = ws;
    ws.addEventListener("open", () => {
      setStatus($("raw-status"), "open", "open");
      rawLog("open", rawUrl + (ws.protocol ? " (" + ws.protocol + ")" : ""));
      rawControls(true);
    });
    ws.addEventListener("message", (event) => rawLog("message", describe(event.data)));
    ws.addEventListener("error", () => {
      // Browsers tell a page nothing about why (no status, no TLS detail).
      setStatus($("raw-status"), "error", "error");
      rawLog("error", "the connection failed");
    });
    ws.addEventListener("close", (event) => {
      setStatus($("raw-status"), "closed", "closed " + event.code);
      rawLog("close", "code " + event.code + (event.reason ? " " + event.reason : "") + (event.wasClean ? " (clean)" : " (not clean)"));
      raw.ws = null;
      rawControls(false);
    });
  }

  function rawSend(event) {
    event.preventDefault();
    const input = $("raw-text");
    if (!raw.ws || raw.ws.readyState !== WebSocket.OPEN || !input.value) return;
    raw.ws.send(input.value);
    rawLog("sent", input.value);
    input.value = "";
  }

  // -- wiring ---------------------------------------------------------------------------

  function start() {
    $("raw-url").textContent = rawUrl;
    if (!$("name").value) $("name").value = "guest-" + Math.floor(Math.random() * 10000);
    $("join-form").addEventListener("submit", join);
    $("send-form").addEventListener("submit", send);
    $("raw-open").addEventListener("click", rawOpen);
    $("raw-close").addEventListener("click", () => raw.ws && raw.ws.close(1000, "bye"));
    $("raw-form").addEventListener("submit", rawSend);
    document.body.dataset.ready = "true";
  }

  start();
})();
