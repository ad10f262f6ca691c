// The page at "/": choose a model, send it an image (file, drop, paste, or a
// digit drawn on the pad), and show its top classes, its nearest training
// images (kNN) or its class templates (linear).  Model files are untrusted:
// every class name and metadata value goes into the page as text only.
"use strict";

(() => {
  const { el, request, showError, clearError } = Imgcls;
  const $ = (id) => document.getElementById(id);
  const errorLine = $("error");
  const TOP_K = 5;
  // MNIST's preprocessing: the digit's bounding box is scaled to fit 20x20
  // pixels, then placed in a 28x28 image with its centre of mass at the centre.
  const SIDE = 28;
  const BOX = 20;
  const PNG_DATA_URL = "data:image/png;base64,";
  // Metadata entries listed as they are; the whole document is one click away.
  const SUMMARY_KEYS = ["imgcls_version", "params", "preprocessing"];

  let models = [];
  let current = null;
  let previewUrl = null;

  function setBusy(busy) {
    document.body.classList.toggle("busy", busy);
    document.body.dataset.busy = busy ? "1" : "0";
  }

  function describe(value) {
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function isDigitPad(model) {
    const shape = model.input && model.input.image_shape;
    return Array.isArray(shape) && shape[0] === SIDE && shape[1] === SIDE
      && (shape.length === 2 || shape[2] === 1);
  }

  function showModel(model) {
    current = model;
    const info = $("model-info");
    info.replaceChildren();
    const add = (term, value) => info.append(el("dt", { text: term }), el("dd", { text: value }));
    add("estimator", describe(model.estimator));
    add("kind", describe(model.kind));
    const classes = Array.isArray(model.classes) ? model.classes : [];
    add("classes", `${classes.length}: ${classes.slice(0, 20).map(describe).join(", ")}`
      + (classes.length > 20 ? ", …" : ""));
    const shape = model.input ? model.input.image_shape : null;
    add("input", shape ? `image ${shape.join(" × ")}` : `${model.input ? model.input.n_features : "?"} features`);
    const metadata = model.metadata && typeof model.metadata === "object" ? model.metadata : {};
    for (const key of SUMMARY_KEYS) if (key in metadata) add(key, describe(metadata[key]));
    const all = el("details", {}, el("summary", { text: "the model file's metadata" }),
      el("pre", { text: JSON.stringify(metadata, null, 1) }));
    info.append(el("dt", { text: "metadata" }), el("dd", {}, all));
    $("draw-section").hidden = !isDigitPad(model);
    $("result-section").hidden = true;
    $("templates-section").hidden = true;
    if (model.kind === "linear" && shape) loadTemplates(model);
  }

  async function loadModels() {
    try {
      const data = await request("/v1/models");
      models = Array.isArray(data.models) ? data.models : [];
    } catch (err) {
      showError(errorLine, err);
      return;
    }
    const select = $("model");
    select.replaceChildren(...models.map((m) => el("option", { value: String(m.name), text: String(m.name) })));
    select.disabled = models.length === 0;
    if (models.length === 0) {
      showError(errorLine, new Error("the server has no models loaded"));
      return;
    }
    showModel(models[0]);
    document.body.dataset.ready = "1";
  }

  async function loadTemplates(model) {
    let data;
    try {
      data = await request(`/v1/models/${encodeURIComponent(model.name)}/templates`);
    } catch (err) {
      showError(errorLine, err);
      return;
    }
    if (current !== model) return;
    const box = $("templates");
    box.replaceChildren(...(data.templates || []).map((t) => thumb(t.png, describe(t.class))));
    $("templates-section").hidden = false;
  }

  function thumb(png, caption) {
    const img = el("img", { alt: caption });
    // Only PNG data URLs are shown: nothing from the answer is used as a link.
    if (typeof png === "string" && png.startsWith(PNG_DATA_URL)) img.src = png;
    return el("figure", {}, img, el("figcaption", { text: caption }));
  }

  function predictUrl(model) {
    const thumbnails = model.kind === "knn" ? "true" : "false";
    return `/v1/models/${encodeURIComponent(model.name)}:predict?top_k=${TOP_K}&thumbnails=${thumbnails}`;
  }

  async function predict(options) {
    if (!current) return;
    const model = current;
    clearError(errorLine);
    setBusy(true);
    try {
      const data = await request(predictUrl(model), { method: "POST", ...options });
      if (current === model) showPrediction(data);
    } catch (err) {
      $("result-section").hidden = true;
      showError(errorLine, err);
    } finally {
      setBusy(false);
    }
  }

  function showPrediction(data) {
    const prediction = (data.predictions || [])[0] || {};
    const top = Array.isArray(prediction.top) ? prediction.top : [];
    const scores = top.map((t) => Number(t.score));
    // Probabilities fill the bar by value; other scores (margins) by rank range.
    const isProbability = scores.every((s) => s >= 0 && s <= 1);
    const lo = Math.min(...scores, 0);
    const hi = Math.max(...scores);
    const width = (s) => (isProbability ? s : (hi > lo ? (s - lo) / (hi - lo) : 1));
    $("top").replaceChildren(...top.map((t, i) => {
      const bar = el("div", { class: "bar" });
      bar.style.width = `${(100 * Math.max(0, Math.min(1, width(scores[i])))).toFixed(1)}%`;
      return el("li", { "data-index": String(t.index) },
        el("span", { class: "name", text: describe(t.class), title: describe(t.class) }),
        el("div", { class: "track" }, bar),
        el("span", { class: "score", text: scores[i].toFixed(3) }));
    }));
    const time = data.time_ms || {};
    $("timing").textContent = `handler ${Number(time.handler).toFixed(2)} ms, model ${Number(time.model).toFixed(2)} ms`;
    const neighbors = Array.isArray(prediction.neighbors) ? prediction.neighbors : [];
    $("neighbors").replaceChildren(...neighbors.map((n) =>
      thumb(n.thumbnail, `${describe(n.class)} · #${n.index} · d=${Number(n.distance).toPrecision(4)}`)));
    $("neighbors-section").hidden = neighbors.length === 0;
    $("result-section").hidden = false;
  }

  function sendFile(file) {
    if (!file) return;
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    const preview = $("preview");
    preview.hidden = false;
    preview.src = previewUrl;
    const form = new FormData();
    form.append("file", file, file.name || "pasted-image");
    predict({ body: form });
  }

  // ----- the drawing pad -----
  const pad = $("pad");
  const padCtx = pad.getContext("2d", { willReadFrequently: true });
  let drawing = false;
  let last = null;

  function clearPad() {
    padCtx.fillStyle = "#000";
    padCtx.fillRect(0, 0, pad.width, pad.height);
    const small = $("pad-small").getContext("2d");
    small.fillStyle = "#000";
    small.fillRect(0, 0, SIDE, SIDE);
  }

  function padPoint(event) {
    const rect = pad.getBoundingClientRect();
    return [(event.clientX - rect.left) * (pad.width / rect.width),
      (event.clientY - rect.top) * (pad.height / rect.height)];
  }

  function stroke(from, to) {
    padCtx.strokeStyle = "#fff";
    padCtx.lineWidth = pad.width / 13;
    padCtx.lineCap = "round";
    padCtx.lineJoin = "round";
    padCtx.beginPath();
    padCtx.moveTo(...from);
    padCtx.lineTo(...to);
    padCtx.stroke();
  }

  pad.addEventListener("pointerdown", (event) => {
    drawing = true;
    pad.setPointerCapture(event.pointerId);
    last = padPoint(event);
    stroke(last, last);
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const point = padPoint(event);
    stroke(last, point);
    last = point;
  });
  const endStroke = () => {
    if (!drawing) return;
    drawing = false;
    predictDrawing();
  };
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  // The drawing as MNIST does it: grey = red channel; the ink's bounding box
  // area-averaged into at most 20x20, then shifted so that its centre of mass
  // sits at the centre of 28x28.  Returns 28 rows of 28 ints 0..255, or null.
  function mnistPixels() {
    const { width: w, height: h } = pad;
    const rgba = padCtx.getImageData(0, 0, w, h).data;
    let x0 = w, y0 = h, x1 = -1, y1 = -1;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (rgba[(y * w + x) * 4] > 0) {
          if (x < x0) x0 = x;
          if (x > x1) x1 = x;
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
        }
      }
    }
    if (x1 < 0) return null;
    const scale = BOX / Math.max(x1 - x0 + 1, y1 - y0 + 1);
    const bw = Math.max(1, Math.ceil((x1 - x0 + 1) * scale));
    const bh = Math.max(1, Math.ceil((y1 - y0 + 1) * scale));
    const sum = new Float64Array(bw * bh);
    const count = new Float64Array(bw * bh);
    for (let y = y0; y <= y1; y++) {
      const ty = Math.min(bh - 1, Math.floor((y - y0) * scale));
      for (let x = x0; x <= x1; x++) {
        const t = ty * bw + Math.min(bw - 1, Math.floor((x - x0) * scale));
        sum[t] += rgba[(y * w + x) * 4];
        count[t] += 1;
      }
    }
    let mass = 0, mx = 0, my = 0;
    const box = new Float64Array(bw * bh);
    for (let i = 0; i < box.length; i++) {
      box[i] = count[i] ? sum[i] / count[i] : 0;
      mass += box[i];
      mx += box[i] * ((i % bw) + 0.5);
      my += box[i] * (Math.floor(i / bw) + 0.5);
    }
    const ox = Math.round(SIDE / 2 - mx / mass);
    const oy = Math.round(SIDE / 2 - my / mass);
    const out = Array.from({ length: SIDE }, () => new Array(SIDE).fill(0));
    for (let i = 0; i < box.length; i++) {
      const tx = (i % bw) + ox;
      const ty = Math.floor(i / bw) + oy;
      if (tx >= 0 && tx < SIDE && ty >= 0 && ty < SIDE) out[ty][tx] = Math.round(box[i]);
    }
    return out;
  }

  function showSmall(pixels) {
    const small = $("pad-small").getContext("2d");
    const image = small.createImageData(SIDE, SIDE);
    pixels.flat().forEach((v, i) => {
      image.data.set([v, v, v, 255], i * 4);
    });
    small.putImageData(image, 0, 0);
  }

  function predictDrawing() {
    const pixels = mnistPixels();
    if (!pixels) {
      showError(errorLine, new Error("the pad is empty: draw a digit first"));
      return;
    }
    showSmall(pixels);
    $("preview").hidden = true;
    predict({
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ instances: [pixels], top_k: TOP_K, thumbnails: current.kind === "knn" }),
    });
  }

  // ----- choosing, dropping, pasting -----
  $("model").addEventListener("change", (event) => {
    const model = models.find((m) => String(m.name) === event.target.value);
    if (model) showModel(model);
  });
  $("file").addEventListener("change", (event) => {
    sendFile(event.target.files[0]);
    event.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    sendFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const items = event.clipboardData ? [...event.clipboardData.items] : [];
    const item = items.find((i) => i.kind === "file");
    if (item) {
      event.preventDefault();
      sendFile(item.getAsFile());
    }
  });
  $("preview").addEventListener("error", () => { $("preview").hidden = true; });
  $("clear-pad").addEventListener("click", clearPad);
  $("predict-pad").addEventListener("click", predictDrawing);

  clearPad();
  loadModels();
})();
