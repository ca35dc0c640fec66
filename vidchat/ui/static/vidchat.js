// The page's script: the overlay canvas over the <video> (masks, points, labels in sync with playback), the
// timeline under it, click-to-refer on the paused video, time links that seek, and object toggles.
// Listeners are delegated: Gradio re-renders the chat's messages and the player's <video>.
(() => {
  if (window.vidchat) return;
  const vc = (window.vidchat = {
    overlay: null, images: new Map(), hidden: new Set(), marker: null, canvas: null,
    pendingPoint: null, lastKey: "", videoKey: null, drawn: 0,
  });
  const videoEl = () => document.querySelector("#player video");

  vc.setOverlay = (data) => {
    const ready = !!(data && data.ready);
    if (!ready || data.video !== vc.videoKey) vc.hidden.clear();
    vc.videoKey = ready ? data.video : null;
    vc.overlay = ready ? data : null;
    vc.marker = null;
    const keep = new Map();
    if (vc.overlay) for (const f of vc.overlay.frames) for (const o of f.objects) keep.set(o.png, image(o.png));
    vc.images = keep;
    vc.lastKey = "";
    renderTimeline(vc.overlay ? vc.overlay.timeline : null);
  };

  // ---- the timeline under the player ----
  // Rows as wide as the player: the times the conversation mentions (in message order, each titled with its
  // sentence), one lane per object filled where SAM 2 sees it, and the heat strip of the visual tokens the latest
  // answer kept per temporal patch. Every clickable mark carries data-t (seconds) and seeks the player there.

  function el(tag, cls, attrs = {}) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  const percent = (t, d) => `${(100 * Math.min(Math.max(t / d, 0), 1)).toFixed(3)}%`;

  function track(row, name, color) {
    const t = el("div", "vc-tl-track");
    const label = el("span", "vc-tl-name");
    label.textContent = name;
    if (color) label.style.color = color;
    t.append(label, el("div", "vc-tl-head"));
    row.appendChild(t);
    return t;
  }

  function renderTimeline(tl) {
    const root = document.querySelector("#timeline");
    if (!root) return;
    let box = root.querySelector(".vc-tl");
    if (!box) { box = el("div", "vc-tl"); root.appendChild(box); }
    box.textContent = "";
    const empty = root.querySelector(".vc-timeline-empty");
    if (empty) empty.style.display = tl ? "none" : "";
    vc.timeline = tl;
    if (!tl) return;
    const d = tl.duration_s || 1;

    const marks = track(box.appendChild(el("div", "vc-tl-row vc-tl-marks")), tl.marks.length ? "Answers" : "Times in answers appear here");
    tl.marks.forEach((m, i) => {
      const span = m.end_s > m.t;
      const mark = el("button", span ? "vc-tl-mark vc-tl-span" : "vc-tl-mark", {
        type: "button", "data-t": m.t, "data-order": i, "data-message": m.message, title: m.sentence,
      });
      mark.style.left = percent(m.t, d);
      if (span) mark.style.width = percent(m.end_s - m.t, d);
      marks.appendChild(mark);
    });

    for (const lane of tl.lanes) {
      const row = box.appendChild(el("div", "vc-tl-row vc-tl-lane", { "data-object": lane.id }));
      const t = track(row, lane.label, lane.color);
      for (const run of lane.runs) {
        const bar = el("div", "vc-tl-run", { "data-t": run.t_s, title: `${lane.label}: seen here` });
        bar.style.left = percent(run.start_s, d);
        bar.style.width = percent(run.end_s - run.start_s, d);
        bar.style.background = lane.color;
        t.appendChild(bar);
      }
    }

    const heat = tl.heat;
    const row = box.appendChild(el("div", "vc-tl-row vc-tl-heat", { "data-on": heat ? String(heat.on) : "none" }));
    const strip = track(row, "Looked at");
    if (heat) {
      const most = Math.max(1, ...heat.steps.map((s) => s.kept));
      heat.steps.forEach((step, i) => {
        const start = step.frames_s[0], next = heat.steps[i + 1];
        const end = next ? next.frames_s[0] : d;
        const cell = el("div", "vc-tl-cell", {
          "data-t": start, "data-kept": step.kept, "data-total": step.total,
          title: `${step.kept} of ${step.total} visual tokens kept`,
        });
        cell.style.left = percent(start, d);
        cell.style.width = percent(end - start, d);
        cell.style.opacity = String(0.12 + 0.88 * (step.kept / most));
        strip.appendChild(cell);
      });
    }
    const caption = box.appendChild(el("div", "vc-tl-caption"));
    caption.textContent = heat ? heat.caption : "Ask a question to see which parts of the video the model looks at.";
    vc.playhead = "";
  }

  function movePlayhead(v) {
    if (!vc.timeline) return;
    const left = percent(v.currentTime, vc.timeline.duration_s || 1);
    if (left === vc.playhead) return;
    vc.playhead = left;
    for (const head of document.querySelectorAll("#timeline .vc-tl-head")) head.style.left = left;
  }

  function image(src) {
    let img = vc.images.get(src);
    if (!img) { img = new Image(); img.src = src; vc.images.set(src, img); }
    return img;
  }

  // The rectangle, in the <video> element's own pixels, where the picture is shown (object-fit).
  function contentBox(v) {
    const w = v.clientWidth, h = v.clientHeight, vw = v.videoWidth, vh = v.videoHeight;
    if (!w || !h || !vw || !vh) return null;
    const fit = getComputedStyle(v).objectFit;
    if (fit === "fill") return { x: 0, y: 0, w, h };
    let s = Math.min(w / vw, h / vh);
    if (fit === "cover") s = Math.max(w / vw, h / vh);
    if (fit === "none") s = 1;
    if (fit === "scale-down") s = Math.min(s, 1);
    return { x: (w - vw * s) / 2, y: (h - vh * s) / 2, w: vw * s, h: vh * s };
  }

  function ensureCanvas(v) {
    if (!vc.canvas) {
      const c = document.createElement("canvas");
      c.id = "vc-overlay";
      c.addEventListener("click", onCanvasClick);
      vc.canvas = c;
    }
    const parent = v.parentElement;
    if (vc.canvas.parentElement !== parent) {
      if (getComputedStyle(parent).position === "static") parent.style.position = "relative";
      parent.appendChild(vc.canvas);
      vc.lastKey = "";
    }
    const c = vc.canvas, dpr = window.devicePixelRatio || 1;
    const place = { left: v.offsetLeft + "px", top: v.offsetTop + "px", width: v.clientWidth + "px", height: v.clientHeight + "px" };
    for (const k in place) if (c.style[k] !== place[k]) c.style[k] = place[k];
    const W = Math.round(v.clientWidth * dpr), H = Math.round(v.clientHeight * dpr);
    if (c.width !== W || c.height !== H) { c.width = W; c.height = H; vc.lastKey = ""; }
    return c;
  }

  function nearestFrame(frames, t) {
    let lo = 0, hi = frames.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (frames[mid].t_s < t) lo = mid + 1; else hi = mid; }
    if (lo > 0 && Math.abs(frames[lo - 1].t_s - t) <= Math.abs(frames[lo].t_s - t)) lo -= 1;
    return frames[lo];
  }

  function syncToggles() {
    for (const box of document.querySelectorAll("#objects .vc-toggle")) {
      const want = !vc.hidden.has(box.value);
      if (box.checked !== want) box.checked = want;
    }
    for (const lane of document.querySelectorAll("#timeline .vc-tl-lane")) {
      lane.classList.toggle("vc-tl-hidden", vc.hidden.has(lane.getAttribute("data-object")));
    }
  }

  function pill(ctx, text, x, y, color, ink) {
    ctx.font = "600 12px ui-sans-serif, system-ui, sans-serif";
    const w = ctx.measureText(text).width + 12, h = 18;
    x = Math.max(0, Math.min(x, ctx.canvas.width / (window.devicePixelRatio || 1) - w));
    y = Math.max(0, y);
    ctx.fillStyle = color; ctx.beginPath(); ctx.roundRect(x, y, w, h, 5); ctx.fill();
    ctx.fillStyle = ink; ctx.fillText(text, x + 6, y + 13);
  }

  function inkFor(hex) {
    const n = parseInt(hex.slice(1), 16), r = n >> 16, g = (n >> 8) & 255, b = n & 255;
    return 0.299 * r + 0.587 * g + 0.114 * b > 140 ? "#111" : "#fff";
  }

  function draw() {
    const v = videoEl();
    if (!v) { if (vc.canvas) vc.canvas.style.display = "none"; return; }
    movePlayhead(v);
    const c = ensureCanvas(v);
    c.style.display = "block";
    const box = contentBox(v);
    const pointing = !!(vc.overlay && box && v.paused);
    c.style.pointerEvents = pointing ? "auto" : "none";
    c.classList.toggle("vc-pointing", pointing);
    syncToggles();
    const o = vc.overlay;
    const key = [v.currentTime, c.width, c.height, o ? o.version : -1, [...vc.hidden].join(","),
                 JSON.stringify(vc.marker), pointing, box ? box.w : 0].join("|");
    if (key === vc.lastKey) return;
    const dpr = window.devicePixelRatio || 1, ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, c.width, c.height);
    let complete = true;
    if (o && box) {
      const sx = box.w / o.width, sy = box.h / o.height, t = v.currentTime;
      const frame = o.frames.length ? nearestFrame(o.frames, t) : null;
      const shown = frame ? frame.objects.filter((obj) => !vc.hidden.has(String(obj.id))) : [];
      for (const obj of shown) {
        const img = image(obj.png);
        if (!img.complete) { complete = false; continue; }
        ctx.drawImage(img, box.x, box.y, box.w, box.h);
      }
      for (const p of o.points) {
        if (vc.hidden.has(String(p.id)) || Math.abs(p.t_s - t) > o.step_s / 2) continue;
        const x = box.x + p.x * sx, y = box.y + p.y * sy;
        ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.fillStyle = "#fff"; ctx.fill();
        ctx.beginPath(); ctx.arc(x, y, 5, 0, 2 * Math.PI); ctx.fillStyle = p.color; ctx.fill();
      }
      for (const obj of shown) {
        if (!obj.box) continue;
        pill(ctx, obj.label, box.x + obj.box[0] * sx, box.y + obj.box[1] * sy - 20, obj.color, inkFor(obj.color));
      }
    }
    if (vc.marker && box) {
      const x = box.x + vc.marker.fx * box.w, y = box.y + vc.marker.fy * box.h;
      ctx.lineWidth = 3; ctx.strokeStyle = "#fff";
      ctx.beginPath(); ctx.arc(x, y, 11, 0, 2 * Math.PI); ctx.stroke();
      ctx.lineWidth = 2; ctx.strokeStyle = "#4f46e5";
      ctx.beginPath(); ctx.arc(x, y, 11, 0, 2 * Math.PI); ctx.stroke();
      ctx.beginPath(); ctx.arc(x, y, 3, 0, 2 * Math.PI); ctx.fillStyle = "#4f46e5"; ctx.fill();
    }
    if (pointing && !vc.marker) {
      const hint = "Paused: click an object to ask about it";
      ctx.font = "600 12px ui-sans-serif, system-ui, sans-serif";
      const x = box.x + (box.w - ctx.measureText(hint).width - 12) / 2;
      pill(ctx, hint, x, box.y + box.h - 72, "rgba(17,24,39,0.78)", "#fff");
    }
    vc.drawn += 1;
    vc.lastKey = complete ? key : "";
  }

  function onCanvasClick(e) {
    const v = videoEl();
    const box = v && contentBox(v);
    if (!box || !vc.overlay) return;
    const r = vc.canvas.getBoundingClientRect();
    const px = e.clientX - r.left - box.x, py = e.clientY - r.top - box.y;
    if (px < 0 || py < 0 || px > box.w || py > box.h) return;
    e.preventDefault(); e.stopPropagation();
    vc.marker = { fx: px / box.w, fy: py / box.h, t: v.currentTime };
    vc.pendingPoint = JSON.stringify({ t: v.currentTime, fx: px / box.w, fy: py / box.h });
    const button = document.querySelector("#point-btn");
    if (button) button.click();
  }

  // Time links in the chat and the object list, and the timeline's marks: seek the player (a span seeks to its
  // start).
  document.addEventListener("click", (e) => {
    const link = e.target.closest && e.target.closest('a[href^="#t="], #timeline [data-t]');
    if (!link) return;
    e.preventDefault(); e.stopPropagation();
    const t = parseFloat(link.hasAttribute("data-t") ? link.getAttribute("data-t") : link.getAttribute("href").slice(3));
    const v = videoEl();
    if (!v || !isFinite(t)) return;
    v.currentTime = t;
    const r = v.getBoundingClientRect();
    if (r.bottom < 0 || r.top > window.innerHeight) v.scrollIntoView({ behavior: "smooth", block: "center" });
  }, true);

  // Object checkboxes: show or hide an object's mask, in this page only.
  document.addEventListener("change", (e) => {
    const box = e.target;
    if (!box.classList || !box.classList.contains("vc-toggle")) return;
    if (box.checked) vc.hidden.delete(box.value); else vc.hidden.add(box.value);
    vc.lastKey = "";
  }, true);

  function loop() {
    try { draw(); } catch (err) { console.error("vidchat overlay", err); }
    requestAnimationFrame(loop);
  }
  requestAnimationFrame(loop);
})();
