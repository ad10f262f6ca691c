// The linear classifier demo: 3 classes in 2-D with scores W x + b.  W and b
// are edited with sliders or by dragging the class lines; the server computes
// the regions (argmax of the scores), both losses, and SGD steps with imgcls's
// own loss functions.  Nothing is trained or scored in JavaScript.
"use strict";

(() => {
  const { el, postJSON, showError, clearError, coalesce, CLASS_COLORS } = Imgcls;
  const $ = (id) => document.getElementById(id);
  const errorLine = $("error");
  const N_CLASSES = 3;
  const VIEW = { xmin: -1.5, xmax: 1.5, ymin: -1.5, ymax: 1.5 };
  const CELLS = 80;
  const STAGE = 400;
  const SLIDER_RANGE = 5;
  // An arrow of length ARROW * |W_i| (world units) shows each class's W_i.
  const ARROW = 0.15;
  const GRAB_PIXELS = 7;
  // The server's bound on steps per request (imgcls.serve.demos.MAX_STEPS).
  const MAX_STEPS = 1000;
  // The lecture demo's starting point: three clusters of three points.
  const START_POINTS = [[0.5, 0.4], [0.8, 0.3], [0.3, 0.8], [-0.4, 0.3], [-0.3, 0.7],
    [-0.7, 0.2], [0.7, -0.4], [0.5, -0.6], [-0.4, -0.5]];
  const START_LABELS = [0, 0, 0, 1, 1, 1, 2, 2, 2];
  const START_W = [[1, 2], [2, -4], [3, -1]];
  const START_B = [0, 0.5, -0.5];

  const view = Imgcls.viewTransform(VIEW, STAGE);
  const regionsCanvas = $("regions");
  const overlay = $("overlay");
  let points = START_POINTS.map((p) => p.slice());
  let labels = START_LABELS.slice();
  let W = START_W.map((r) => r.slice());
  let b = START_B.slice();
  let stepsTaken = 0;
  let pendingSteps = 0;
  let renders = 0;
  let chosen = 0;

  // ----- controls -----
  const sliders = [];
  function addSlider(label, get, set) {
    const input = el("input", { type: "range", min: String(-SLIDER_RANGE), max: String(SLIDER_RANGE),
      step: "0.01", "aria-label": label });
    const output = el("output");
    input.addEventListener("input", () => {
      set(Number(input.value));
      update();
    });
    sliders.push({ input, output, get });
    $("sliders").append(el("span", { text: label }), input, output);
  }
  for (let i = 0; i < N_CLASSES; i++) {
    for (let j = 0; j < 2; j++) addSlider(`W[${i}][${j}]`, () => W[i][j], (v) => { W[i][j] = v; });
  }
  for (let i = 0; i < N_CLASSES; i++) addSlider(`b[${i}]`, () => b[i], (v) => { b[i] = v; });

  for (let c = 0; c < N_CLASSES; c++) {
    const input = el("input", { type: "radio", name: "class", value: String(c), id: `class-${c}` });
    if (c === 0) input.checked = true;
    input.addEventListener("change", () => { chosen = c; });
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = CLASS_COLORS[c];
    $("classes").append(el("label", {}, input, " ", swatch, ` ${c} `));
  }

  function showSliders() {
    for (const { input, output, get } of sliders) {
      input.value = String(get());
      output.textContent = get().toFixed(2);
    }
  }

  // ----- drawing -----
  function lineGeometry(i) {
    const [w0, w1] = W[i];
    const norm2 = w0 * w0 + w1 * w1;
    if (norm2 === 0) return null;
    // The point of the line nearest the origin, and the tip of the arrow.
    const anchor = [-b[i] * w0 / norm2, -b[i] * w1 / norm2];
    const tip = [anchor[0] + ARROW * w0, anchor[1] + ARROW * w1];
    const norm = Math.sqrt(norm2);
    const along = [-w1 / norm, w0 / norm];
    return { anchor, tip, along };
  }

  function drawOverlay() {
    const ctx = overlay.getContext("2d");
    ctx.clearRect(0, 0, STAGE, STAGE);
    for (let i = 0; i < N_CLASSES; i++) {
      const g = lineGeometry(i);
      if (!g) continue;
      const far = 10 * (VIEW.xmax - VIEW.xmin);
      const p0 = view.toPixel([g.anchor[0] - far * g.along[0], g.anchor[1] - far * g.along[1]]);
      const p1 = view.toPixel([g.anchor[0] + far * g.along[0], g.anchor[1] + far * g.along[1]]);
      const a = view.toPixel(g.anchor);
      const t = view.toPixel(g.tip);
      ctx.strokeStyle = CLASS_COLORS[i];
      ctx.fillStyle = CLASS_COLORS[i];
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(...p0);
      ctx.lineTo(...p1);
      ctx.moveTo(...a);
      ctx.lineTo(...t);
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(t[0], t[1], 4, 0, 2 * Math.PI);
      ctx.fill();
    }
    points.forEach((p, i) => Imgcls.drawPoint(ctx, view.toPixel(p), CLASS_COLORS[labels[i]]));
  }

  function formatLoss(value) {
    return Number.isFinite(value) ? value.toFixed(4) : String(value);
  }

  // ----- the server -----
  const refresh = coalesce(async () => {
    const steps = Math.min(pendingSteps, MAX_STEPS);
    pendingSteps -= steps;
    const sent = { W: W.map((r) => r.slice()), b: b.slice() };
    try {
      const data = await postJSON("/v1/demo/linear", {
        points, labels, W: sent.W, b: sent.b, steps,
        learning_rate: Number($("learning-rate").value),
        reg: Number($("reg").value),
        loss: $("loss").value,
        grid: { nx: CELLS, ny: CELLS, ...VIEW },
      });
      if (steps > 0) {
        // Edits made while the steps ran are lost to the trained values.
        W = data.W;
        b = data.b;
        stepsTaken += steps;
        $("step-count").textContent = String(stepsTaken);
        showSliders();
        drawOverlay();
      }
      Imgcls.paintRegions(regionsCanvas, data.regions);
      $("svm-loss").textContent = formatLoss(data.svm_loss);
      $("softmax-loss").textContent = formatLoss(data.softmax_loss);
      clearError(errorLine);
      regionsCanvas.dataset.renders = String(++renders);
      if (pendingSteps > 0) refresh();
    } catch (err) {
      pendingSteps = 0;
      showError(errorLine, err);
    }
  });

  function update() {
    showSliders();
    drawOverlay();
    refresh();
  }

  // ----- dragging lines, adding points -----
  let drag = null;

  function grab(m) {
    const [mx, my] = view.toPixel(m);
    for (let i = 0; i < N_CLASSES; i++) {
      const g = lineGeometry(i);
      if (!g) continue;
      const [tx, ty] = view.toPixel(g.tip);
      if (Math.hypot(tx - mx, ty - my) <= GRAB_PIXELS) return { kind: "turn", i, anchor: g.anchor };
    }
    for (let i = 0; i < N_CLASSES; i++) {
      const norm = Math.hypot(W[i][0], W[i][1]);
      if (norm === 0) continue;
      const score = W[i][0] * m[0] + W[i][1] * m[1] + b[i];
      const pixels = Math.abs(score / norm) * (STAGE / (VIEW.xmax - VIEW.xmin));
      if (pixels <= GRAB_PIXELS) return { kind: "move", i, offset: score };
    }
    return null;
  }

  overlay.addEventListener("pointerdown", (event) => {
    const m = view.toWorld(Imgcls.eventPixel(event, overlay));
    drag = grab(m);
    if (drag) {
      overlay.setPointerCapture(event.pointerId);
      return;
    }
    points.push(m);
    labels.push(chosen);
    update();
  });
  overlay.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const m = view.toWorld(Imgcls.eventPixel(event, overlay));
    const i = drag.i;
    if (drag.kind === "turn") {
      W[i] = [(m[0] - drag.anchor[0]) / ARROW, (m[1] - drag.anchor[1]) / ARROW];
      b[i] = -(W[i][0] * drag.anchor[0] + W[i][1] * drag.anchor[1]);
    } else {
      b[i] = drag.offset - (W[i][0] * m[0] + W[i][1] * m[1]);
    }
    update();
  });
  const endDrag = () => { drag = null; };
  overlay.addEventListener("pointerup", endDrag);
  overlay.addEventListener("pointercancel", endDrag);

  $("step").addEventListener("click", () => {
    pendingSteps += Math.max(1, Math.round(Number($("steps").value)) || 1);
    refresh();
  });
  $("randomize").addEventListener("click", () => {
    W = W.map((r) => r.map(() => Number((Math.random() * 6 - 3).toFixed(2))));
    b = b.map(() => Number((Math.random() * 2 - 1).toFixed(2)));
    update();
  });
  $("reset-points").addEventListener("click", () => {
    points = START_POINTS.map((p) => p.slice());
    labels = START_LABELS.slice();
    update();
  });
  for (const id of ["loss", "learning-rate", "reg"]) $(id).addEventListener("change", () => refresh());

  update();
  document.body.dataset.ready = "1";
})();
