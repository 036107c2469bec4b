// Celeriac dashboard: loads the JSON API, follows /api/stream (Server-Sent Events) and
// draws the page. Hand-written, no build step, no dependencies. Every value from the
// cluster is put in the page as text (never as HTML).
"use strict";
(() => {
  const READY = new Set(["SUCCESS", "FAILURE", "REVOKED"]);
  const MAX_ROWS = 300;
  const query = new URLSearchParams(location.search);
  const token = query.get("token") || sessionStorage.getItem("celeriac-token") || "";
  if (token) sessionStorage.setItem("celeriac-token", token);
  if (query.has("token")) history.replaceState(null, "", location.pathname); // out of sight
  const auth = token ? { Authorization: "Bearer " + token } : {};
  // Under --url-prefix every path starts with it (the page names it in a meta tag).
  const ROOT = (document.querySelector('meta[name="celeriac-root"]') || {}).content || "";
  const $ = (selector) => document.querySelector(selector);
  const state = { config: { can_act: false }, filter: {}, next: null, tasks: new Map(),
    workers: new Map(), pending: [], chartTimer: null, loaded: false };

  // -- helpers -------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  async function api(path, options = {}) {
    const response = await fetch(ROOT + path, { ...options, headers: { ...auth, ...(options.headers || {}) } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }
  const post = (path, body = {}) => api(path, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const time = (ts) => (ts ? new Date(ts * 1000).toLocaleString() : "");
  const seconds = (s) => (s === null || s === undefined ? "" : s < 1 ? (s * 1000).toFixed(1) + " ms" : s.toFixed(2) + " s");
  function notify(message, bad) {
    const notice = $("#notice");
    notice.textContent = message;
    notice.className = bad ? "bad" : "ok";
    notice.title = message;
    clearTimeout(state.noticeTimer);
    state.noticeTimer = setTimeout(() => { notice.textContent = ""; }, 8000);
  }
  async function act(path, body, done) {
    try {
      const answer = await post(path, body);
      const replies = Array.isArray(answer.replies) ? answer.replies.flatMap((r) => Object.entries(r)) : [];
      const said = replies.map(([node, reply]) => `${node}: ${reply.ok || reply.error || JSON.stringify(reply)}`);
      notify([answer.ok, ...said].join(" — "), replies.some(([, reply]) => reply.error));
      if (done) done(answer);
    } catch (error) {
      notify(error.message, true);
    }
  }

  // -- workers and queues ----------------------------------------------------------------------
  function workerRow(w) {
    const kind = w.pool && w.pool.implementation ? String(w.pool.implementation).split(/[:.]/).pop() : "?";
    const pool = w.pool ? `${kind} × ${w.pool.max_concurrency ?? "?"}` : "";
    const name = encodeURIComponent(w.hostname);
    const actions = state.config.can_act ? [
      el("button", { class: "grow", title: "Add a pool process", onclick: () => act(`/api/workers/${name}/pool/grow`, { n: 1 }) }, "+1"),
      el("button", { class: "shrink", title: "Remove a pool process", onclick: () => act(`/api/workers/${name}/pool/shrink`, { n: 1 }) }, "−1"),
      el("button", { class: "shutdown danger", onclick: () => confirm(`Shut ${w.hostname} down?`) && act(`/api/workers/${name}/shutdown`) }, "Shut down"),
    ] : [];
    return el("tr", { "data-worker": w.hostname },
      el("td", {}, w.hostname),
      el("td", {}, el("span", { class: "status " + (w.online ? "online" : "offline") }, w.online ? "online" : "offline")),
      el("td", { class: "pool" }, pool), el("td", { class: "num" }, w.active ?? ""), el("td", { class: "num" }, w.processed ?? ""),
      el("td", {}, w.loadavg ? w.loadavg.map((n) => n.toFixed(2)).join(" ") : ""),
      el("td", {}, (w.queues || []).join(", ")), el("td", { class: "act" }, ...actions));
  }
  function renderWorkers() {
    const rows = [...state.workers.values()].sort((a, b) => a.hostname.localeCompare(b.hostname));
    $("#workers tbody").replaceChildren(...rows.map(workerRow));
    $("#count-workers").textContent = rows.filter((w) => w.online).length;
    $("#worker-names").replaceChildren(...rows.map((w) => el("option", { value: w.hostname })));
  }
  function renderQueues(queues) {
    const rate = (n) => (n === null || n === undefined ? "" : n.toFixed(1));
    $("#queues tbody").replaceChildren(...queues.map((q) => el("tr", { "data-queue": q.name },
      el("td", {}, q.name), el("td", { class: "num" }, q.length ?? "?"), el("td", { class: "num" }, q.consumers ?? ""),
      el("td", { class: "num" }, rate(q.sent_per_min)), el("td", { class: "num" }, rate(q.change_per_min)))));
  }

  // -- dead letters ----------------------------------------------------------------------------
  function deadRow(d) {
    const id = encodeURIComponent(d.id);
    const actions = state.config.can_act && d.is_message ? [
      el("button", { class: "requeue", onclick: () => confirm(`Send ${d.task || "this message"} back to ${d.queue}?`) &&
        act(`/api/dead-letters/${id}/requeue`, {}, () => loadDeadLetters()) }, "Requeue"),
    ] : [];
    return el("tr", { "data-letter": d.id },
      el("td", {}, el("a", { href: "#", class: "uuid", onclick: (e) => { e.preventDefault(); showDeadLetter(d.id); } }, d.id.slice(0, 8))),
      el("td", {}, d.queue), el("td", {}, time(d.dead_lettered_at)),
      el("td", {}, d.is_message ? d.task || "?" : "(not a message)"), el("td", {}, d.task_id || ""),
      el("td", { class: "reason", title: d.reason }, d.reason), el("td", { class: "act" }, ...actions));
  }
  async function loadDeadLetters() {
    const queue = new FormData($("#dead-filter")).get("queue").trim();
    const page = await api("/api/dead-letters?" + new URLSearchParams(queue ? { queue } : {}));
    $("#dead-letters tbody").replaceChildren(...page.dead_letters.map(deadRow));
    $("#dead-total").textContent = `(${page.total})`;
  }
  async function showDeadLetter(id) {
    const d = await api("/api/dead-letters/" + encodeURIComponent(id));
    const fields = [["Id", d.id], ["Queue", d.queue], ["Reason", d.reason], ["Set aside", time(d.dead_lettered_at)],
      ["Task", d.task], ["Task id", d.task_id], ["Content type", d.message.content_type],
      ["Body encoding", d.message.body_encoding], ["Headers", JSON.stringify(d.message.headers)]];
    $("#detail-fields").replaceChildren(...fields.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
    $("#detail-traceback").textContent = d.message.body;
    $("#detail-failure").hidden = false;
    $("#detail-failure h3").textContent = "Body";
    $("#detail-title").textContent = "Dead letter";
    $("#detail").hidden = false;
  }

  // -- tasks -----------------------------------------------------------------------------------
  function progressCell(t) {
    if (!t.progress || !t.progress.total) return el("td", {});
    const { current, total } = t.progress;
    return el("td", {}, el("progress", { max: total, value: current, title: `${current} / ${total}` }),
      el("span", { class: "muted" }, ` ${Math.round((100 * current) / total)}%`));
  }
  function taskRow(t) {
    const id = encodeURIComponent(t.uuid);
    const actions = state.config.can_act && !READY.has(t.state) ? [
      el("button", { class: "revoke", onclick: () => act(`/api/tasks/${id}/revoke`) }, "Revoke"),
      el("button", { class: "terminate danger", onclick: () => confirm(`Terminate ${t.uuid}?`) && act(`/api/tasks/${id}/terminate`, { signal: "SIGTERM" }) }, "Terminate"),
    ] : [];
    return el("tr", { "data-uuid": t.uuid, "data-state": t.state },
      el("td", {}, el("a", { href: "#", class: "uuid", title: t.uuid, onclick: (e) => { e.preventDefault(); showTask(t.uuid); } }, t.uuid.slice(0, 8))),
      el("td", {}, t.name || "?"), el("td", {}, el("span", { class: "state " + t.state }, t.state)),
      progressCell(t), el("td", {}, t.worker), el("td", {}, time(t.seen_at)),
      el("td", { class: "num" }, seconds(t.runtime)), el("td", { class: "act" }, ...actions));
  }
  function matches(t) {
    const f = state.filter;
    return (!f.state || t.state === f.state) && (!f.name || t.name === f.name) &&
      (!f.worker || t.worker === f.worker) && (!f.since || t.seen_at >= f.since) && (!f.until || t.seen_at < f.until);
  }
  function putTask(t) {
    const known = state.tasks.get(t.uuid);
    if (known && known.updated_at > t.updated_at) return; // an older snapshot than shown
    const body = $("#tasks tbody");
    const old = body.querySelector(`tr[data-uuid="${CSS.escape(t.uuid)}"]`);
    if (old) {
      old.replaceWith(taskRow(t));
    } else if (matches(t)) {
      body.prepend(taskRow(t));
      while (body.rows.length > MAX_ROWS) {
        state.tasks.delete(body.lastElementChild.dataset.uuid);
        body.lastElementChild.remove();
      }
    } else {
      return;
    }
    state.tasks.set(t.uuid, t);
  }
  async function loadTasks(more) {
    const params = new URLSearchParams({ limit: 50 });
    for (const [key, value] of Object.entries(state.filter)) if (value) params.set(key, value);
    if (more && state.next) params.set("after", state.next);
    const page = await api("/api/tasks?" + params);
    const rows = page.tasks.map(taskRow);
    if (!more) state.tasks.clear();
    if (more) $("#tasks tbody").append(...rows); else $("#tasks tbody").replaceChildren(...rows);
    for (const t of page.tasks) state.tasks.set(t.uuid, t);
    state.next = page.next;
    $("#more").hidden = !page.next;
  }
  async function showTask(id) {
    const t = await api("/api/tasks/" + encodeURIComponent(id));
    const fields = [["Id", t.uuid], ["Name", t.name], ["State", t.state], ["Worker", t.worker],
      ["Queue", t.queue], ["Args", t.args], ["Kwargs", t.kwargs], ["Result", t.result],
      ["Exception", t.exception], ["Runtime", seconds(t.runtime)], ["Retries", t.retries],
      ["Progress", t.progress ? `${t.progress.current} / ${t.progress.total}` : ""],
      ["Sent", time(t.sent_at)], ["Received", time(t.received_at)], ["Started", time(t.started_at)],
      ["Finished", time(t.finished_at)], ["ETA", t.eta], ["Expires", t.expires],
      ["Parent", t.parent_id], ["Root", t.root_id]];
    $("#detail-fields").replaceChildren(...fields.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
    $("#detail-traceback").textContent = t.traceback || "";
    $("#detail-failure").hidden = !t.traceback;
    $("#detail-failure h3").textContent = "Traceback";
    $("#detail-title").textContent = `Task ${t.name || ""}`;
    $("#detail").hidden = false;
    $("#detail").dataset.uuid = t.uuid;
  }

  // -- chart -----------------------------------------------------------------------------------
  function drawChart(points) {
    const svg = $("#chart");
    const ns = "http://www.w3.org/2000/svg";
    const node = (tag, attrs, text) => {
      const n = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
      if (text) n.textContent = text;
      return n;
    };
    const width = Math.max(svg.clientWidth, 300), top = 18, bottom = 146;
    svg.setAttribute("viewBox", `0 0 ${width} 160`);
    state.points = points;
    const max = Math.max(1, ...points.map((p) => (p.SUCCESS || 0) + (p.FAILURE || 0)));
    const bar = width / Math.max(points.length, 1);
    const scale = (n) => ((bottom - top) * n) / max;
    const shapes = [node("line", { x1: 0, x2: width, y1: bottom, y2: bottom, class: "axis" }),
      node("line", { x1: 0, x2: width, y1: top, y2: top, class: "axis" })];
    points.forEach((p, i) => {
      const ok = p.SUCCESS || 0, bad = p.FAILURE || 0;
      const label = `${new Date(p.t * 1000).toLocaleTimeString()}: ${ok} succeeded, ${bad} failed`;
      const x = i * bar + 1, w = Math.max(bar - 2, 1);
      const g = node("g", {}); g.append(node("title", {}, label));
      if (ok) g.append(node("rect", { x, width: w, y: bottom - scale(ok), height: scale(ok), class: "ok" }));
      if (bad) g.append(node("rect", { x, width: w, y: bottom - scale(ok) - scale(bad), height: scale(bad), class: "bad" }));
      shapes.push(g);
    });
    shapes.push(node("text", { x: 4, y: 12, class: "axis-label" }, `${max} / min`));
    svg.replaceChildren(...shapes);
    const sum = (key) => points.reduce((n, p) => n + (p[key] || 0), 0);
    $("#count-succeeded").textContent = sum("SUCCESS");
    $("#count-failed").textContent = sum("FAILURE");
  }
  async function loadChart() {
    state.chartTimer = null;
    drawChart((await api("/api/stats/timeseries?minutes=60&step=60")).points);
  }
  const chartSoon = () => { state.chartTimer = state.chartTimer || setTimeout(() => loadChart().catch(() => {}), 2000); };
  function countRunning() {
    $("#count-running").textContent = [...state.workers.values()].reduce((n, w) => n + (w.online ? w.active || 0 : 0), 0);
  }

  // -- live updates ----------------------------------------------------------------------------
  function flush() {
    if (!state.loaded) return;
    const items = state.pending.splice(0);
    for (const [kind, data] of items) {
      if (kind === "task") {
        putTask(data);
        if (READY.has(data.state)) chartSoon();
        if (!$("#detail").hidden && $("#detail").dataset.uuid === data.uuid) showTask(data.uuid).catch(() => {});
      }
      else if (kind === "worker") state.workers.set(data.hostname, data);
      else if (kind === "queues") renderQueues(data);
    }
    if (items.some(([kind]) => kind === "worker")) { renderWorkers(); countRunning(); }
  }
  function follow() {
    const source = new EventSource(ROOT + "/api/stream" + (token ? "?token=" + encodeURIComponent(token) : ""));
    const live = $("#live");
    source.onopen = () => { live.textContent = "live"; live.className = "live on"; };
    source.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
    for (const kind of ["task", "worker", "queues"]) {
      source.addEventListener(kind, (event) => {
        if (!state.pending.length && state.loaded) setTimeout(flush, 100);
        state.pending.push([kind, JSON.parse(event.data)]);
      });
    }
    source.addEventListener("reload", () => {
      state.loaded = false;
      loadAll().catch((e) => notify(e.message, true));
    });
  }

  // -- forms and start -------------------------------------------------------------------------
  $("#filters").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const stamp = (v) => (v ? String(new Date(v).getTime() / 1000) : "");
    state.filter = { state: form.get("state"), name: form.get("name").trim(), worker: form.get("worker").trim(),
      since: stamp(form.get("since")), until: stamp(form.get("until")) };
    loadTasks(false).catch((e) => notify(e.message, true));
  });
  $("#filters").addEventListener("reset", () => { state.filter = {}; setTimeout(() => loadTasks(false), 0); });
  $("#dead-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    loadDeadLetters().catch((e) => notify(e.message, true));
  });
  $("#more").addEventListener("click", () => loadTasks(true).catch((e) => notify(e.message, true)));
  $("#rate-limit").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    act(`/api/tasks/${encodeURIComponent(form.get("task").trim())}/rate_limit`, { rate_limit: form.get("rate").trim() });
  });
  window.addEventListener("resize", () => state.points && drawChart(state.points));
  $("#detail-close").addEventListener("click", () => { $("#detail").hidden = true; });

  async function loadAll() {
    state.config = await api("/api/config");
    document.body.classList.toggle("can-act", state.config.can_act);
    $("#broker").textContent = state.config.broker;
    $("#task-names").replaceChildren(...state.config.task_names.map((n) => el("option", { value: n })));
    const [workers, queues] = await Promise.all([api("/api/workers"), api("/api/queues")]);
    state.workers = new Map(workers.workers.map((w) => [w.hostname, w]));
    renderWorkers(); countRunning(); renderQueues(queues.queues);
    await Promise.all([loadTasks(false), loadChart(), loadDeadLetters()]);
    state.loaded = true;
    flush();
  }
  follow(); // first, so nothing that changes while the tables load is missed
  loadAll().catch((error) => notify(error.message, true));
})();
