// Shared by every imgcls page: requests to the JSON API, and the one-line error
// banner.  Text from the server (class names, metadata, messages) is only ever
// put into the page as text (textContent, text nodes), never parsed as HTML:
// a model file is untrusted input.
"use strict";

const Imgcls = (() => {
  // Longest error line shown; the banner is one line, the rest is in its title.
  const MAX_MESSAGE = 300;

  class ApiError extends Error {
    constructor(code, message, status) {
      super(message);
      this.code = code;
      this.status = status;
    }
  }

  function oneLine(text) {
    return String(text).replace(/\s+/g, " ").trim();
  }

  // Create an element; attrs.text sets its text, attrs.class its class;
  // children are nodes or strings (strings become text nodes).
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value);
    }
    node.append(...children);
    return node;
  }

  // fetch() that resolves to the parsed JSON answer or throws an ApiError
  // carrying the server's {"error": {"code", "message"}} (or a description of
  // what else went wrong: no connection, a non-JSON answer).
  async function request(url, options = {}) {
    let response;
    try {
      response = await fetch(url, options);
    } catch (err) {
      throw new ApiError("network", `cannot reach the server (${oneLine(err.message)})`, 0);
    }
    const text = await response.text();
    let data = null;
    try {
      data = JSON.parse(text);
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const error = data && typeof data === "object" ? data.error : null;
      if (error && typeof error.message === "string") {
        throw new ApiError(String(error.code || "error"), oneLine(error.message), response.status);
      }
      const detail = oneLine(text).slice(0, MAX_MESSAGE) || response.statusText;
      throw new ApiError(`http_${response.status}`, `HTTP ${response.status}: ${detail}`, response.status);
    }
    if (data === null) {
      throw new ApiError("bad_response", `the server's answer to ${url} is not JSON`, response.status);
    }
    return data;
  }

  function postJSON(url, body) {
    return request(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  // Show err (an ApiError or any Error) in the banner `node` as one line.
  function showError(node, err) {
    const message = oneLine(err && err.message ? err.message : err);
    const code = err && err.code ? err.code : "error";
    node.textContent = message.length > MAX_MESSAGE ? message.slice(0, MAX_MESSAGE) + "…" : message;
    node.title = message;
    node.dataset.code = code;
    node.hidden = false;
  }

  function clearError(node) {
    node.hidden = true;
    node.textContent = "";
    delete node.dataset.code;
  }

  // Wrap an async `task` (no arguments; it reads the page's current state) so
  // that at most one call runs at a time: calls made meanwhile collapse into
  // one more run after it.  Live controls (sliders, drags) thus send the
  // latest state without queueing a request per mouse move.
  function coalesce(task) {
    let running = false;
    let pending = false;
    return async function run() {
      pending = true;
      if (running) return;
      running = true;
      try {
        while (pending) {
          pending = false;
          await task();
        }
      } finally {
        running = false;
      }
    };
  }

  // The demos' class colours: saturated for points, pale for regions (never
  // white: white is a vote tie).
  const CLASS_COLORS = ["#d62728", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd"];
  const REGION_RGB = [[246, 178, 178], [176, 228, 176], [172, 204, 238], [255, 212, 160], [214, 192, 234]];
  const TIE_RGB = [255, 255, 255];

  // Paint `regions` (ny rows of nx class indices, -1 for a tie; row 0 at the
  // top) into `canvas`, one canvas pixel per cell (CSS scales it up).
  function paintRegions(canvas, regions) {
    const ny = regions.length;
    const nx = ny ? regions[0].length : 0;
    canvas.width = nx;
    canvas.height = ny;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(nx, ny);
    for (let j = 0; j < ny; j++) {
      for (let i = 0; i < nx; i++) {
        const c = regions[j][i];
        const rgb = c >= 0 && c < REGION_RGB.length ? REGION_RGB[c] : TIE_RGB;
        image.data.set([rgb[0], rgb[1], rgb[2], 255], (j * nx + i) * 4);
      }
    }
    ctx.putImageData(image, 0, 0);
  }

  // World coordinates <-> CSS pixels of a square stage showing `view`
  // ({xmin, xmax, ymin, ymax}) in `size` pixels, y upwards.
  function viewTransform(view, size) {
    const sx = size / (view.xmax - view.xmin);
    const sy = size / (view.ymax - view.ymin);
    return {
      toPixel: ([x, y]) => [(x - view.xmin) * sx, (view.ymax - y) * sy],
      toWorld: ([px, py]) => [view.xmin + px / sx, view.ymax - py / sy],
    };
  }

  function eventPixel(event, node) {
    const rect = node.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }

  function drawPoint(ctx, [px, py], color) {
    ctx.beginPath();
    ctx.arc(px, py, 5, 0, 2 * Math.PI);
    ctx.fillStyle = color;
    ctx.fill();
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = "#000";
    ctx.stroke();
  }

  return { ApiError, coalesce, CLASS_COLORS, paintRegions, viewTransform, eventPixel, drawPoint, el, request, postJSON, showError, clearError, oneLine };
})();
