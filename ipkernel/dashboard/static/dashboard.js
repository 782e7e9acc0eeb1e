// ipkernel controller dashboard: renders the snapshots that api/events streams.
// Plain browser JavaScript, no build step. All text from the data goes in
// through textContent (never innerHTML).
(function () {
  "use strict";

  const DASH = "\u2014";
  const PLOT_HEIGHT = 220;
  const STALE_AFTER = 5; // seconds without a snapshot before the live dot turns amber

  const body = document.body;
  const byId = (id) => document.getElementById(id);

  // ------------------------------------------------------------ value helpers

  function num(x) {
    if (typeof x === "string" && x.trim() !== "") x = Number(x);
    return typeof x === "number" && Number.isFinite(x) ? x : null;
  }
  function int(x) {
    const n = num(x);
    return n === null ? 0 : Math.round(n);
  }
  function list(x) {
    return Array.isArray(x) ? x : [];
  }
  function obj(x) {
    return x !== null && typeof x === "object" && !Array.isArray(x) ? x : {};
  }
  function str(x) {
    return x === null || x === undefined ? "" : String(x);
  }
  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  // ------------------------------------------------------------ formatting

  function fmtDuration(seconds) {
    const s = num(seconds);
    if (s === null || s < 0) return DASH;
    if (s < 10) return s.toFixed(1) + " s";
    if (s < 60) return Math.floor(s) + " s";
    const t = Math.floor(s);
    if (t < 3600) return Math.floor(t / 60) + " min " + (t % 60) + " s";
    if (t < 86400) return Math.floor(t / 3600) + " h " + Math.floor((t % 3600) / 60) + " min";
    return Math.floor(t / 86400) + " d " + Math.floor((t % 86400) / 3600) + " h";
  }

  // Memory: binary units ("117.7 MiB").
  function fmtBytes(bytes) {
    let v = num(bytes);
    if (v === null || v < 0) return DASH;
    if (v < 1024) return Math.round(v) + " B";
    const units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = -1;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return v.toFixed(1) + " " + units[i];
  }

  // Traffic: decimal units ("5.0 MB/s").
  const RATE_UNITS = ["B/s", "kB/s", "MB/s", "GB/s", "TB/s"];
  function scaleRate(rate) {
    let v = rate;
    let i = 0;
    while (Math.abs(v) >= 1000 && i < RATE_UNITS.length - 1) {
      v /= 1000;
      i += 1;
    }
    return [v, RATE_UNITS[i]];
  }
  function fmtRate(rate) {
    const r = num(rate);
    if (r === null) return DASH;
    const [v, unit] = scaleRate(r);
    return (unit === "B/s" ? String(Math.round(v)) : v.toFixed(1)) + " " + unit;
  }
  // Short form for axis ticks ("5 MB/s", "1.2 kB/s").
  function fmtRateTick(rate) {
    const r = num(rate);
    if (r === null) return "";
    if (r === 0) return "0";
    const [v, unit] = scaleRate(r);
    return String(parseFloat(v.toPrecision(3))) + " " + unit;
  }

  function fmtCpu(cpu) {
    const c = num(cpu);
    return c === null ? DASH : Math.round(c) + " %";
  }

  function fmtClock(unixSeconds) {
    const t = num(unixSeconds);
    if (t === null) return "--:--:--";
    const d = new Date(t * 1000);
    return [d.getHours(), d.getMinutes(), d.getSeconds()]
      .map((v) => String(v).padStart(2, "0"))
      .join(":");
  }

  // ------------------------------------------------------------ DOM helpers

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Writes only when the text changed, so the DOM is left alone between
  // snapshots that change nothing (keeps selections and tooltips steady).
  function setText(node, text) {
    const t = str(text);
    if (node && node.textContent !== t) node.textContent = t;
  }
  function setAttr(node, name, value) {
    const v = str(value);
    if (node.getAttribute(name) !== v) node.setAttribute(name, v);
  }

  // Keyed list update: one cached entry ({node, ...}) per key, created once,
  // updated in place, kept in the order of `items`; entries whose key went
  // away are removed. `parent` must hold only the nodes managed here.
  function reconcile(parent, cache, items, keyOf, create, update) {
    const seen = new Set();
    items.forEach((item, i) => {
      const base = keyOf(item, i);
      let key = base;
      for (let n = 2; seen.has(key); n += 1) key = base + "#" + n;
      seen.add(key);
      let entry = cache.get(key);
      if (!entry) {
        entry = create(item, key);
        cache.set(key, entry);
      }
      update(entry, item, i, key);
      const at = parent.children[i];
      if (at !== entry.node) parent.insertBefore(entry.node, at || null);
    });
    for (const [key, entry] of cache) {
      if (!seen.has(key)) {
        entry.node.remove();
        cache.delete(key);
      }
    }
  }

  // ------------------------------------------------------------ header

  const header = {
    controller: byId("controller-info"),
    uptime: byId("uptime"),
    engines: byId("engine-summary"),
    clients: byId("client-summary"),
    live: byId("live"),
    liveAge: byId("live-age"),
  };

  function renderHeader(snap) {
    const c = obj(snap.controller);
    const parts = [];
    if (c.host !== undefined && c.host !== null) parts.push(str(c.host));
    if (num(c.pid) !== null) parts.push("pid " + c.pid);
    if (c.version !== undefined && c.version !== null) parts.push("v" + str(c.version));
    setText(header.controller, parts.length ? "controller " + parts.join(" \u00b7 ") : "controller");

    const engines = list(snap.engines);
    const counts = { busy: 0, idle: 0, dead: 0 };
    let other = 0;
    for (const e of engines) {
      const s = str(obj(e).state);
      if (Object.prototype.hasOwnProperty.call(counts, s)) counts[s] += 1;
      else other += 1;
    }
    let text = plural(engines.length, "engine") + ": " + counts.busy + " busy, " +
      counts.idle + " idle, " + counts.dead + " dead";
    if (other) text += ", " + other + " other";
    setText(header.engines, text);
    setText(header.clients, plural(list(snap.clients).length, "client") + " connected");

    document.title = "ipkernel cluster (" + counts.busy + "/" + engines.length + " busy)";
  }

  // Uptime and the live indicator tick every second between snapshots.
  function tickHeader() {
    const now = Date.now() / 1000;
    if (last.snap) {
      const started = num(obj(last.snap.controller).started);
      const serverTime = num(last.snap.time);
      if (started !== null && serverTime !== null) {
        const up = serverTime - started + (state.connected ? now - last.receivedAt : 0);
        setText(header.uptime, "up " + fmtDuration(Math.max(0, up)));
      } else {
        setText(header.uptime, "");
      }
    }
    let status;
    let label;
    if (!state.connected) {
      status = state.everConnected || state.everFailed ? "offline" : "connecting";
      label = state.everConnected
        ? "offline \u00b7 last data " + fmtDuration(now - last.receivedAt) + " ago"
        : status === "offline" ? "offline" : "connecting\u2026";
    } else {
      const age = Math.max(0, now - last.receivedAt);
      status = age > STALE_AFTER ? "stale" : "live";
      label = status + " \u00b7 " + fmtDuration(age) + " ago";
    }
    header.live.dataset.status = status;
    setText(header.liveAge, label);
  }

  // ------------------------------------------------------------ engines

  const engineBody = byId("engine-rows");
  const engineCache = new Map();

  function compareEngines(a, b) {
    const x = obj(a).id;
    const y = obj(b).id;
    const nx = num(x);
    const ny = num(y);
    if (nx !== null && ny !== null) return nx - ny;
    if (nx !== null) return -1;
    if (ny !== null) return 1;
    return str(x).localeCompare(str(y), undefined, { numeric: true });
  }

  function createEngineRow() {
    const tr = el("tr", "engine-row");
    const cell = (cls) => tr.appendChild(el("td", cls));
    const r = {
      node: tr,
      id: cell("num id"),
      host: cell("host"),
      pid: cell("num pid"),
      state: cell("state"),
      command: cell("command"),
      running: cell("num running"),
      queue: cell("num queue"),
      rss: cell("num rss"),
      cpu: cell("cpu"),
    };
    r.badge = r.state.appendChild(el("span", "badge"));
    r.cmd = r.command.appendChild(el("code", "cmd"));
    const cpuWrap = r.cpu.appendChild(el("span", "cpu-wrap"));
    r.cpuText = cpuWrap.appendChild(el("span", "cpu-text"));
    const bar = cpuWrap.appendChild(el("span", "cpu-bar"));
    r.cpuFill = bar.appendChild(el("span", "cpu-fill"));
    return r;
  }

  function updateEngineRow(r, engine) {
    const e = obj(engine);
    const stateName = str(e.state) || "unknown";
    setAttr(r.node, "data-engine-id", str(e.id));
    setAttr(r.node, "data-state", stateName);
    setText(r.id, str(e.id));
    setText(r.host, str(e.host) || DASH);
    setAttr(r.host, "title", str(e.host));
    setText(r.pid, num(e.pid) === null ? DASH : String(e.pid));
    setText(r.badge, stateName);
    setAttr(r.badge, "class", "badge badge-" + (["busy", "idle", "dead"].includes(stateName) ? stateName : "other"));

    const command = e.command === null || e.command === undefined ? "" : str(e.command);
    // One line in the cell (newlines shown as ⏎); the full text in the tooltip.
    setText(r.cmd, command ? command.replace(/[ \t]*\r?\n[ \t]*/g, " \u23ce ") : DASH);
    r.cmd.classList.toggle("muted", !command);
    if (command) setAttr(r.cmd, "title", command);
    else r.cmd.removeAttribute("title");

    setText(r.running, fmtDuration(e.running_for));
    setText(r.queue, num(e.queue) === null ? DASH : String(int(e.queue)));
    setText(r.rss, fmtBytes(e.rss));
    setAttr(r.rss, "title", num(e.rss) === null ? "" : int(e.rss).toLocaleString() + " bytes");

    const cpu = num(e.cpu);
    setText(r.cpuText, fmtCpu(cpu));
    const width = cpu === null ? "0%" : Math.min(100, Math.max(0, cpu)).toFixed(1) + "%";
    if (r.cpuFill.style.width !== width) r.cpuFill.style.width = width;
    r.cpuFill.classList.toggle("hot", cpu !== null && cpu >= 90);
  }

  function renderEngines(snap) {
    const engines = list(snap.engines).filter((e) => e && typeof e === "object").slice().sort(compareEngines);
    reconcile(engineBody, engineCache, engines,
      (e, i) => (e.id === null || e.id === undefined ? "?" + i : "e" + str(e.id)),
      createEngineRow, updateEngineRow);
    byId("engines-empty").hidden = engines.length > 0;
    setText(byId("engines-count"), engines.length ? "(" + engines.length + ")" : "");
  }

  // ------------------------------------------------------------ tasks

  const taskCounters = ["pending", "running", "succeeded", "failed"];

  function renderTasks(snap) {
    const tasks = obj(snap.tasks);
    for (const name of taskCounters) {
      setText(byId("tasks-" + name), String(int(tasks[name])));
    }
    byId("tasks").classList.toggle("has-failures", int(tasks.failed) > 0);
    const points = columns(tasks.throughput, 2);
    if (plots.tasks) plots.tasks.setData(points, true);
    setAttr(byId("task-plot"), "data-samples", String(points[0].length));
  }

  // ------------------------------------------------------------ channels

  function renderChannels(snap) {
    const ch = obj(snap.channels);
    const lanes = obj(ch.lanes);
    const data = obj(ch.data_channel);
    setText(byId("channels-lanes-in"), fmtRate(lanes.bytes_in_per_s));
    setText(byId("channels-lanes-out"), fmtRate(lanes.bytes_out_per_s));
    setText(byId("channels-data-in"), fmtRate(data.bytes_in_per_s));
    setText(byId("channels-data-out"), fmtRate(data.bytes_out_per_s));
    const points = columns(ch.history, 5);
    if (plots.channels) plots.channels.setData(points, true);
    setAttr(byId("channel-plot"), "data-samples", String(points[0].length));
  }

  // [[t, a, b, ...], ...] rows -> uPlot columns [[t...], [a...], [b...], ...],
  // skipping malformed rows and keeping time ascending.
  function columns(rows, width) {
    const good = list(rows).filter((row) => Array.isArray(row) && num(row[0]) !== null);
    for (let i = 1; i < good.length; i += 1) {
      if (good[i][0] < good[i - 1][0]) {
        good.sort((a, b) => a[0] - b[0]);
        break;
      }
    }
    const out = [];
    for (let c = 0; c < width; c += 1) out.push(good.map((row) => num(row[c])));
    return out;
  }

  // ------------------------------------------------------------ clients

  const clientBody = byId("client-rows");
  const clientCache = new Map();

  function createClientRow() {
    const tr = el("tr", "client-row");
    return {
      node: tr,
      peer: tr.appendChild(el("td", "peer")),
      uses: tr.appendChild(el("td", "uses")),
      age: tr.appendChild(el("td", "num")),
      calls: tr.appendChild(el("td", "num")),
    };
  }

  function updateClientRow(r, client) {
    const c = obj(client);
    setAttr(r.node, "data-peer", str(c.peer));
    setText(r.peer, str(c.peer) || DASH);
    setText(r.uses, list(c.uses).map(str).join(", ") || DASH);
    setText(r.age, fmtDuration(c.connected_for));
    setText(r.calls, num(c.calls) === null ? DASH : String(int(c.calls)));
  }

  function renderClients(snap) {
    const clients = list(snap.clients).filter((c) => c && typeof c === "object");
    reconcile(clientBody, clientCache, clients, (c) => "p" + str(c.peer), createClientRow, updateClientRow);
    byId("clients-empty").hidden = clients.length > 0;
    setText(byId("clients-count"), clients.length ? "(" + clients.length + ")" : "");
  }

  // ------------------------------------------------------------ errors

  const errorList = byId("error-list");
  const errorCache = new Map();
  // Tracebacks the user opened or closed by hand, by error key; the others
  // follow the default (only the newest is open).
  const errorToggled = new Map();

  function errorKey(e) {
    return [e.time, e.engine_id, e.task_id, e.what, e.summary].map(str).join("|");
  }

  function createError(item, key) {
    const li = el("li", "error");
    const head = li.appendChild(el("div", "error-head"));
    head.setAttribute("role", "button");
    head.tabIndex = 0;
    const r = {
      node: li,
      head: head,
      time: head.appendChild(el("span", "error-time")),
      where: head.appendChild(el("span", "error-where")),
      summary: head.appendChild(el("span", "error-summary")),
      traceback: li.appendChild(el("pre", "traceback")),
      open: false,
    };
    const toggle = () => {
      errorToggled.set(key, !r.open);
      setErrorOpen(r, !r.open);
    };
    head.addEventListener("click", toggle);
    head.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        toggle();
      }
    });
    return r;
  }

  function setErrorOpen(r, open) {
    r.open = open;
    r.traceback.hidden = !open;
    r.node.classList.toggle("expanded", open);
    r.head.setAttribute("aria-expanded", open ? "true" : "false");
  }

  function updateError(r, item, index, key) {
    const e = obj(item);
    setText(r.time, fmtClock(e.time));
    setAttr(r.time, "title", num(e.time) === null ? "" : new Date(e.time * 1000).toString());
    let where;
    if (e.task_id !== null && e.task_id !== undefined) where = "[task " + str(e.task_id) + "]";
    else if (e.engine_id !== null && e.engine_id !== undefined) {
      where = "[engine " + str(e.engine_id) + (e.what ? ":" + str(e.what) : "") + "]";
    } else where = "[" + (e.what ? str(e.what) : "controller") + "]";
    setText(r.where, where);
    setText(r.summary, str(e.summary) || "(no summary)");
    setText(r.traceback, str(e.traceback) || str(e.summary) || "(no traceback)");
    setErrorOpen(r, errorToggled.has(key) ? errorToggled.get(key) : index === 0);
  }

  function renderErrors(snap) {
    const errors = list(snap.errors).filter((e) => e && typeof e === "object").slice().reverse();
    reconcile(errorList, errorCache, errors, errorKey, createError, updateError);
    for (const key of errorToggled.keys()) if (!errorCache.has(key)) errorToggled.delete(key);
    byId("errors-empty").hidden = errors.length > 0;
    setText(byId("errors-count"), errors.length ? "(" + errors.length + ")" : "");
  }

  // ------------------------------------------------------------ plots

  const plots = { tasks: null, channels: null };

  // x range: the data's span; with no data (or one sample) the last minute
  // before the latest server time, so an empty plot still shows a time axis.
  function timeRange(u, min, max) {
    if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) {
      const t = (last.snap && num(last.snap.time)) || Date.now() / 1000;
      return [t - 60, t];
    }
    if (min === max) return [min - 60, max];
    return [min, max];
  }

  // Time ticks as local HH:MM (HH:MM:SS when ticks are less than a minute
  // apart and not on whole minutes).
  function timeTicks(u, ticks) {
    return ticks.map((t) => {
      const full = fmtClock(t);
      return Math.round(t) % 60 === 0 ? full.slice(0, 5) : full;
    });
  }

  // Only zero and whole powers of ten get a grid line on the asinh rate
  // axis (the in-between splits would be clutter; uPlot also offers -1 when
  // the range starts at 0, which is below the plot).
  function decades(u, splits) {
    return splits.map((v) => {
      if (v === 0) return v;
      if (v === null || v < 0) return null;
      const e = Math.log10(v);
      return Math.abs(e - Math.round(e)) < 1e-9 ? v : null;
    });
  }

  // ... and of those, labels only where there is room (22 px apart).
  function decadeLabels(u, splits) {
    let lastPos = null;
    return decades(u, splits).map((v) => {
      if (v === null) return null;
      const pos = u.valToPos(v, "y");
      if (lastPos !== null && Math.abs(lastPos - pos) < 22) return null;
      lastPos = pos;
      return v;
    });
  }

  function axisStyle(extra) {
    return Object.assign({
      stroke: "#57606a",
      grid: { stroke: "#eceef1", width: 1 },
      ticks: { stroke: "#d0d7de", width: 1, size: 4 },
      font: "11px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    }, extra || {});
  }

  function makePlot(container, opts, emptyData) {
    if (typeof window.uPlot !== "function") {
      container.textContent = "The charting library did not load.";
      container.classList.add("plot-missing");
      return null;
    }
    const width = () => Math.max(240, Math.floor(container.clientWidth || 400));
    const plot = new window.uPlot(Object.assign({ width: width(), height: PLOT_HEIGHT }, opts), emptyData, container);
    const fit = () => {
      const w = width();
      if (w !== plot.width) plot.setSize({ width: w, height: PLOT_HEIGHT });
    };
    if (typeof ResizeObserver === "function") new ResizeObserver(fit).observe(container);
    window.addEventListener("resize", fit);
    return plot;
  }

  function makeTaskPlot() {
    return makePlot(byId("task-plot"), {
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: timeRange },
        y: { range: (u, min, max) => [0, max !== null && max > 0 ? max * 1.15 : 1] },
      },
      axes: [
        axisStyle({ values: timeTicks, space: 48 }),
        axisStyle({ size: 48, values: (u, ticks) => ticks.map((v) => String(parseFloat(v.toPrecision(3)))) }),
      ],
      series: [
        { label: "time", value: (u, v) => (v === null ? DASH : fmtClock(v)) },
        {
          label: "tasks/s",
          stroke: "#2563eb",
          width: 2,
          fill: "rgba(37, 99, 235, 0.14)",
          points: { show: false },
          value: (u, v) => (v === null ? DASH : v.toFixed(2)),
        },
      ],
    }, [[], []]);
  }

  function makeChannelPlot() {
    const series = (label, stroke, dash) => ({
      label: label,
      stroke: stroke,
      width: 1.75,
      dash: dash,
      points: { show: false },
      value: (u, v) => (v === null ? DASH : fmtRate(v)),
    });
    return makePlot(byId("channel-plot"), {
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: timeRange },
        // asinh: log-like above 1 B/s, linear through zero, so a 5 MB/s data
        // channel and a 1 kB/s lane are both readable on one plot.
        y: {
          distr: 4,
          asinh: 1,
          range: (u, min, max) => [0, max !== null && max > 1 ? Math.pow(10, Math.ceil(Math.log10(max))) : 1000],
        },
      },
      axes: [
        axisStyle({ values: timeTicks, space: 48 }),
        axisStyle({
          size: 64,
          filter: decadeLabels,
          values: (u, ticks) => ticks.map(fmtRateTick),
          grid: { stroke: "#eceef1", width: 1, filter: decades },
          ticks: { stroke: "#d0d7de", width: 1, size: 4, filter: decadeLabels },
        }),
      ],
      series: [
        { label: "time", value: (u, v) => (v === null ? DASH : fmtClock(v)) },
        series("lanes in", "#2563eb"),
        series("lanes out", "#60a5fa", [5, 3]),
        series("data in", "#c2410c"),
        series("data out", "#fb923c", [5, 3]),
      ],
    }, [[], [], [], [], []]);
  }

  // ------------------------------------------------------------ connection

  const state = { connected: false, everConnected: false, everFailed: false, snapshots: 0 };
  const last = { snap: null, receivedAt: 0 };
  const banner = byId("banner");
  const main = byId("panels");
  let source = null;
  let retryTimer = null;
  let retryDelay = 2000;

  function setConnected(connected) {
    state.connected = connected;
    body.dataset.connected = connected ? "true" : "false";
    banner.hidden = connected || !state.everFailed;
    main.classList.toggle("stale", !connected && state.everConnected);
    tickHeader();
  }

  function token() {
    return new URLSearchParams(window.location.search).get("token") || "";
  }

  function parsed(ev) {
    try {
      const data = JSON.parse(ev.data);
      return data && typeof data === "object" ? data : null;
    } catch (err) {
      console.warn("dashboard: an event is not JSON", err);
      return null;
    }
  }

  // An update is a snapshot whose histories and errors hold only what is new
  // since the previous event: appended to what the page holds, within limits.
  function merged(snap, upd) {
    const limits = obj(snap.limits);
    const keep = (old, added, max) => {
      const all = list(old).concat(list(added));
      return num(max) === null ? all : all.slice(-int(max));
    };
    const out = Object.assign({}, snap, upd);
    out.limits = upd.limits || snap.limits;
    out.tasks = Object.assign({}, obj(upd.tasks), {
      throughput: keep(obj(snap.tasks).throughput, obj(upd.tasks).throughput, limits.history),
    });
    out.channels = Object.assign({}, obj(upd.channels), {
      history: keep(obj(snap.channels).history, obj(upd.channels).history, limits.history),
    });
    out.errors = keep(snap.errors, upd.errors, limits.errors);
    return out;
  }

  function onUpdate(ev) {
    const upd = parsed(ev);
    if (upd && last.snap) show(merged(last.snap, upd));
  }

  function onSnapshot(ev) {
    const snap = parsed(ev);
    if (snap) show(snap);
  }

  function show(snap) {
    last.snap = snap;
    last.receivedAt = Date.now() / 1000;
    state.snapshots += 1;
    state.everConnected = true;
    retryDelay = 2000;
    render(snap);
    body.dataset.snapshots = String(state.snapshots);
    setConnected(true);
  }

  // Each panel renders on its own: a surprise in one part of the data must
  // not blank the others.
  function render(snap) {
    for (const part of [renderHeader, renderEngines, renderTasks, renderChannels, renderClients, renderErrors]) {
      try {
        part(snap);
      } catch (err) {
        console.error("dashboard: cannot render " + part.name, err);
      }
    }
  }

  function onError() {
    state.everFailed = true;
    setConnected(false);
    // EventSource retries by itself after a dropped stream; after an HTTP
    // error (403, 503, controller gone before the reply) it gives up
    // (readyState CLOSED), so then open a new one, backing off.
    if (source && source.readyState === EventSource.CLOSED) {
      source = null;
      if (retryTimer === null) {
        retryTimer = window.setTimeout(() => {
          retryTimer = null;
          connect();
        }, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      }
    }
  }

  function connect() {
    if (typeof EventSource !== "function") {
      state.everFailed = true;
      setText(banner, "This browser cannot receive live updates (no EventSource).");
      setConnected(false);
      return;
    }
    source = new EventSource("api/events?token=" + encodeURIComponent(token()));
    source.addEventListener("snapshot", onSnapshot);
    source.addEventListener("update", onUpdate);
    source.addEventListener("message", onSnapshot); // unnamed events, just in case
    source.addEventListener("error", onError);
  }

  // ------------------------------------------------------------ start

  for (const [name, make] of [["tasks", makeTaskPlot], ["channels", makeChannelPlot]]) {
    try {
      plots[name] = make();
    } catch (err) {
      console.error("dashboard: cannot create the " + name + " plot", err);
    }
  }
  body.dataset.snapshots = "0";
  body.dataset.connected = "false";
  setConnected(false);
  window.setInterval(tickHeader, 1000);
  connect();
})();
