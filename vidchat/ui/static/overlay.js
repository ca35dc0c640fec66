// The overlay canvas over the <video>: masks, boxes, points and labels in sync with playback, fullscreen with the
// video, click (or keyboard) to point at an object on the paused video, and object toggles.
//
// The overlay data (`vc.setOverlay`, from the server after each change of the objects) is small: the objects,
// their boxes and points, the sampled frames' times and the timeline. Masks come in chunks of frames, asked for
// near the playhead (`vc.wantMasks` → the hidden #masks-btn → `vc.addMasks`), cached by object version: an answer
// that finds no new object costs no mask at all, and a seek fetches one chunk.
(() => {
  const vc = window.vidchat;
  Object.assign(vc, {
    overlay: null, hidden: new Set(), marker: null, canvas: null, pendingPoint: null, lastKey: "", videoKey: null,
    drawn: 0, masks: new Map(), asked: null, pendingMasks: null, maskDrawn: null,
  });

  vc.setOverlay = (data) => {
    const ready = !!(data && data.ready);
    if (!ready || data.video !== vc.videoKey) { vc.hidden.clear(); vc.masks.clear(); }
    vc.videoKey = ready ? data.video : null;
    vc.overlay = ready ? data : null;
    vc.clock = ready ? data.clock : { offset_s: 0, duration_s: 0 };
    vc.marker = null;
    // Chunks of objects that changed (another version) are of no use any more.
    const current = new Set(ready ? data.objects.filter((o) => o.masks).map((o) => o.masks) : []);
    for (const key of [...vc.masks.keys()]) if (!current.has(key.split("/")[0])) vc.masks.delete(key);
    vc.lastKey = "";
    vc.renderTimeline(vc.overlay ? vc.overlay.timeline : null);
  };

  // ---- masks, fetched by chunk near the playhead ----

  const chunkKey = (masks, chunk) => `${masks}/${chunk}`;

  function nearestFrame(times, t) {
    let lo = 0, hi = times.length - 1;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (times[mid] < t) lo = mid + 1; else hi = mid; }
    if (lo > 0 && Math.abs(times[lo - 1] - t) <= Math.abs(times[lo] - t)) lo -= 1;
    return lo;
  }

  // Ask for the chunks of the frame at `t` (and the next chunk, for playback) that are not here yet; one request at
  // a time, the latest wish first.
  function wantMasks(frame) {
    const o = vc.overlay;
    if (!o || !o.frame_times_s.length) return;
    const chunk = Math.floor(frame / o.chunk_frames), last = Math.floor((o.frame_times_s.length - 1) / o.chunk_frames);
    const missing = [];
    for (const obj of o.objects) {
      if (!obj.masks || vc.hidden.has(String(obj.id))) continue;
      for (const c of [chunk, chunk + 1]) {
        if (c <= last && !vc.masks.has(chunkKey(obj.masks, c))) missing.push({ id: obj.id, masks: obj.masks, chunk: c });
      }
    }
    // One request at a time (a lost one is given up after 5 s).
    if (!missing.length || (vc.asked && performance.now() - vc.asked.at < 5000)) return;
    vc.maskSeq = (vc.maskSeq || 0) + 1;
    vc.asked = { at: performance.now(), seq: vc.maskSeq };
    vc.pendingMasks = JSON.stringify({ video: o.video, seq: vc.maskSeq, want: missing });
    const button = document.querySelector("#masks-btn");
    if (button) button.click();
  }

  vc.addMasks = (data) => {
    if (data && vc.asked && data.seq === vc.asked.seq) vc.asked = null;
    if (!data || !vc.overlay || data.video !== vc.overlay.video) return;
    for (const part of data.chunks) {
      const frames = new Map();
      for (const f of part.frames) {
        let img = null;
        if (f.png) { img = new Image(); img.src = f.png; }
        frames.set(f.i, { img, box: f.box });
      }
      vc.masks.set(chunkKey(part.masks, part.chunk), frames);
    }
    vc.lastKey = "";
  };

  // ---- drawing ----

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

  const touch = () => window.matchMedia("(pointer: coarse)").matches;

  function ensureCanvas(v) {
    if (!vc.canvas) {
      const c = document.createElement("canvas");
      c.id = "vc-overlay";
      c.setAttribute("role", "application");
      c.setAttribute("aria-label", "Point at an object on the paused video: arrow keys move the pointer, Enter chooses");
      c.addEventListener("click", onCanvasClick);
      c.addEventListener("keydown", onCanvasKey);
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

  // Draws the frame's masks (and their labels); false while a mask of it is still on its way.
  function drawMasks(ctx, o, frame, box, sx, sy) {
    let complete = true;
    const chunk = Math.floor(frame / o.chunk_frames);
    const labels = [];
    for (const obj of o.objects) {
      if (!obj.masks || vc.hidden.has(String(obj.id))) continue;
      const frames = vc.masks.get(chunkKey(obj.masks, chunk));
      if (!frames) { complete = false; continue; }
      const f = frames.get(frame);
      if (!f || !f.img) continue;
      if (!f.img.complete) { complete = false; continue; }
      ctx.drawImage(f.img, box.x, box.y, box.w, box.h);
      labels.push([obj, f.box]);
    }
    for (const [obj, b] of labels) pill(ctx, obj.label, box.x + b[0] * sx, box.y + b[1] * sy - 20, obj.color, inkFor(obj.color));
    return complete;
  }

  // Boxes the model gave for objects without masks (masks off), at their time.
  function drawBoxes(ctx, o, t, box, sx, sy) {
    for (const b of o.boxes) {
      if (vc.hidden.has(String(b.id)) || Math.abs(b.t_s - t) > o.step_s / 2) continue;
      const x = box.x + b.x1 * sx, y = box.y + b.y1 * sy, w = (b.x2 - b.x1) * sx, h = (b.y2 - b.y1) * sy;
      ctx.lineWidth = 4; ctx.strokeStyle = "rgba(255,255,255,0.85)"; ctx.strokeRect(x, y, w, h);
      ctx.lineWidth = 2; ctx.strokeStyle = b.color; ctx.strokeRect(x, y, w, h);
      pill(ctx, b.label, x, y - 20, b.color, inkFor(b.color));
    }
  }

  function draw(v) {
    if (!v) { if (vc.canvas) vc.canvas.style.display = "none"; return; }
    const c = ensureCanvas(v);
    c.style.display = "block";
    const box = contentBox(v);
    const pointing = !!(vc.overlay && box && v.paused);
    c.style.pointerEvents = pointing ? "auto" : "none";
    c.classList.toggle("vc-pointing", pointing);
    c.tabIndex = pointing ? 0 : -1;
    syncToggles();
    const o = vc.overlay;
    const t = vc.appTime(v);
    const frame = o && o.frame_times_s.length ? nearestFrame(o.frame_times_s, t) : -1;
    if (frame >= 0) wantMasks(frame);
    const captions = !!(vc.captionsShowing && vc.captionsShowing());
    const key = [t, c.width, c.height, o ? o.version : -1, [...vc.hidden].join(","), vc.masks.size,
                 JSON.stringify(vc.marker), pointing, box ? box.w : 0, captions].join("|");
    if (key === vc.lastKey) return;
    const dpr = window.devicePixelRatio || 1, ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, c.width, c.height);
    let complete = true;
    if (o && box) {
      const sx = box.w / o.width, sy = box.h / o.height;
      if (frame >= 0) {
        complete = drawMasks(ctx, o, frame, box, sx, sy);
        if (complete) vc.maskDrawn = { t, frame, at: performance.now() };
      }
      drawBoxes(ctx, o, t, box, sx, sy);
      for (const p of o.points) {
        if (vc.hidden.has(String(p.id)) || Math.abs(p.t_s - t) > o.step_s / 2) continue;
        const x = box.x + p.x * sx, y = box.y + p.y * sy;
        ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.fillStyle = "#fff"; ctx.fill();
        ctx.beginPath(); ctx.arc(x, y, 5, 0, 2 * Math.PI); ctx.fillStyle = p.color; ctx.fill();
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
      const hint = touch() ? "Paused: tap an object to ask about it" : "Paused: click an object to ask about it";
      ctx.font = "600 12px ui-sans-serif, system-ui, sans-serif";
      const width = ctx.measureText(hint).width + 12, x = box.x + (box.w - width) / 2;
      // Above the player's controls; at the top while captions show (they are at the bottom): between the captions'
      // toggle (top left) and the player's clear button (top right), or under them when there is no room.
      let y = box.y + box.h - 72;
      const toggle = captions && c.parentElement.querySelector(".vc-cc");
      if (toggle && !toggle.hidden) {
        const room = x >= toggle.offsetLeft + toggle.offsetWidth + 6 - c.offsetLeft && x + width <= box.x + box.w - 44;
        y = room ? box.y + 10 : toggle.offsetTop + toggle.offsetHeight + 6 - c.offsetTop;
      }
      pill(ctx, hint, x, y, "rgba(17,24,39,0.78)", "#fff");
    }
    vc.drawn += 1;
    vc.lastKey = complete ? key : "";
  }

  // ---- pointing at an object: a click (or tap), or the keyboard ----

  function point(fx, fy) {
    const v = vc.video();
    if (!v || !vc.overlay) return;
    const t = vc.appTime(v);
    vc.marker = { fx, fy, t };
    vc.pendingPoint = JSON.stringify({ t, fx, fy });
    const button = document.querySelector("#point-btn");
    if (button) button.click();
  }

  function onCanvasClick(e) {
    const v = vc.video();
    const box = v && contentBox(v);
    if (!box || !vc.overlay) return;
    const r = vc.canvas.getBoundingClientRect();
    const px = e.clientX - r.left - box.x, py = e.clientY - r.top - box.y;
    if (px < 0 || py < 0 || px > box.w || py > box.h) return;
    e.preventDefault(); e.stopPropagation();
    point(px / box.w, py / box.h);
  }

  // Tab reaches the paused video's overlay: the arrow keys move a pointer (Shift: in bigger steps), Enter or Space
  // points at what is under it, Escape takes the pointer away.
  function onCanvasKey(e) {
    const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (!vc.overlay) return;
    if (e.key in moves) {
      const step = e.shiftKey ? 0.1 : 0.02, [dx, dy] = moves[e.key];
      const at = vc.cursor || { fx: 0.5, fy: 0.5 };
      vc.cursor = { fx: Math.min(Math.max(at.fx + dx * step, 0), 1), fy: Math.min(Math.max(at.fy + dy * step, 0), 1) };
      vc.marker = { ...vc.cursor, t: null };
      e.preventDefault();
    } else if ((e.key === "Enter" || e.key === " ") && vc.cursor) {
      e.preventDefault();
      point(vc.cursor.fx, vc.cursor.fy);
    } else if (e.key === "Escape") {
      vc.cursor = null; vc.marker = null;
    }
    vc.lastKey = "";
  }

  // ---- fullscreen: the player's container (video, overlay and controls), not the <video> alone ----

  const fullscreenTarget = (v) => v.closest("#player .wrap") || v.parentElement;

  function toggleFullscreen(e) {
    const v = vc.video();
    if (!v) return;
    e.preventDefault(); e.stopImmediatePropagation();
    if (document.fullscreenElement) document.exitFullscreen();
    else fullscreenTarget(v).requestFullscreen().catch((err) => console.error("vidchat fullscreen", err));
  }
  const fullscreenButton = (e) => e.target.closest && e.target.closest('#player [aria-label="full-screen"]');
  document.addEventListener("click", (e) => { if (fullscreenButton(e)) toggleFullscreen(e); }, true);
  document.addEventListener("keydown", (e) => {
    if ((e.key === "Enter" || e.key === " ") && fullscreenButton(e)) toggleFullscreen(e);
  }, true);
  document.addEventListener("fullscreenchange", () => { vc.lastKey = ""; });

  // Object checkboxes: show or hide an object's mask, in this page only.
  document.addEventListener("change", (e) => {
    const box = e.target;
    if (!box.classList || !box.classList.contains("vc-toggle")) return;
    if (box.checked) vc.hidden.delete(box.value); else vc.hidden.add(box.value);
    vc.lastKey = "";
  }, true);

  vc.frameHooks.push(draw);
})();
