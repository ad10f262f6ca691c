// The kNN demo: points of up to 5 classes on a plane; the server's
// KNearestNeighbor votes for every cell of a grid, and the page only paints
// the answer (tie cells white).  Nothing is classified in JavaScript.
"use strict";

(() => {
  const { el, postJSON, request, showError, clearError, coalesce, CLASS_COLORS } = Imgcls;
  const $ = (id) => document.getElementById(id);
  const errorLine = $("error");
  const N_CLASSES = 5;
  // The toy data sets lie in about [-1.2, 1.2]^2.
  const VIEW = { xmin: -1.5, xmax: 1.5, ymin: -1.5, ymax: 1.5 };
  // 100 x 100 cells: one search of 10,000 queries per change.
  const CELLS = 100;
  const STAGE = 400;
  const REMOVE_RADIUS = 10;
  const RANDOM_POINTS = 40;

  const view = Imgcls.viewTransform(VIEW, STAGE);
  const regionsCanvas = $("regions");
  const pointsCanvas = $("points");
  let points = [];
  let labels = [];
  let presets = {};
  let renders = 0;

  let chosen = 0;
  for (let c = 0; c < N_CLASSES; c++) {
    const input = el("input", { type: "radio", name: "class", value: String(c), id: `class-${c}` });
    if (c === 0) input.checked = true;
    input.addEventListener("change", () => { chosen = c; });
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = CLASS_COLORS[c];
    $("classes").append(el("label", {}, input, " ", swatch, ` ${c} `));
  }

  function settings() {
    return {
      k: Number($("k").value),
      metric: document.querySelector("input[name=metric]:checked").value,
    };
  }

  function drawPoints() {
    const ctx = pointsCanvas.getContext("2d");
    ctx.clearRect(0, 0, STAGE, STAGE);
    points.forEach((p, i) => Imgcls.drawPoint(ctx, view.toPixel(p), CLASS_COLORS[labels[i]]));
    const { k, metric } = settings();
    $("summary").textContent = `${points.length} points, K = ${k}, ${metric.toUpperCase()}`;
  }

  const refresh = coalesce(async () => {
    const { k, metric } = settings();
    if (points.length === 0) {
      Imgcls.paintRegions(regionsCanvas, [[-1]]);
      return;
    }
    try {
      const data = await postJSON("/v1/demo/knn", {
        points, labels, k, metric,
        grid: { nx: CELLS, ny: CELLS, ...VIEW },
      });
      Imgcls.paintRegions(regionsCanvas, data.regions);
      clearError(errorLine);
      regionsCanvas.dataset.k = String(k);
      regionsCanvas.dataset.metric = metric;
      regionsCanvas.dataset.points = String(points.length);
      regionsCanvas.dataset.renders = String(++renders);
    } catch (err) {
      showError(errorLine, err);
    }
  });

  function update() {
    $("k-value").textContent = $("k").value;
    drawPoints();
    refresh();
  }

  function load(name) {
    if (name === "random5") {
      points = [];
      labels = [];
      for (let i = 0; i < RANDOM_POINTS; i++) {
        points.push([VIEW.xmin + 0.1 + Math.random() * 2.8, VIEW.ymin + 0.1 + Math.random() * 2.8]);
        labels.push(i % N_CLASSES);
      }
    } else if (presets[name]) {
      points = presets[name].points.map((p) => p.slice());
      labels = presets[name].labels.slice();
    }
    update();
  }

  pointsCanvas.addEventListener("click", (event) => {
    points.push(view.toWorld(Imgcls.eventPixel(event, pointsCanvas)));
    labels.push(chosen);
    update();
  });
  pointsCanvas.addEventListener("contextmenu", (event) => {
    event.preventDefault();
    const [px, py] = Imgcls.eventPixel(event, pointsCanvas);
    let best = -1;
    let bestDistance = REMOVE_RADIUS;
    points.forEach((p, i) => {
      const [qx, qy] = view.toPixel(p);
      const d = Math.hypot(qx - px, qy - py);
      if (d <= bestDistance) {
        best = i;
        bestDistance = d;
      }
    });
    if (best >= 0) {
      points.splice(best, 1);
      labels.splice(best, 1);
      update();
    }
  });
  $("k").addEventListener("input", update);
  for (const radio of document.querySelectorAll("input[name=metric]")) radio.addEventListener("change", update);
  $("preset").addEventListener("change", (event) => load(event.target.value));
  $("undo").addEventListener("click", () => {
    points.pop();
    labels.pop();
    update();
  });
  $("clear").addEventListener("click", () => {
    points = [];
    labels = [];
    update();
  });

  (async () => {
    try {
      presets = (await request("/v1/demo/presets")).presets || {};
    } catch (err) {
      showError(errorLine, err);
    }
    load($("preset").value);
    document.body.dataset.ready = "1";
  })();
})();
