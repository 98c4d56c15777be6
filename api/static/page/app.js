/* The autotag review page: search, see and review predictions.
 *
 * Plain JavaScript, no framework, no build step. Every value from the index or the query is
 * put into the page as text (textContent, createTextNode, setAttribute on harmless attributes):
 * nothing is ever parsed as HTML, and the page's Content-Security-Policy enforces it with
 * Trusted Types. The review key is kept in sessionStorage only (this tab, until it closes).
 */
"use strict";
(() => {
  const KEY_STORAGE = "autotag.reviewKey";
  const PAGE_SIZE = 50;
  const DEFAULT_QUERY = 'autotag_status = "pending"';
  const SVG_NS = "http://www.w3.org/2000/svg";
  const KINDS = ["image", "object"];

  // --- building the page, as text only -----------------------------------------------------
  const $ = (id) => document.getElementById(id);

  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
  }

  function appendAll(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    return appendAll(node, children);
  }

  function svgEl(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    return appendAll(node, children);
  }

  function show(node, visible) {
    node.hidden = !visible;
  }

  function notice(text) {
    const box = $("notice");
    box.textContent = text || "";
    show(box, Boolean(text));
  }

  // --- talking to the API ------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || "";
      this.details = error.details || {};
    }
  }

  function reviewKey() {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  }

  function send(method, path, body) {
    const headers = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    const key = reviewKey();
    if (key) headers["X-API-Key"] = key;
    return fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  }

  async function failure(response) {
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    return new ApiError(response.status, data);
  }

  async function api(method, path, body) {
    const response = await send(method, path, body);
    if (!response.ok) throw await failure(response);
    try {
      return await response.json();
    } catch (_) {
      return null;
    }
  }

  // A picture the API draws: fetched with the key (an <img> cannot send one), as a Blob.
  async function apiBlob(method, path, body) {
    const response = await send(method, path, body);
    if (!response.ok) throw await failure(response);
    return response.blob();
  }

  function explain(error) {
    if (!(error instanceof ApiError)) return `Cannot reach the API: ${error.message}`;
    if (error.status === 401) {
      return "This needs an API key: enter one above (reads need one when the server's " +
        "AUTOTAG_OPEN_READS is false; reviews always do).";
    }
    if (error.status === 403) return "This key may read but not review: enter a review key above.";
    if (error.status === 503) return "Elasticsearch is unavailable; try again in a moment.";
    return error.message;
  }

  // --- query text ----------------------------------------------------------------------------
  function quoted(value) {
    return `"${String(value).replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
  }

  function narrowed(condition) {
    const current = $("q").value.trim();
    return current ? `(${current}) AND ${condition}` : condition;
  }

  // --- state -----------------------------------------------------------------------------------
  const state = {
    query: "",
    sort: "score",
    order: "desc",
    cursors: [null],
    page: 0,
    hits: [],
    nextCursor: null,
    item: null,
    version: null,
    itemId: null,
    staged: new Map(),
    selected: null,
    showRejected: false,
    labels: null,
    conflict: null,
    blobs: [],
    leaveArmedUntil: 0,
    translateSeq: 0,
    searchSeq: 0,
    resultsStale: false,
  };

  // --- the query box: caret and hint as you type --------------------------------------------
  function showQueryError(rendered) {
    const box = $("query-error");
    box.textContent = rendered || "";
    show(box, Boolean(rendered));
  }

  let translateTimer = 0;
  function scheduleTranslate() {
    clearTimeout(translateTimer);
    translateTimer = setTimeout(checkQuery, 120);
  }

  async function checkQuery() {
    const text = $("q").value;
    const seq = ++state.translateSeq;
    if (!text.trim()) {
      showQueryError("");
      $("canonical").textContent = "";
      return;
    }
    try {
      const answer = await api("POST", "v1/translate", { query: text });
      if (seq !== state.translateSeq) return;
      showQueryError("");
      $("canonical").textContent = answer.query;
    } catch (error) {
      if (seq !== state.translateSeq) return;
      if (error.code === "invalid_query") {
        showQueryError(error.details.rendered);
        $("canonical").textContent = "";
      } else {
        notice(explain(error));
      }
    }
  }

  function renderHints(hints) {
    const list = $("hints");
    list.replaceChildren();
    for (const hint of hints || []) {
      const closest = hint.closest.length
        ? ["; closest: ", hint.closest.map((label, i) => [i ? ", " : "", el("code", {}, label)])]
        : "";
      list.append(
        el("li", {}, `No ${hint.kind} label `, el("code", {}, hint.typed + (hint.prefix ? "*" : "")),
          " in the index", closest)
      );
    }
    show(list, Boolean(hints && hints.length));
  }

  // --- search ----------------------------------------------------------------------------------
  // A search records where it is (no routing); moving between views goes through the hash.
  function recordHash(hash) {
    if (location.hash !== hash) history.pushState(null, "", hash);
    lastRouted = hash;
  }

  function go(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  function searchHash() {
    const params = new URLSearchParams({ q: state.query, sort: `${state.sort}:${state.order}` });
    return `#${params}`;
  }

  function boxStillHolds(text) {
    return $("q").value.trim() === text;
  }

  async function runSearch(options = {}) {
    const text = $("q").value.trim();
    if (!text) return;
    if (options.newQuery !== false) {
      state.cursors = [null];
      state.page = 0;
    }
    state.query = text;
    if (options.hash !== false) recordHash(searchHash());
    const seq = ++state.searchSeq;
    const started = performance.now();
    const body = { query: text, size: PAGE_SIZE, sort: state.sort, order: state.order };
    const cursor = state.cursors[state.page];
    if (cursor) body.cursor = cursor;
    let answer;
    try {
      answer = await api("POST", "v1/search", body);
    } catch (error) {
      if (seq !== state.searchSeq) return;
      if (error.code !== "invalid_query") notice(explain(error));
      else if (boxStillHolds(text)) showQueryError(error.details.rendered);
      return;
    }
    if (seq !== state.searchSeq) return;
    notice("");
    // The error box and the canonical form speak of what the box holds now: a slow answer
    // for a query since edited must not hide the new text's error or show the old form.
    if (boxStillHolds(text)) {
      showQueryError("");
      $("canonical").textContent = answer.query;
    }
    state.hits = answer.hits;
    state.nextCursor = answer.next_cursor;
    state.resultsStale = false;
    const more = answer.total_relation === "gte" ? "+" : "";
    $("total").textContent = `${answer.total}${more} item${answer.total === 1 ? "" : "s"}`;
    renderHints(answer.hints);
    renderGrid(started);
    renderPager();
    loadFacets(text);
  }

  function renderPager() {
    $("prev-page").disabled = state.page === 0;
    $("next-page").disabled = !state.nextCursor;
    $("page-no").textContent = `page ${state.page + 1}`;
  }

  function revokeBlobs() {
    for (const url of state.blobs) URL.revokeObjectURL(url);
    state.blobs = [];
  }

  function predictionsOf(item, kind) {
    return item[`${kind}_predictions`] || [];
  }

  function scoreText(score) {
    return typeof score === "number" ? score.toFixed(2) : "";
  }

  function renderGrid(started) {
    const grid = $("grid");
    revokeBlobs();
    grid.replaceChildren();
    document.body.removeAttribute("data-grid-drawn-ms");
    document.body.dataset.gridQuery = state.query;
    if (!state.hits.length) {
      grid.append(el("p", { class: "muted" }, "No items match."));
      document.body.dataset.gridDrawnMs = (performance.now() - started).toFixed(1);
      return;
    }
    let waiting = state.hits.length;
    const settled = () => {
      waiting -= 1;
      if (waiting === 0) {
        document.body.dataset.gridDrawnMs = (performance.now() - started).toFixed(1);
      }
    };
    state.hits.forEach((hit, index) => grid.append(card(hit, index, settled)));
  }

  function card(hit, index, settled) {
    const item = hit.item;
    const matched = hit.matched_predictions
      .map((m) => ({ kind: m.kind, prediction: predictionsOf(item, m.kind)[m.offset] }))
      .filter((m) => m.prediction);
    const boxes = matched.filter((m) => m.kind === "object").map((m) => ({
      prediction: m.prediction,
      status: m.prediction.status,
      label: m.prediction.label,
      bbox: m.prediction.bbox,
    }));
    const frame = imageFrame(item, `v1/items/${encodeURIComponent(item.item_id)}/thumbnail?size=256`,
      settled);
    drawBoxes(frame.overlay, boxes, { labels: false });
    const chips = el("div", { class: "chips" },
      matched.filter((m) => m.kind === "image").map((m) => chip(m.prediction)));
    return el("a", {
      class: "card",
      href: `#item=${encodeURIComponent(item.item_id)}`,
      "data-item-id": item.item_id,
      "data-index": index,
    }, frame.node, el("div", { class: "id", title: item.item_id }, item.item_id), chips);
  }

  function chip(prediction, status) {
    const shown = status || prediction.status;
    const prefix = shown === "pending" ? "suggested " : shown === "modified" ? "✎ " : "";
    return el("span", { class: `chip ${shown}`, title: `${shown}, ${prediction.training_set || ""}` },
      `${prefix}${prediction.label} ${scoreText(prediction.score)}`);
  }

  // An image with an SVG overlay in the image's own pixel coordinates.
  function imageFrame(item, url, settled) {
    const width = item.width || 0;
    const height = item.height || 0;
    const node = el("div", { class: "frame" });
    node.style.aspectRatio = width && height ? `${width} / ${height}` : "3 / 2";
    node.style.setProperty("--aspect", width && height ? String(width / height) : "1.5");
    const img = el("img", { alt: item.item_id, decoding: "async", draggable: "false" });
    const overlay = svgEl("svg", {
      viewBox: `0 0 ${width || 1} ${height || 1}`,
      preserveAspectRatio: "xMidYMid meet",
      "aria-hidden": "true",
    });
    if (!(width && height)) overlay.dataset.unsized = "1";
    node.append(img, overlay);
    loadImage(img, url, (ok, why) => {
      if (ok && overlay.dataset.unsized && url.includes("/image")) {
        overlay.setAttribute("viewBox", `0 0 ${img.naturalWidth} ${img.naturalHeight}`);
        node.style.aspectRatio = `${img.naturalWidth} / ${img.naturalHeight}`;
        node.style.setProperty("--aspect", String(img.naturalWidth / img.naturalHeight));
        delete overlay.dataset.unsized;
        if (overlay.redraw) overlay.redraw();
      }
      if (!ok) {
        img.remove();
        node.append(el("div", { class: "missing" }, why || "no image"));
      }
      if (settled) settled();
    });
    return { node, overlay, img };
  }

  function loadImage(img, url, done) {
    const key = reviewKey();
    const whyNot = async () => {
      try {
        const response = await fetch(url, { headers: key ? { "X-API-Key": key } : {} });
        const body = await response.json();
        return body.error ? body.error.message : "no image";
      } catch (_) {
        return "no image";
      }
    };
    img.addEventListener("load", () => done(true), { once: true });
    img.addEventListener("error", async () => done(false, await whyNot()), { once: true });
    if (!key) {
      img.src = url;
      return;
    }
    // <img> cannot send a header: fetch with the key, show the bytes from a blob: URL.
    fetch(url, { headers: { "X-API-Key": key } })
      .then((response) => (response.ok ? response.blob() : Promise.reject(response)))
      .then((blob) => {
        const local = URL.createObjectURL(blob);
        state.blobs.push(local);
        img.src = local;
      })
      .catch(async () => done(false, await whyNot()));
  }

  // --- drawing predictions -------------------------------------------------------------------
  function tagText(box) {
    const label = box.label;
    if (box.status === "pending") return `suggested ${label} ${scoreText(box.prediction.score)}`;
    if (box.status === "modified") return `✎ ${label}`;
    if (box.status === "rejected") return `✕ ${label}`;
    return label;
  }

  function overlayUnit(overlay) {
    const [, , width, height] = overlay.getAttribute("viewBox").split(" ").map(Number);
    return Math.max(width, height) / 40;
  }

  function drawBoxes(overlay, boxes, options) {
    overlay.replaceChildren();
    for (const box of boxes) {
      if (!box.bbox) continue;
      const { x1, y1, x2, y2 } = box.bbox;
      const classes = ["box", box.status];
      if (box.staged) classes.push("staged");
      if (box.selected) classes.push("selected");
      const group = svgEl("g", { "data-key": box.key || null });
      group.append(svgEl("rect", {
        class: classes.join(" "), x: x1, y: y1, width: Math.max(x2 - x1, 0.5),
        height: Math.max(y2 - y1, 0.5), "data-status": box.status,
      }));
      if (options.labels) {
        // Sizes in the image's pixels: about 1/40 of its long side, whatever it is.
        const unit = overlayUnit(overlay);
        const tagClass = box.staged ? "tag staged" : `tag ${box.status}`;
        group.append(svgEl("text", { class: tagClass, x: x1 + unit / 4, y: Math.max(y1 - unit / 3, unit),
          "font-size": unit, "stroke-width": unit / 5 }, tagText(box)));
      }
      if (options.onSelect) group.addEventListener("pointerdown", () => options.onSelect(box.key));
      overlay.append(group);
    }
  }

  // --- facets ----------------------------------------------------------------------------------
  let facetsSeq = 0;
  async function loadFacets(text) {
    const seq = ++facetsSeq;
    let answer;
    try {
      answer = await api("POST", "v1/facets", { query: text, labels: 30 });
    } catch (error) {
      if (seq === facetsSeq && error.code !== "invalid_query") notice(explain(error));
      return;
    }
    if (seq !== facetsSeq) return;
    renderFacets(answer);
  }

  function facetButton(text, condition, title) {
    return el("button", {
      type: "button",
      title: title || `narrow the query: AND ${condition}`,
      "data-condition": condition,
      onclick: () => {
        $("q").value = narrowed(condition);
        checkQuery();
        runSearch();
      },
    }, text);
  }

  function renderFacets(facets) {
    const box = $("facets");
    box.replaceChildren();
    let pending = 0;
    box.append(el("h3", {}, "Review status (items)"), el("ul", {},
      facets.autotag_status.map((s) => el("li", {},
        facetButton(s.status, `autotag_status = ${quoted(s.status)}`), ` ${s.items}`))));
    for (const kind of facets.kinds) {
      const prefix = `${kind.kind}_prefix`;
      for (const status of kind.statuses) if (status.value === "pending") pending += status.predictions;
      box.append(el("h3", {}, `${kind.kind} labels`), el("ul", {}, kind.labels.map((label) => {
        const term = `${prefix}:${quoted(label.label)}`;
        const bands = Object.entries(label.scores).filter(([, n]) => n > 0).map(([band, n]) =>
          facetButton(`${band} ${n}`, `(${term} AND score = ${band})`,
            `${label.label} predictions scoring ${band}`));
        return el("li", { "data-label": label.label },
          facetButton(label.label, term), ` ${label.items}`, el("span", { class: "bands" }, bands));
      })));
      if (kind.training_sets.length) {
        box.append(el("h3", {}, `${kind.kind} training sets`), el("ul", {},
          kind.training_sets.map((t) => el("li", {},
            facetButton(t.value, `training_set = ${quoted(t.value)}`), ` ${t.predictions}`))));
      }
      if (kind.statuses.length) {
        box.append(el("h3", {}, `${kind.kind} review states`), el("ul", {},
          kind.statuses.map((s) => el("li", {},
            facetButton(s.value, `status = ${s.value}`), ` ${s.predictions}`))));
      }
      box.append(el("h3", {}, `${kind.kind} scores`), histogram(kind.histogram));
    }
    $("pending-count").textContent = String(pending);
  }

  function histogram(bins) {
    const most = Math.max(1, ...bins.map((b) => b.predictions));
    const bars = el("div", { class: "histogram" });
    for (const bin of bins) {
      const condition = bin.high >= 1 ? `score >= ${bin.low}`
        : `(score >= ${bin.low} AND score < ${bin.high})`;
      const bar = facetButton("", condition, `${bin.low} to ${bin.high}: ${bin.predictions}`);
      bar.style.height = `${(100 * bin.predictions) / most}%`;
      bars.append(bar);
    }
    return el("div", {}, bars, el("div", { class: "axis" }, el("span", {}, "-1"),
      el("span", {}, "0"), el("span", {}, "1")));
  }

  // --- the item view -----------------------------------------------------------------------
  function keyOf(kind, offset) {
    return `${kind}:${offset}`;
  }

  function predictionAt(key) {
    const [kind, offset] = key.split(":");
    return { kind, offset: Number(offset), prediction: predictionsOf(state.item, kind)[Number(offset)] };
  }

  // The prediction as it will be once the staged decision is saved.
  function effective(key) {
    const { kind, prediction } = predictionAt(key);
    const decision = state.staged.get(key);
    const base = { key, kind, prediction, status: prediction.status, label: prediction.label,
      bbox: prediction.bbox, staged: false, decision };
    if (!decision) return base;
    if (decision.action === "accept") {
      base.status = prediction.original_label ? "modified" : "accepted";
    } else if (decision.action === "reject") {
      base.status = "rejected";
    } else {
      base.status = "modified";
      base.label = decision.label || prediction.label;
      base.bbox = decision.bbox || prediction.bbox;
    }
    base.staged = true;
    return base;
  }

  function visibleKeys() {
    const keys = [];
    if (!state.item) return keys;
    for (const kind of KINDS) {
      predictionsOf(state.item, kind).forEach((prediction, offset) => {
        const key = keyOf(kind, offset);
        if (prediction.status === "rejected" && !state.showRejected && !state.staged.has(key)) return;
        keys.push(key);
      });
    }
    return keys;
  }

  async function openItem(itemId) {
    if (state.itemId !== itemId) state.staged = new Map();
    state.itemId = itemId;
    state.item = null;
    state.conflict = null;
    delete document.body.dataset.itemLoaded;
    show($("search-view"), false);
    show($("item-view"), true);
    $("item-title").textContent = itemId;
    $("save-state").textContent = "";
    let answer;
    try {
      answer = await api("GET", `v1/items/${encodeURIComponent(itemId)}`);
    } catch (error) {
      notice(explain(error));
      return;
    }
    if (state.itemId !== itemId) return;
    notice("");
    state.item = answer.item;
    state.version = answer.version;
    const keys = visibleKeys();
    const pending = keys.find((key) => effective(key).status === "pending");
    state.selected = pending || keys[0] || null;
    renderItem({ newImage: true });
    document.body.dataset.itemLoaded = itemId;
    if (!state.labels) loadLabels();
  }

  async function loadLabels() {
    try {
      state.labels = await api("GET", "v1/labels");
    } catch (_) {
      state.labels = { image: [], object: [] };
    }
  }

  let stageFrame = null;

  function renderItem(options = {}) {
    const item = state.item;
    if (!item) return;
    $("item-title").textContent = item.item_id;
    $("show-rejected").checked = state.showRejected;
    const index = state.hits.findIndex((hit) => hit.item.item_id === item.item_id);
    $("prev-item").disabled = index <= 0 && state.page === 0;
    $("next-item").disabled = index < 0 || (index === state.hits.length - 1 && !state.nextCursor);
    if (options.newImage || !stageFrame) {
      const url = `v1/items/${encodeURIComponent(item.item_id)}/image`;
      stageFrame = imageFrame(item, url, () => {
        document.body.dataset.itemImage = stageFrame && stageFrame.img.isConnected ? "loaded" : "missing";
      });
      stageFrame.overlay.redraw = drawStage;
      document.body.removeAttribute("data-item-image");
      $("stage").replaceChildren(el("div", { class: "chips", id: "image-tags" }), stageFrame.node);
    }
    drawStage();
    renderPredictionList();
    renderMetadata();
    renderHistory();
    renderConflict();
    const count = state.staged.size;
    $("save").disabled = count === 0;
    $("save").textContent = count ? `Save your review (s): ${count} decision${count === 1 ? "" : "s"}`
      : "Save your review (s)";
  }

  function drawStage() {
    const keys = visibleKeys();
    const boxes = keys.map(effective).filter((box) => box.kind === "object").map((box) => ({
      ...box, selected: box.key === state.selected,
    }));
    const overlay = stageFrame.overlay;
    drawBoxes(overlay, boxes, { labels: true, onSelect: select });
    const chosen = boxes.find((box) => box.selected && box.bbox);
    if (chosen) drawHandles(overlay, chosen);
    $("image-tags").replaceChildren(...keys.map(effective).filter((box) => box.kind === "image")
      .map((box) => {
        const tag = chip(box.prediction, box.status);
        if (box.staged) tag.classList.add("staged-chip");
        if (box.key === state.selected) tag.classList.add("selected");
        tag.addEventListener("click", () => select(box.key));
        return tag;
      }));
  }

  function select(key) {
    state.selected = key;
    drawStage();
    renderPredictionList();
  }

  // --- dragging and resizing a box ---------------------------------------------------------
  function toImage(overlay, event) {
    const point = overlay.createSVGPoint();
    point.x = event.clientX;
    point.y = event.clientY;
    return point.matrixTransform(overlay.getScreenCTM().inverse());
  }

  function drawHandles(overlay, box) {
    const { x1, y1, x2, y2 } = box.bbox;
    const [, , width, height] = overlay.getAttribute("viewBox").split(" ").map(Number);
    const size = Math.max(width, height) / 50;
    const grips = [svgEl("rect", { class: "hit", x: x1, y: y1, width: x2 - x1, height: y2 - y1,
      "data-drag": "move" })];
    const corners = { nw: [x1, y1], ne: [x2, y1], sw: [x1, y2], se: [x2, y2] };
    for (const [name, [cx, cy]] of Object.entries(corners)) {
      grips.push(svgEl("rect", { class: `handle ${name}`, x: cx - size / 2, y: cy - size / 2,
        width: size, height: size, "data-drag": name }));
    }
    const group = [...overlay.querySelectorAll("g")].find((g) => g.dataset.key === box.key);
    const shape = group.querySelector("rect");
    const tag = group.querySelector("text");
    const start = (event) => {
      if (event.button !== 0) return;
      const mode = event.currentTarget.dataset.drag;
      event.preventDefault();
      event.stopPropagation();
      const origin = toImage(overlay, event);
      const from = { ...box.bbox };
      let moved = null;
      const limit = (value, most) => Math.min(Math.max(value, 0), most);
      const move = (ev) => {
        const at = toImage(overlay, ev);
        const dx = at.x - origin.x;
        const dy = at.y - origin.y;
        const next = { ...from };
        if (mode === "move") {
          const w = from.x2 - from.x1;
          const h = from.y2 - from.y1;
          next.x1 = limit(from.x1 + dx, width - w);
          next.y1 = limit(from.y1 + dy, height - h);
          next.x2 = next.x1 + w;
          next.y2 = next.y1 + h;
        } else {
          if (mode.includes("w")) next.x1 = limit(from.x1 + dx, width);
          if (mode.includes("e")) next.x2 = limit(from.x2 + dx, width);
          if (mode.includes("n")) next.y1 = limit(from.y1 + dy, height);
          if (mode.includes("s")) next.y2 = limit(from.y2 + dy, height);
        }
        moved = {
          x1: Math.min(next.x1, next.x2), x2: Math.max(next.x1, next.x2),
          y1: Math.min(next.y1, next.y2), y2: Math.max(next.y1, next.y2),
        };
        for (const grip of grips) grip.remove();
        setAttrs(shape, { x: moved.x1, y: moved.y1, width: moved.x2 - moved.x1,
          height: moved.y2 - moved.y1 });
        shape.classList.add("staged");
        const unit = overlayUnit(overlay);
        if (tag) setAttrs(tag, { x: moved.x1 + unit / 4, y: Math.max(moved.y1 - unit / 3, unit) });
      };
      const end = () => {
        window.removeEventListener("pointermove", move);
        window.removeEventListener("pointerup", end);
        if (moved && (moved.x2 - moved.x1 >= 1) && (moved.y2 - moved.y1 >= 1)) {
          const round = (v) => Math.round(v * 10) / 10;
          stageModify(box.key, { bbox: { x1: round(moved.x1), y1: round(moved.y1),
            x2: round(moved.x2), y2: round(moved.y2) } });
        } else {
          renderItem();
        }
      };
      window.addEventListener("pointermove", move);
      window.addEventListener("pointerup", end);
    };
    for (const grip of grips) {
      grip.addEventListener("pointerdown", start);
      overlay.append(grip);
    }
  }

  // --- staging decisions ---------------------------------------------------------------------
  function reviewable(key) {
    const { prediction } = predictionAt(key);
    return prediction && prediction.id !== undefined && prediction.id !== null;
  }

  function stage(key, decision) {
    if (!key || !reviewable(key)) return;
    // The prediction's id goes with the decision, so a conflict can carry it over.
    decision.predictionId = String(predictionAt(key).prediction.id);
    state.staged.set(key, decision);
    $("save-state").textContent = "";
    renderItem();
  }

  function stageModify(key, change) {
    const before = state.staged.get(key);
    const kept = before && before.action === "modify" ? before : {};
    stage(key, { action: "modify", label: change.label || kept.label, bbox: change.bbox || kept.bbox });
  }

  function unstage(key) {
    state.staged.delete(key);
    renderItem();
  }

  async function openRelabel(key) {
    if (!key || !reviewable(key)) return;
    if (!state.labels) await loadLabels();
    const { kind } = predictionAt(key);
    const current = effective(key).label;
    const choices = new Set([current, ...((state.labels && state.labels[kind]) || [])]);
    const select = $("relabel-select");
    select.replaceChildren(...[...choices].map((label) =>
      el("option", { value: label, selected: label === current }, label)));
    select.dataset.key = key;
    $("relabel").dataset.kind = kind;
    show($("relabel"), true);
    select.focus();
  }

  function closeRelabel(apply) {
    const select = $("relabel-select");
    const key = select.dataset.key;
    select.blur();  // the keys go back to the item view
    show($("relabel"), false);
    if (apply && key) {
      const { prediction } = predictionAt(key);
      const label = select.value;
      if (label && label !== effective(key).label) stageModify(key, { label });
      else if (label === prediction.label) renderItem();
    }
  }

  function renderPredictionList() {
    const list = $("predictions");
    list.replaceChildren();
    for (const key of visibleKeys()) {
      const box = effective(key);
      const p = box.prediction;
      const classes = [box.status];
      if (key === state.selected) classes.push("selected");
      const decision = box.decision;
      const staged = decision ? el("span", { class: "mark staged" }, `unsaved: ${decision.action}`) : null;
      const statusMark = el("span", { class: `mark ${box.status}` },
        box.status === "pending" ? "suggested" : box.status === "modified" ? "✎ modified" : box.status);
      const canReview = reviewable(key);
      const item = el("li", { class: classes.join(" "), "data-key": key, "data-status": box.status,
        onclick: () => select(key) },
        el("div", { class: "row" }, statusMark, staged, el("strong", {}, box.label),
          el("span", {}, scoreText(p.score)), el("span", { class: "muted" }, box.kind)),
        el("div", { class: "row muted" }, p.training_set || "", p.model ? ` · ${p.model}` : "",
          p.original_label && p.original_label !== box.label ? ` · was ${p.original_label}` : ""),
        el("div", { class: "actions" },
          el("button", { type: "button", disabled: !canReview, onclick: (e) => {
            e.stopPropagation(); state.selected = key; stage(key, { action: "accept" });
          } }, "Accept (a)"),
          el("button", { type: "button", disabled: !canReview, onclick: (e) => {
            e.stopPropagation(); state.selected = key; stage(key, { action: "reject" });
          } }, "Reject (r)"),
          el("button", { type: "button", disabled: !canReview, onclick: (e) => {
            e.stopPropagation(); state.selected = key; openRelabel(key);
          } }, "Modify (m)"),
          decision ? el("button", { type: "button", onclick: (e) => {
            e.stopPropagation(); unstage(key);
          } }, "Undo (u)") : null));
      list.append(item);
    }
  }

  function renderMetadata() {
    const item = state.item;
    const rows = [["dataset", item.dataset], ["uri", item.uri],
      ["size", item.width && item.height ? `${item.width} × ${item.height}` : null],
      ["uploaded", item.uploaded_at], ["status", (item.autotag_status || []).join(", ")]];
    for (const [name, value] of Object.entries(item.metadata || {})) {
      rows.push([`metadata.${name}`, typeof value === "object" ? JSON.stringify(value) : value]);
    }
    $("metadata").replaceChildren(...rows.filter(([, v]) => v !== null && v !== undefined && v !== "")
      .flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, String(value))]));
  }

  function describeChange(entry) {
    const before = entry.before || {};
    const after = entry.after || {};
    const parts = [`${entry.action} ${entry.kind} ${before.label || ""}`];
    if (after.label && after.label !== before.label) parts.push(`→ ${after.label}`);
    if (after.bbox && JSON.stringify(after.bbox) !== JSON.stringify(before.bbox)) parts.push("(box moved)");
    return parts.join(" ");
  }

  function renderHistory() {
    const entries = (state.item.review_history || []).slice().reverse();
    $("history").replaceChildren(...(entries.length ? entries.map((entry) => el("li", {},
      el("span", { class: "muted" }, `${entry.at} ${entry.who}: `), describeChange(entry),
      entry.run_id ? el("span", { class: "muted" }, ` (run ${entry.run_id})`) : null))
      : [el("li", { class: "muted" }, "not reviewed yet")]));
  }

  // --- saving ---------------------------------------------------------------------------------
  async function save() {
    if (!state.staged.size || !state.item) return;
    const decisions = [];
    for (const [key, decision] of state.staged) {
      const { prediction } = predictionAt(key);
      const entry = { prediction_id: String(prediction.id), action: decision.action };
      if (decision.action === "modify") {
        if (decision.label && decision.label !== prediction.label) entry.label = decision.label;
        if (decision.bbox) entry.bbox = decision.bbox;
        if (!entry.label && !entry.bbox) continue;
      }
      decisions.push(entry);
    }
    $("save").disabled = true;
    $("save-state").textContent = "saving…";
    try {
      const answer = await api("POST", `v1/items/${encodeURIComponent(state.item.item_id)}/review`,
        { decisions, expected_version: state.version });
      state.item = answer.item;
      state.version = answer.version;
      state.staged = new Map();
      state.conflict = null;
      state.resultsStale = true;
      const hit = state.hits.find((h) => h.item.item_id === answer.item.item_id);
      if (hit) hit.item = answer.item;
      renderItem();
      $("save-state").textContent = `saved ${answer.events.length} decision${answer.events.length === 1 ? "" : "s"}`;
    } catch (error) {
      if (error.status === 409 && error.code === "conflict" && error.details.current_item) {
        state.conflict = error.details;
        $("save-state").textContent = "not saved: conflict";
        renderItem();
      } else {
        $("save-state").textContent = `not saved: ${explain(error)}`;
        $("save").disabled = false;
      }
    }
  }

  function renderConflict() {
    const conflict = state.conflict;
    show($("conflict"), Boolean(conflict));
    if (!conflict) return;
    const current = conflict.current_item;
    $("conflict-text").textContent = `Your ${state.staged.size} unsaved decision(s) were not ` +
      "saved: this item was changed since you opened it. They are kept; the item as it is now:";
    const rows = [];
    for (const kind of KINDS) {
      for (const p of predictionsOf(current, kind)) {
        rows.push(el("li", { "data-status": p.status }, el("span", { class: `mark ${p.status}` }, p.status),
          ` ${kind} ${p.label} ${scoreText(p.score)}`));
      }
    }
    const last = (current.review_history || []).slice(-3).reverse().map((entry) =>
      el("li", { class: "muted" }, `${entry.at} ${entry.who}: ${describeChange(entry)}`));
    $("conflict-current").replaceChildren(el("ul", {}, rows), el("p", {}, "Latest changes:"),
      el("ul", {}, last));
  }

  function rebase(keepMine) {
    const conflict = state.conflict;
    if (!conflict) return;
    const current = conflict.current_item;
    const mine = state.staged;
    state.item = current;
    state.version = conflict.current_version;
    state.staged = new Map();
    if (keepMine) {
      // Decisions follow their prediction by id; a prediction that is gone drops its decision.
      for (const [key, decision] of mine) {
        const [kind] = key.split(":");
        const id = decision.predictionId;
        const offset = predictionsOf(current, kind).findIndex((p) => String(p.id) === id);
        if (offset >= 0) state.staged.set(keyOf(kind, offset), decision);
      }
    }
    state.conflict = null;
    renderItem({ newImage: false });
  }

  // --- moving between items ---------------------------------------------------------------
  function leaveAllowed() {
    if (!state.staged.size) return true;
    const now = Date.now();
    if (now < state.leaveArmedUntil) {
      state.staged = new Map();
      return true;
    }
    state.leaveArmedUntil = now + 4000;
    notice(`You have ${state.staged.size} unsaved decision(s): press s to save them, or the same ` +
      "key again to leave without saving.");
    return false;
  }

  async function stepItem(delta) {
    if (!state.item || !leaveAllowed()) return;
    notice("");
    let index = state.hits.findIndex((hit) => hit.item.item_id === state.item.item_id);
    if (index < 0) return;
    index += delta;
    if (index >= state.hits.length && state.nextCursor) {
      state.cursors[state.page + 1] = state.nextCursor;
      state.page += 1;
      await runSearch({ newQuery: false, hash: false });
      index = 0;
    } else if (index < 0 && state.page > 0) {
      state.page -= 1;
      await runSearch({ newQuery: false, hash: false });
      index = state.hits.length - 1;
    }
    const hit = state.hits[index];
    if (hit) go(`#item=${encodeURIComponent(hit.item.item_id)}`);
  }

  function backToResults() {
    if (!leaveAllowed()) return;
    notice("");
    go(searchHash());
  }

  // --- review by query ---------------------------------------------------------------------
  let bulkPreview = null;
  let bulkAction = null;

  async function openBulk() {
    const text = $("q").value.trim();
    show($("bulk"), true);
    show($("bulk-confirm"), false);
    $("bulk-result").textContent = "";
    $("bulk-query").textContent = text;
    $("bulk-count").textContent = "counting…";
    $("bulk-accept").disabled = true;
    $("bulk-reject").disabled = true;
    try {
      bulkPreview = await api("POST", "v1/review-by-query/preview", { query: text });
    } catch (error) {
      $("bulk-count").textContent = error.code === "invalid_query" ? "Fix the query first."
        : explain(error);
      return;
    }
    bulkPreview.text = text;
    $("bulk-query").textContent = bulkPreview.query;
    const n = bulkPreview.predictions;
    $("bulk-count").textContent = `Dry run: ${n} pending prediction${n === 1 ? "" : "s"} on ` +
      `${bulkPreview.items} item${bulkPreview.items === 1 ? "" : "s"} (${bulkPreview.image_predictions} ` +
      `image tags, ${bulkPreview.object_predictions} objects).`;
    $("bulk-count").dataset.predictions = String(n);
    $("bulk-accept").disabled = n === 0;
    $("bulk-reject").disabled = n === 0;
  }

  function askBulk(action) {
    bulkAction = action;
    const n = bulkPreview.predictions;
    $("bulk-confirm-text").textContent = `${action === "accept" ? "Accept" : "Reject"} all ${n} ` +
      `pending prediction${n === 1 ? "" : "s"} this query matched? Each change is recorded in its ` +
      "item's history.";
    show($("bulk-confirm"), true);
  }

  async function runBulk() {
    show($("bulk-confirm"), false);
    $("bulk-result").textContent = "applying…";
    try {
      const done = await api("POST", "v1/review-by-query", { query: bulkPreview.text,
        action: bulkAction, expected_predictions: bulkPreview.predictions });
      const verb = bulkAction === "accept" ? "Accepted" : "Rejected";
      $("bulk-result").textContent = `${verb} ${done.predictions} prediction(s) on ${done.items} ` +
        `item(s) (run ${done.run_id}).` + (done.remaining ? ` ${done.remaining} left (concurrent ` +
        "changes): run it again." : "");
      $("bulk-result").dataset.predictions = String(done.predictions);
      $("bulk-accept").disabled = true;
      $("bulk-reject").disabled = true;
      runSearch({ newQuery: false, hash: false });
    } catch (error) {
      if (error.code === "matched_set_changed") {
        $("bulk-result").textContent = `The query now matches ${error.details.predictions} ` +
          "pending prediction(s), not the dry run's: nothing was applied. Look again.";
        openBulk();
      } else {
        $("bulk-result").textContent = explain(error);
      }
    }
  }

  // --- evaluation ---------------------------------------------------------------------------
  // The query's slice against reviews or an imported truth: /v1/evaluate's figures as a table,
  // and the picture /v1/evaluate/plot draws (the one `autotag evaluate --plot` writes), both
  // asked at once (the server computes one evaluation for the two).
  const evaluation = { seq: 0, choices: null, plotUrl: null };

  function showEvalError(error) {
    const box = $("eval-error");
    let text = "";
    if (error && error.code === "invalid_query") {
      text = error.details.rendered;
    } else if (error && error.code === "unknown_truth_source") {
      text = `${error.message}; the sources there are: ${(error.details.known_sources || []).join(", ")}`;
    } else if (error && error.code === "validation_error") {
      const problems = (error.details.errors || []).map((e) =>
        `${(e.loc || []).filter((part) => part !== "body").join(".")}: ${e.msg}`);
      text = [error.message, ...problems].join("\n");
    } else if (error) {
      text = explain(error);
    }
    box.textContent = text;
    show(box, Boolean(text));
  }

  function option(value, text, selected) {
    return el("option", { value, selected: Boolean(selected) }, text);
  }

  function itemsText(n) {
    return `${n} item${n === 1 ? "" : "s"}`;
  }

  function fillChoices(choices) {
    const before = { a: $("eval-a").value, b: $("eval-b").value, truth: $("eval-truth").value,
      iou: $("eval-iou").value };
    const names = choices.training_sets.map((t) => t.name);
    const a = names.includes(before.a) ? before.a : names[0];
    const b = before.b === "" || names.includes(before.b) ? before.b : "";
    const secondDefault = evaluation.choices === null ? names.find((n) => n !== a) || "" : b;
    $("eval-a").replaceChildren(...choices.training_sets.map((t) =>
      option(t.name, `${t.name} (${itemsText(t.items)})`, t.name === a)));
    $("eval-b").replaceChildren(option("", "none", !secondDefault),
      ...choices.training_sets.map((t) =>
        option(t.name, `${t.name} (${itemsText(t.items)})`, t.name === secondDefault)));
    const sources = choices.truth_sources.map((t) => t.name);
    const truth = sources.includes(before.truth) ? before.truth : choices.defaults.truth;
    $("eval-truth").replaceChildren(...choices.truth_sources.map((t) => option(t.name,
      t.name === "reviews" ? `reviews (${itemsText(t.items)} reviewed)` : `${t.name} (${itemsText(t.items)})`,
      t.name === truth)));
    const iou = before.iou || String(choices.defaults.iou_threshold);
    $("eval-iou").replaceChildren(...choices.iou_thresholds.map((t) =>
      option(String(t), t.toFixed(2), String(t) === iou)));
    if (evaluation.choices === null) $("eval-score").value = String(choices.defaults.score_threshold);
  }

  async function openEvaluate() {
    const text = $("q").value.trim();
    const seq = ++evaluation.seq;
    show($("evaluate"), true);
    $("evaluate").dataset.state = "loading";
    $("eval-query").textContent = text;
    showEvalError(null);
    $("eval-run").disabled = true;
    $("eval-state").textContent = "reading what this query can be evaluated with…";
    let choices;
    try {
      choices = await api("POST", "v1/evaluate/choices", { query: text });
    } catch (error) {
      if (seq !== evaluation.seq) return;
      $("eval-state").textContent = "";
      showEvalError(error);
      $("evaluate").dataset.state = "error";
      return;
    }
    if (seq !== evaluation.seq) return;
    fillChoices(choices);
    evaluation.choices = { ...choices, text };
    $("eval-query").textContent = choices.query;
    const none = !choices.training_sets.length;
    $("eval-state").textContent = none ? "No training set tagged the items of this query." : "";
    $("eval-run").disabled = none;
    $("evaluate").dataset.state = "ready";
  }

  function evaluateBody() {
    const sets = [$("eval-a").value, $("eval-b").value].filter(Boolean);
    return {
      query: evaluation.choices.text,
      training_sets: [...new Set(sets)],
      truth: $("eval-truth").value,
      iou_threshold: Number($("eval-iou").value),
      score_threshold: Number($("eval-score").value),
    };
  }

  async function runEvaluate() {
    if (!evaluation.choices) return;
    const body = evaluateBody();
    const seq = ++evaluation.seq;
    const box = $("evaluate");
    box.dataset.state = "running";
    showEvalError(null);
    $("eval-run").disabled = true;
    $("eval-state").textContent = "evaluating…";
    const [report, plot] = await Promise.allSettled([
      api("POST", "v1/evaluate", body), apiBlob("POST", "v1/evaluate/plot", body)]);
    if (seq !== evaluation.seq) return;
    $("eval-run").disabled = false;
    if (report.status === "rejected") {
      $("eval-state").textContent = "";
      show($("eval-result"), false);
      showEvalError(report.reason);
      box.dataset.state = "error";
      return;
    }
    $("eval-state").textContent = `evaluated in ${report.value.seconds.toFixed(2)} s`;
    renderEvaluation(report.value);
    renderPlot(report.value, plot);
    show($("eval-result"), true);
    box.dataset.state = "done";
  }

  function renderPlot(report, plot) {
    const img = $("eval-plot");
    if (evaluation.plotUrl) URL.revokeObjectURL(evaluation.plotUrl);
    evaluation.plotUrl = null;
    if (plot.status === "rejected") {
      img.removeAttribute("src");
      img.alt = "";
      show(img, false);
      $("eval-plot-error").textContent = `No picture: ${explain(plot.reason)}`;
      return;
    }
    $("eval-plot-error").textContent = "";
    const curves = report.training_sets.some((ts) => ts.labels.some((m) => m.pr_curve.length));
    const sets = report.training_sets.map((ts) => ts.training_set).join(" and ");
    img.alt = `${curves ? "Precision-recall curves per label and the reliability diagram"
      : "The reliability diagram"} (observed precision per score bin) of ${sets} against ` +
      `${report.truth}; the figures are in the table below.`;
    evaluation.plotUrl = URL.createObjectURL(plot.value);
    img.src = evaluation.plotUrl;
    show(img, true);
  }

  // Columns of the per-label table; one with no value in the whole report is left out (with
  // reviews: recall, F1, AP; the report says why under "unknown").
  const EVAL_COLUMNS = [
    ["truth", "truth", (m) => m.truth, "count"],
    ["tp", "TP", (m) => m.tp, "count"],
    ["fp", "FP", (m) => m.fp, "count"],
    ["fn", "FN", (m) => m.fn, "count"],
    ["precision", "precision", (m) => m.precision, "ratio"],
    ["recall", "recall", (m) => m.recall, "ratio"],
    ["f1", "F1", (m) => m.f1, "ratio"],
    ["ap", "AP", (m) => m.ap, "ratio"],
    ["ap_50_95", "AP@[.5:.95]", (m) => m.ap_50_95, "ratio"],
    ["high", "high band precision", (m) => highBand(m).precision, "ratio"],
  ];

  function highBand(metrics) {
    return metrics.calibration.find((bin) => bin.band === "high") || { precision: null, predictions: 0 };
  }

  function figureCell(name, value, type, metrics) {
    const cell = el("td", { class: "num", "data-col": name });
    if (value === null || value === undefined) {
      cell.textContent = "–";
      return cell;
    }
    cell.dataset.value = String(value);
    cell.textContent = type === "ratio" ? value.toFixed(3) : String(value);
    if (name === "high") cell.append(el("span", { class: "muted" }, ` (${highBand(metrics).predictions})`));
    return cell;
  }

  function renderEvaluation(report) {
    $("eval-summary").textContent = `${report.query}: ${itemsText(report.items)}, truth ` +
      `${report.truth}, IoU ${report.iou_threshold.toFixed(2)}, score ≥ ${report.score_threshold}`;
    const all = report.training_sets.flatMap((ts) => ts.labels);
    const columns = EVAL_COLUMNS.filter(([, , value]) => all.some((m) => value(m) !== null &&
      value(m) !== undefined));
    $("eval-tables").replaceChildren(...report.training_sets.map((ts) => {
      const mean = ts.mean_ap === null ? "" : `, mean AP ${ts.mean_ap.toFixed(3)}`;
      const table = el("table", { class: "eval-table", "data-training-set": ts.training_set },
        el("caption", {}, `${ts.training_set} (${itemsText(ts.items)}${mean})`),
        el("thead", {}, el("tr", {}, el("th", {}, "kind"), el("th", {}, "label"),
          columns.map(([, title]) => el("th", { class: "num" }, title)))),
        el("tbody", {}, ts.labels.map((m) => el("tr", { "data-kind": m.kind, "data-label": m.label },
          el("td", {}, m.kind), el("td", {}, m.label),
          columns.map(([name, , value, type]) => figureCell(name, value(m), type, m))))));
      const confusions = ts.confusions.length ? el("p", { class: "muted" }, "confusions from reviews: ",
        ts.confusions.map((c, i) => `${i ? ", " : ""}${c.original_label} → ${c.label} (${c.count})`))
        : null;
      return el("div", { class: "eval-set" }, table,
        ts.labels.length ? null : el("p", { class: "muted" }, "nothing judged"), confusions);
    }));
    $("eval-verdicts").replaceChildren(...report.comparisons.map((pair) => el("li", {},
      el("strong", {}, `${pair.training_set_a} vs ${pair.training_set_b}`),
      ` (${itemsText(pair.items)} both tagged, ${pair.bootstrap} bootstrap replicates):`,
      el("ul", {}, pair.labels.map((row) => el("li", { "data-label": row.label }, row.verdict))))));
    show($("eval-verdicts"), report.comparisons.length > 0);
    $("eval-known").replaceChildren(
      ...report.known.map((line) => el("li", { class: "known" }, el("strong", {}, "known: "), line)),
      ...report.unknown.map((line) => el("li", { class: "unknown" }, el("strong", {}, "unknown: "), line)),
      ...report.notes.map((line) => el("li", { class: "note" }, el("strong", {}, "note: "), line)));
  }

  // --- routing --------------------------------------------------------------------------------
  let lastRouted = null;

  function route() {
    if (location.hash === lastRouted && !$("item-view").hidden === location.hash.startsWith("#item=")) {
      return;  // the same place, reported twice (popstate and hashchange)
    }
    lastRouted = location.hash;
    const params = new URLSearchParams(location.hash.slice(1));
    const itemId = params.get("item");
    if (itemId) {
      openItem(itemId);
      return;
    }
    show($("item-view"), false);
    show($("search-view"), true);
    const query = params.get("q");
    const sort = params.get("sort");
    if (sort) setSort(sort);
    if (query !== null && (query !== state.query || state.resultsStale || !state.hits.length)) {
      $("q").value = query;
      checkQuery();
      runSearch({ hash: false, newQuery: query !== state.query });
    } else if (query === null && !state.hits.length) {
      $("q").value = $("q").value || DEFAULT_QUERY;
      runSearch();
    } else if (state.resultsStale) {
      runSearch({ newQuery: false, hash: false });
    }
  }

  function setSort(value) {
    const [sort, order] = value.split(":");
    state.sort = sort;
    state.order = order;
    $("sort").value = value;
  }

  // --- keyboard -------------------------------------------------------------------------------
  function onKey(event) {
    const target = event.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLSelectElement ||
      target instanceof HTMLTextAreaElement;
    if (target === $("relabel-select")) {
      if (event.key === "Enter") { event.preventDefault(); closeRelabel(true); }
      if (event.key === "Escape") { event.preventDefault(); closeRelabel(false); }
      return;
    }
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const inItem = !$("item-view").hidden;
    if (inItem && !state.item) return;  // still loading
    if (!inItem) {
      if (event.key === "/") { event.preventDefault(); $("q").focus(); }
      if (event.key === "e") { event.preventDefault(); openEvaluate(); }
      return;
    }
    const keys = visibleKeys();
    const at = keys.indexOf(state.selected);
    const handled = {
      ArrowRight: () => stepItem(1), j: () => stepItem(1),
      ArrowLeft: () => stepItem(-1), k: () => stepItem(-1),
      ArrowDown: () => keys.length && select(keys[(at + 1) % keys.length]),
      ArrowUp: () => keys.length && select(keys[(at - 1 + keys.length) % keys.length]),
      a: () => stage(state.selected, { action: "accept" }),
      r: () => stage(state.selected, { action: "reject" }),
      m: () => openRelabel(state.selected),
      u: () => state.selected && unstage(state.selected),
      s: () => save(),
      h: () => { state.showRejected = !state.showRejected; renderItem(); },
      Escape: () => backToResults(),
    }[event.key];
    if (handled) {
      event.preventDefault();
      handled();
    }
  }

  // --- the review key -----------------------------------------------------------------------
  function renderKeyState() {
    $("key-state").textContent = reviewKey() ? "a key is set for this tab" : "no key: reading only";
  }

  // --- wiring ---------------------------------------------------------------------------------
  function start() {
    $("q").addEventListener("input", scheduleTranslate);
    $("query-form").addEventListener("submit", (event) => {
      event.preventDefault();
      clearTimeout(translateTimer);
      runSearch();
    });
    $("sort").addEventListener("change", () => {
      setSort($("sort").value);
      runSearch();
    });
    $("high-confidence").addEventListener("click", () => {
      $("q").value = narrowed("(score = high AND status = pending)");
      setSort("score:desc");
      checkQuery();
      runSearch();
    });
    $("prev-page").addEventListener("click", () => {
      state.page = Math.max(0, state.page - 1);
      runSearch({ newQuery: false, hash: false });
    });
    $("next-page").addEventListener("click", () => {
      if (!state.nextCursor) return;
      state.cursors[state.page + 1] = state.nextCursor;
      state.page += 1;
      runSearch({ newQuery: false, hash: false });
    });
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("key").value.trim();
      if (value) sessionStorage.setItem(KEY_STORAGE, value);
      $("key").value = "";
      renderKeyState();
      notice("");
    });
    $("key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      renderKeyState();
    });
    $("back").addEventListener("click", backToResults);
    $("prev-item").addEventListener("click", () => stepItem(-1));
    $("next-item").addEventListener("click", () => stepItem(1));
    $("save").addEventListener("click", save);
    $("show-rejected").addEventListener("change", () => {
      state.showRejected = $("show-rejected").checked;
      renderItem();
    });
    $("relabel-ok").addEventListener("click", () => closeRelabel(true));
    $("relabel-cancel").addEventListener("click", () => closeRelabel(false));
    $("conflict-rebase").addEventListener("click", () => rebase(true));
    $("conflict-discard").addEventListener("click", () => rebase(false));
    $("bulk-open").addEventListener("click", openBulk);
    $("bulk-cancel").addEventListener("click", () => show($("bulk"), false));
    $("bulk-accept").addEventListener("click", () => askBulk("accept"));
    $("bulk-reject").addEventListener("click", () => askBulk("reject"));
    $("bulk-yes").addEventListener("click", runBulk);
    $("bulk-no").addEventListener("click", () => show($("bulk-confirm"), false));
    $("eval-open").addEventListener("click", openEvaluate);
    $("eval-close").addEventListener("click", () => show($("evaluate"), false));
    $("eval-form").addEventListener("submit", (event) => {
      event.preventDefault();
      runEvaluate();
    });
    document.addEventListener("keydown", onKey);
    window.addEventListener("popstate", route);
    window.addEventListener("hashchange", route);
    renderKeyState();
    route();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
