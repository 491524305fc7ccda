// inferd's page: the classify view sends an image to
// POST /v2/models/M/classify and shows the labels; the status view polls
// GET /v2/ui/status and draws what it says. Every request carries the API
// key typed once (localStorage "inferd.key") as Authorization: Bearer; a
// 401 or 403 opens the key field with the server's reason.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const keyName = "inferd.key";
  const refreshMs = 2000; // the status view's poll
  const historyLen = 90; // points of the latency sparkline: 3 minutes
  const sparkMin = 20; // points the sparkline spans at least, filling from the right
  const svgNS = "http://www.w3.org/2000/svg";

  let key = localStorage.getItem(keyName) || "";
  let retry = null; // what to do again once a key is typed
  let lastFile = null;
  let previewURL = "";
  let timer = 0;
  let modelNames = "";
  const cards = new Map(); // model name -> its card's parts
  const history = new Map(); // model name -> [{p50, p99}]

  class KeyNeeded extends Error {}

  // api fetches path with the key; a 401 or 403 throws KeyNeeded with the
  // server's reason.
  async function api(path, init = {}) {
    const headers = new Headers(init.headers);
    if (key) headers.set("Authorization", "Bearer " + key);
    const resp = await fetch(path, { ...init, headers, cache: "no-store" });
    if (resp.status === 401 || resp.status === 403) {
      throw new KeyNeeded(await errorText(resp));
    }
    return resp;
  }

  // errorText is the "error" of inferd's (and the gateway's) JSON errors,
  // else the body, else the status line.
  async function errorText(resp) {
    const text = await resp.text();
    try {
      const j = JSON.parse(text);
      if (j && typeof j.error === "string") return j.error;
    } catch (_) { /* not JSON */ }
    return text.trim() || `${resp.status} ${resp.statusText}`;
  }

  function askKey(reason, again) {
    retry = again;
    $("key-reason").textContent = reason;
    $("key-form").hidden = false;
    $("key-input").focus();
  }

  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    key = $("key-input").value.trim();
    $("key-input").value = "";
    if (key) localStorage.setItem(keyName, key);
    else localStorage.removeItem(keyName);
    $("key-form").hidden = true;
    const again = retry || refreshStatus;
    retry = null;
    again();
  });
  $("key-forget").addEventListener("click", () => {
    key = "";
    localStorage.removeItem(keyName);
    $("key-reason").textContent = "The key is forgotten. Type another, or none for a server without keys.";
  });
  $("key-button").addEventListener("click", () => {
    if (!$("key-form").hidden) {
      $("key-form").hidden = true;
      return;
    }
    askKey(key ? "A key is kept in this browser (localStorage) and sent with every request. Type a new one to replace it."
      : "No key is set. A server or gateway with API keys needs one: it is kept in this browser and sent with every request.", null);
  });

  // ---- classify view ----

  function showError(msg) {
    $("error").textContent = msg;
    $("error").hidden = !msg;
  }

  function showPreview(file) {
    if (previewURL) URL.revokeObjectURL(previewURL);
    previewURL = "";
    const img = $("preview");
    if (file.type.startsWith("image/")) {
      previewURL = URL.createObjectURL(file);
      img.src = previewURL;
      img.hidden = false;
      $("drop-hint").textContent = file.name || "pasted image";
    } else {
      img.hidden = true;
      img.removeAttribute("src");
      $("drop-hint").textContent = (file.name || "pasted file") + " (not an image?)";
    }
  }
  $("preview").addEventListener("error", () => { $("preview").hidden = true; });

  async function classify(file) {
    lastFile = file;
    showPreview(file);
    showError("");
    $("predictions").replaceChildren();
    $("timing").textContent = "";
    const model = $("model").value;
    if (!model) {
      showError("No model that takes images is loaded: the server's models are listed under Status.");
      return;
    }
    const k = Math.min(1000, Math.max(1, parseInt($("topk").value, 10) || 5));
    const t0 = performance.now();
    let resp;
    try {
      resp = await api(`/v2/models/${encodeURIComponent(model)}/classify?top_k=${k}`, {
        method: "POST",
        body: file,
        headers: { "Content-Type": file.type || "application/octet-stream" },
      });
      if (!resp.ok) {
        showError(await errorText(resp));
        return;
      }
    } catch (e) {
      if (e instanceof KeyNeeded) askKey(e.message, () => classify(file));
      else showError("The request failed: " + e.message);
      return;
    }
    const body = await resp.json();
    const roundTrip = performance.now() - t0;
    const list = $("predictions");
    for (const p of body.predictions) {
      const li = document.createElement("li");
      li.dataset.index = p.index;
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = p.label;
      label.title = `${p.label} (class ${p.index})`;
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.style.width = (Math.max(0, Math.min(1, p.probability)) * 100).toFixed(1) + "%";
      bar.append(fill);
      const prob = document.createElement("span");
      prob.className = "prob";
      prob.textContent = percent(p.probability);
      li.append(label, bar, prob);
      list.append(li);
    }
    const parts = [];
    const timing = serverTiming(resp.headers.get("Server-Timing"));
    if ("queue" in timing || "compute" in timing) {
      parts.push(`server: queue ${ms(timing.queue)} + compute ${ms(timing.compute)}`);
    }
    parts.push(`round trip ${ms(roundTrip)}`);
    const replica = resp.headers.get("X-Inferd-Replica");
    if (replica) parts.push(`answered by ${replica}`);
    $("timing").textContent = parts.join(" · ");
  }

  // serverTiming reads "queue;dur=0.1, compute;dur=2.3" into {queue, compute}.
  function serverTiming(h) {
    const out = {};
    for (const m of (h || "").matchAll(/([\w-]+)\s*;\s*dur=([\d.]+)/g)) out[m[1]] = parseFloat(m[2]);
    return out;
  }

  function percent(p) {
    const v = p * 100;
    return v >= 10 ? v.toFixed(1) + "%" : v.toFixed(2) + "%";
  }

  function ms(v) {
    return v == null || Number.isNaN(v) ? "–" : num(v) + " ms";
  }

  function num(v) {
    if (v == null || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  }

  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer.files[0];
    if (f) classify(f);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); }
  });
  $("file").addEventListener("change", () => {
    const f = $("file").files[0];
    $("file").value = ""; // the same file again is a change too
    if (f) classify(f);
  });
  document.addEventListener("paste", (e) => {
    if (e.target instanceof HTMLInputElement) return;
    for (const item of e.clipboardData.items) {
      if (item.kind === "file") {
        e.preventDefault();
        classify(item.getAsFile());
        return;
      }
    }
  });
  for (const id of ["model", "topk"]) {
    $(id).addEventListener("change", () => { if (lastFile) classify(lastFile); });
  }

  // ---- status view ----

  async function refreshStatus() {
    clearTimeout(timer);
    let st;
    try {
      const resp = await api("/v2/ui/status");
      if (!resp.ok) throw new Error(await errorText(resp));
      st = await resp.json();
    } catch (e) {
      if (e instanceof KeyNeeded) {
        askKey(e.message, refreshStatus);
        return; // polling resumes once a key is typed
      }
      $("status-error").textContent = "Status unavailable: " + e.message;
      $("status-error").hidden = false;
      schedule();
      return;
    }
    $("status-error").hidden = true;
    showStatus(st);
    schedule();
  }

  function schedule() {
    clearTimeout(timer);
    if (!$("view-status").hidden && !document.hidden) timer = setTimeout(refreshStatus, refreshMs);
  }

  function showStatus(st) {
    $("server").textContent = `replica ${st.replica} · inferd ${st.version}` + (st.ready ? "" : " · not ready");
    const when = new Date(st.time * 1000).toLocaleTimeString();
    $("status-meta").textContent = st.window_seconds > 0
      ? `Over the last ${st.window_seconds.toFixed(0)} s, refreshed every ${refreshMs / 1000} s (${when}).`
      : `Since the models loaded; rates appear on the next refresh (${when}).`;
    setModels(st.models);
    const seen = new Set();
    for (const m of st.models) {
      seen.add(m.name);
      let h = history.get(m.name);
      if (!h) history.set(m.name, (h = []));
      if (st.window_seconds > 0) {
        h.push({ p50: m.p50_ms, p99: m.p99_ms });
        if (h.length > historyLen) h.shift();
      }
      updateCard(m, h);
    }
    for (const [name, c] of cards) {
      if (!seen.has(name)) {
        c.el.remove();
        cards.delete(name);
        history.delete(name);
      }
    }
  }

  // setModels fills the model menu with the models that take images.
  function setModels(models) {
    const names = models.filter((m) => m.images).map((m) => m.name);
    if (names.join("\n") === modelNames) return;
    modelNames = names.join("\n");
    const sel = $("model");
    const chosen = sel.value;
    sel.replaceChildren(...names.map((n) => new Option(n, n)));
    if (names.includes(chosen)) sel.value = chosen;
  }

  const figures = [
    ["rate", "requests/s"], ["p50", "p50 latency, ms"], ["p99", "p99 latency, ms"],
    ["batch", "rows per batch"], ["queue", "queued now"], ["requests", "answered"],
  ];

  function updateCard(m, h) {
    let c = cards.get(m.name);
    if (!c) {
      c = { el: document.createElement("article"), fields: {} };
      c.el.className = "card";
      c.el.dataset.model = m.name;
      const title = document.createElement("h2");
      title.textContent = m.name;
      c.info = document.createElement("small");
      c.info.className = "muted";
      const grid = document.createElement("div");
      grid.className = "figures";
      for (const [field, what] of figures) {
        const d = document.createElement("div");
        const b = document.createElement("b");
        b.dataset.field = field;
        const s = document.createElement("small");
        s.textContent = what;
        d.append(b, s);
        grid.append(d);
        c.fields[field] = b;
      }
      c.split = document.createElement("p");
      c.split.className = "muted";
      c.split.dataset.field = "split";
      c.spark = chart("latency, ms, one point a refresh: ", [["key50", "p50"], ["key99", "p99"]]);
      c.hist = chart("batch sizes: rows per batch, batches run", []);
      c.el.append(title, c.info, grid, c.split, c.spark.box, c.hist.box);
      $("cards").append(c.el);
      cards.set(m.name, c);
    }
    const inst = m.instances === 1 ? "1 session" : `${m.instances} sessions`;
    c.info.textContent = `${m.device} · ${inst} · max batch ${m.max_batch}` + (m.ready ? "" : " · not ready");
    c.fields.rate.textContent = num(m.rate);
    c.fields.p50.textContent = num(m.p50_ms);
    c.fields.p99.textContent = num(m.p99_ms);
    c.fields.batch.textContent = num(m.mean_batch);
    c.fields.queue.textContent = String(m.queue_depth);
    c.fields.requests.textContent = String(m.requests);
    c.split.textContent = `mean queue wait ${ms(m.queue_ms)} per request · compute ${ms(m.compute_ms)} per batch` +
      (m.error_rate ? ` · ${num(m.error_rate)} errors/s` : "");
    sparkline(c.spark.svg, h);
    histogram(c.hist.svg, m.batch_sizes || []);
  }

  function chart(caption, keys) {
    const box = document.createElement("div");
    box.className = "chart";
    const cap = document.createElement("small");
    cap.append(caption);
    for (const [cls, text] of keys) {
      const k = document.createElement("span");
      k.className = cls;
      k.textContent = " ▬ " + text;
      cap.append(k);
    }
    const svg = el("svg", { viewBox: "0 0 300 64", width: "100%", height: "64", role: "img" });
    box.append(cap, svg);
    return { box, svg };
  }

  function el(tag, attrs, parent) {
    const e = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (parent) parent.append(e);
    return e;
  }

  // sparkline draws p50 and p99 over the last polls; a poll with no
  // request leaves a gap.
  function sparkline(svg, h) {
    svg.replaceChildren();
    const W = 300, H = 64, top = 12, bottom = 4;
    const max = Math.max(0, ...h.map((p) => p.p99 ?? 0), ...h.map((p) => p.p50 ?? 0));
    if (!max) {
      el("text", { x: 0, y: 36 }, svg).textContent = "no requests yet";
      return;
    }
    el("text", { x: 0, y: 9 }, svg).textContent = `max ${num(max)} ms`;
    const step = W / (Math.max(h.length, sparkMin) - 1);
    const x0 = W - (h.length - 1) * step;
    for (const [field, cls] of [["p99", "p99"], ["p50", "p50"]]) {
      let pts = [];
      const flush = () => {
        if (pts.length > 0) el("polyline", { points: pts.join(" "), fill: "none", class: cls, "stroke-width": 1.5 }, svg);
        pts = [];
      };
      h.forEach((p, i) => {
        const v = p[field];
        if (v == null) { flush(); return; }
        const y = H - bottom - (v / max) * (H - top - bottom);
        pts.push(`${(x0 + i * step).toFixed(1)},${y.toFixed(1)}`);
        if (h.length === 1) pts.push(`${W},${y.toFixed(1)}`);
      });
      flush();
    }
  }

  // histogram draws batches run per batch-size bucket.
  function histogram(svg, buckets) {
    svg.replaceChildren();
    const W = 300, H = 64, top = 11, bottom = 12;
    const max = Math.max(0, ...buckets.map((b) => b.count));
    if (!max) {
      el("text", { x: 0, y: 36 }, svg).textContent = "no batches in this window";
      return;
    }
    const w = W / buckets.length;
    buckets.forEach((b, i) => {
      const bh = (b.count / max) * (H - top - bottom);
      const x = i * w + 2;
      const r = el("rect", { x, y: H - bottom - bh, width: w - 4, height: Math.max(bh, b.count ? 1 : 0), class: "hbar" }, svg);
      el("title", {}, r).textContent = `${b.count} batches of ${b.size} rows`;
      el("text", { x: x + (w - 4) / 2, y: H - 1, "text-anchor": "middle" }, svg).textContent = b.size;
      if (b.count) el("text", { x: x + (w - 4) / 2, y: H - bottom - bh - 2, "text-anchor": "middle" }, svg).textContent = b.count;
    });
  }

  // ---- views ----

  function showView() {
    const view = location.hash === "#status" ? "status" : "classify";
    $("view-classify").hidden = view !== "classify";
    $("view-status").hidden = view !== "status";
    $("tab-classify").classList.toggle("active", view === "classify");
    $("tab-status").classList.toggle("active", view === "status");
    refreshStatus();
  }
  window.addEventListener("hashchange", showView);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) schedule(); });
  showView();
})();
