/*
 * wsskit dashboard: live charts of every node's snapshot, drawn on <canvas>.
 *
 * The page is public; its data is not. It opens /dashboard/ws and sends
 * {"token": "..."} first (an API token of `wsskit serve --api-token`); the
 * server pushes {"type": "stats", "nodes": {...}} once a second, where each
 * node's snapshot holds totals since it started. Rates are derived here from
 * two snapshots in a row. All text goes into the page with textContent.
 */
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const COLORS = ["#2f6fdf", "#d9480f", "#2b8a3e", "#ae3ec9", "#e8590c", "#1098ad", "#5c7cfa", "#c2255c"];
  const POINTS = 120; // two minutes at one snapshot a second
  const TOKEN_KEY = "wsskit-dashboard-token";

  // node -> {color, last snapshot, series: {name: [numbers]}}
  const nodes = new Map();
  let ws = null;
  let updates = 0;

  function setStatus(state, text) {
    const status = $("dash-status");
    status.dataset.state = state;
    status.textContent = text;
  }

  function nodeState(name) {
    let state = nodes.get(name);
    if (!state) {
      state = { color: nodes.size % COLORS.length, last: null, series: {} };
      nodes.set(name, state);
    }
    return state;
  }

  function push(state, key, value) {
    const series = state.series[key] || (state.series[key] = []);
    series.push(value);
    if (series.length > POINTS) series.shift();
  }

  function rate(now, before, key) {
    if (!before) return 0;
    const seconds = now.time - before.time;
    if (!(seconds > 0)) return 0;
    return Math.max(0, (now[key] - before[key]) / seconds);
  }

  function closeRates(now, before) {
    // Closes per second by code since the previous snapshot.
    const rates = {};
    const seconds = before ? now.time - before.time : 0;
    for (const code of Object.keys(now.close_codes || {})) {
      const previous = before && before.close_codes ? before.close_codes[code] || 0 : now.close_codes[code];
      rates[code] = seconds > 0 ? Math.max(0, (now.close_codes[code] - previous) / seconds) : 0;
    }
    return rates;
  }

  function onStats(message) {
    const seen = new Set();
    for (const [name, snapshot] of Object.entries(message.nodes || {})) {
      seen.add(name);
      const state = nodeState(name);
      if (state.last && state.last.time === snapshot.time) continue; // no new snapshot yet
      const before = state.last;
      push(state, "connections", snapshot.connections);
      push(state, "messages_in", rate(snapshot, before, "messages_in"));
      push(state, "messages_out", rate(snapshot, before, "messages_out"));
      push(state, "bytes_in", rate(snapshot, before, "bytes_in"));
      push(state, "bytes_out", rate(snapshot, before, "bytes_out"));
      const closes = closeRates(snapshot, before);
      for (const code of Object.keys(closes)) push(state, "close_" + code, closes[code]);
      state.rates = { in: rate(snapshot, before, "messages_in"), out: rate(snapshot, before, "messages_out") };
      state.last = snapshot;
    }
    for (const name of Array.from(nodes.keys())) if (!seen.has(name)) nodes.delete(name);
    updates += 1;
    document.body.dataset.updates = String(updates);
    render();
  }

  // -- drawing ----------------------------------------------------------------------------

  function draw(canvas, lines) {
    // lines: [{values, color, dashed}]
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || canvas.width;
    const height = canvas.clientHeight || canvas.height;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    let max = 0;
    for (const line of lines) for (const v of line.values) max = Math.max(max, v);
    max = max > 0 ? max * 1.15 : 1;
    const left = 48, bottom = height - 16, top = 6, right = width - 6;
    g.strokeStyle = "#d5dae0";
    g.fillStyle = "#66707c";
    g.font = "11px system-ui, sans-serif";
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i += 1) {
      const y = bottom - ((bottom - top) * i) / 4;
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(right, y);
      g.stroke();
      g.fillText(short((max * i) / 4), 4, y + 4);
    }
    for (const line of lines) {
      const values = line.values;
      if (!values.length) continue;
      g.strokeStyle = line.color;
      g.lineWidth = 2;
      g.setLineDash(line.dashed ? [5, 4] : []);
      g.beginPath();
      values.forEach((v, i) => {
        const x = right - ((values.length - 1 - i) * (right - left)) / (POINTS - 1);
        const y = bottom - (v / max) * (bottom - top);
        if (i === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      });
      g.stroke();
    }
    g.setLineDash([]);
  }

  function short(value) {
    if (value >= 1e9) return (value / 1e9).toFixed(1) + "G";
    if (value >= 1e6) return (value / 1e6).toFixed(1) + "M";
    if (value >= 1e3) return (value / 1e3).toFixed(1) + "k";
    return value >= 10 || value === 0 ? String(Math.round(value)) : value.toFixed(1);
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function render() {
    const legend = $("legend");
    legend.replaceChildren();
    const lines = { connections: [], messages: [], bytes: [], closes: [] };
    const nodeRows = [];
    const channelRows = [];
    for (const [name, state] of nodes) {
      const color = COLORS[state.color];
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch c" + state.color;
      const label = document.createElement("span");
      label.textContent = name;
      item.append(swatch, label);
      legend.appendChild(item);
      const s = state.series;
      lines.connections.push({ values: s.connections || [], color });
      lines.messages.push({ values: s.messages_in || [], color }, { values: s.messages_out || [], color, dashed: true });
      lines.bytes.push({ values: s.bytes_in || [], color }, { values: s.bytes_out || [], color, dashed: true });
      Object.keys(s).filter((k) => k.startsWith("close_")).forEach((k, i) => lines.closes.push({ values: s[k], color, dashed: i % 2 === 1 }));
      const snap = state.last;
      if (!snap) continue;
      const row = document.createElement("tr");
      row.dataset.node = name;
      cell(row, name);
      cell(row, String(snap.connections));
      cell(row, Object.entries(snap.tls || {}).map(([v, n]) => v + ": " + n).join(", ") || "-");
      cell(row, String(snap.channels));
      cell(row, String(snap.subscribers));
      cell(row, (state.rates ? state.rates.in : 0).toFixed(1));
      cell(row, (state.rates ? state.rates.out : 0).toFixed(1));
      cell(row, Object.entries(snap.close_codes || {}).map(([c, n]) => c + " x" + n).join(", ") || "-");
      nodeRows.push(row);
      for (const entry of snap.top_channels || []) {
        const channelRow = document.createElement("tr");
        cell(channelRow, name);
        cell(channelRow, entry.channel);
        cell(channelRow, String(entry.subscribers));
        channelRows.push(channelRow);
      }
    }
    $("nodes").tBodies[0].replaceChildren(...nodeRows);
    $("channels").tBodies[0].replaceChildren(...channelRows);
    draw($("chart-connections"), lines.connections);
    draw($("chart-messages"), lines.messages);
    draw($("chart-bytes"), lines.bytes);
    draw($("chart-closes"), lines.closes);
  }

  // -- connection -------------------------------------------------------------------------

  function connect(token) {
    if (ws) ws.close(1000, "");
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/dashboard/ws";
    setStatus("connecting", "connecting");
    const socket = new WebSocket(url);
    ws = socket;
    let authorized = false;
    socket.addEventListener("open", () => socket.send(JSON.stringify({ token: token })));
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      if (message.type === "hello") {
        authorized = true;
        setStatus("open", "live from " + message.node);
      } else if (message.type === "stats") {
        onStats(message);
      }
    });
    socket.addEventListener("close", (event) => {
      if (ws !== socket) return;
      ws = null;
      if (!authorized) {
        setStatus("refused", "refused: " + (event.reason || "no dashboard here (start the server with --api-token)") + " (" + event.code + ")");
        return;
      }
      setStatus("closed", "disconnected (" + event.code + "); retrying");
      setTimeout(() => connect(token), 2000);
    });
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    // Kept for this tab only, so a reload reconnects.
    sessionStorage.setItem(TOKEN_KEY, token);
    connect(token);
  });
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) connect(saved);
  document.body.dataset.ready = "true";
})();
