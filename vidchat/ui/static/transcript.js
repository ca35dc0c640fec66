// The video's words on the page, from the transcript data the server sends (`vc.setTranscript`, see
// vidchat/ui/transcript.py): while they are made, how far that got; then the transcript panel in #transcript (every
// line with its time as a link that seeks, the line being said highlighted as the video plays and kept in view, a
// search box that filters the lines), the captions on the player (a WebVTT <track> made from the server's text,
// which is on the player's clock already, and a toggle button on the player), and the timeline's speech lane
// (`vc.speech`, drawn by timeline.js).
//
// Thousands of lines: the rows are made once per transcript, rows out of view are not laid out (content-visibility
// in transcript.css), the line being said is found by binary search, and only the rows that change are touched.
(() => {
  const vc = window.vidchat;
  Object.assign(vc, { transcript: null, speech: null, captionsOn: true });
  // rows: the <li> of every line; lower: each line's text as the search compares it; current: the row highlighted;
  // userAt: when the person last scrolled the list themselves.
  const my = { rows: [], lower: [], current: -1, query: "", userAt: -Infinity, captionsUrl: null,
    lines: null, key: null, searchQueued: false };

  const languageName = (code) => {
    if (!code) return "";
    try {
      const name = new Intl.DisplayNames(["en"], { type: "language" }).of(code);
      return name && name !== code ? name : code;
    } catch (err) { return code; }
  };
  const plural = (n, one, many) => `${n.toLocaleString("en")} ${n === 1 ? one : many}`;

  // ---- the panel's frame, made once (its text comes from the data; nothing of the data is parsed as HTML) ----

  function panel() {
    const root = document.querySelector("#transcript");
    if (!root) return null;
    let box = root.querySelector(".vc-tr");
    if (box) return box;
    box = vc.el("section", "vc-tr", { "aria-labelledby": "vc-tr-title" });
    const head = box.appendChild(vc.el("div", "vc-tr-head"));
    const title = head.appendChild(vc.el("h2", "vc-tr-title", { id: "vc-tr-title" }));
    title.textContent = "Transcript";
    head.appendChild(vc.el("span", "vc-tr-meta"));
    const progress = box.appendChild(vc.el("div", "vc-tr-progress"));
    progress.appendChild(vc.el("progress", "", { max: "1", value: "0", "aria-labelledby": "vc-tr-msg" }));
    progress.appendChild(vc.el("span", "vc-tr-msg", { id: "vc-tr-msg" }));
    const find = box.appendChild(vc.el("div", "vc-tr-find"));
    find.appendChild(vc.el("input", "vc-tr-q", {
      type: "search", "aria-label": "Search the transcript", placeholder: "Search the transcript",
      autocomplete: "off", spellcheck: "false", "aria-controls": "vc-tr-lines",
    }));
    find.appendChild(vc.el("span", "vc-tr-count", { "aria-live": "polite" }));
    box.appendChild(vc.el("ol", "vc-tr-lines", { id: "vc-tr-lines", "aria-label": "Transcript lines" }));
    box.appendChild(vc.el("p", "vc-tr-note"));
    box.appendChild(vc.el("p", "vc-tr-live vc-sr", { "aria-live": "polite" }));
    root.appendChild(box);
    return box;
  }

  const part = (box, cls) => box.querySelector(`.${cls}`);

  // ---- the data ----

  vc.setTranscript = (data) => {
    if (!data || !data.state) return;
    const box = panel();
    const placeholder = document.querySelector("#transcript .vc-tr-empty");
    const idle = data.state === "idle";
    if (placeholder) placeholder.style.display = idle ? "" : "none";
    const sameVideo = vc.transcript && vc.transcript.video === data.video;
    if (data.state === "pending" && sameVideo && vc.transcript.lines) {
      // Being made again (another subtitle track): the lines so far stay until the new ones come, dimmed.
      vc.transcript = { ...vc.transcript, state: "pending", progress: data.progress };
    } else {
      vc.transcript = idle ? null : data;
    }
    const words = vc.transcript;
    setCaptions(words);
    const speech = words ? { video: words.video, state: words.state, runs: words.lane || [] } : null;
    const redraw = JSON.stringify(speech) !== JSON.stringify(vc.speech);
    vc.speech = speech;
    if (redraw && vc.timeline && vc.renderTimeline) vc.renderTimeline(vc.timeline);
    if (box) show(box, words);
  };

  function show(box, words) {
    box.hidden = !words;
    if (!words) { setLines(box, null); return; }
    const pending = words.state === "pending";
    const progress = part(box, "vc-tr-progress");
    progress.hidden = !pending;
    if (pending) {
      progress.querySelector("progress").value = words.progress.fraction;
      part(box, "vc-tr-msg").textContent =
        `${words.progress.message} (${Math.round(100 * words.progress.fraction)} %)`;
    }
    box.classList.toggle("vc-tr-stale", pending && !!words.lines);
    if (words.lines !== my.lines) setLines(box, words);
    const meta = part(box, "vc-tr-meta");
    if (!words.lines) {
      meta.textContent = pending ? "being made…" : "none";
    } else {
      const source = words.source === "subtitles" ? "Subtitles" : "Recognized speech";
      const parts = [source, languageName(words.language), plural(words.lines.length, "line", "lines")];
      if (words.tracks && words.tracks.length > 1) {
        parts.push(`track ${words.tracks.findIndex((t) => t[1] === words.track) + 1} of ${words.tracks.length}`);
      }
      meta.textContent = parts.filter(Boolean).join(" · ");
    }
    const note = part(box, "vc-tr-note");
    note.textContent = words.note || "";
    note.hidden = !words.note;
    note.classList.toggle("vc-tr-none", !pending && !(words.lines && words.lines.length));
    part(box, "vc-tr-find").hidden = !(words.lines && words.lines.length);
  }

  function setLines(box, words) {
    const lines = words && words.lines && words.lines.length ? words.lines : null;
    my.lines = words ? words.lines : null;
    my.current = -1;
    const list = part(box, "vc-tr-lines");
    list.hidden = !lines;
    if (!lines) {
      list.replaceChildren();
      my.rows = []; my.lower = [];
      return;
    }
    const rows = new Array(lines.length), lower = new Array(lines.length);
    const all = document.createDocumentFragment();
    lines.forEach(([start, , text], i) => {
      const row = vc.el("li", "vc-tr-line", { "data-i": i });
      const time = vc.el("a", "vc-tr-time", { href: `#t=${start.toFixed(1)}`, "data-t": start, tabindex: i ? "-1" : "0" });
      time.textContent = vc.formatTime(start);
      const said = vc.el("span", "vc-tr-text");
      said.textContent = text;
      row.append(time, said);
      all.appendChild(row);
      rows[i] = row;
      // What the search compares: the line's lower case with its line breaks as spaces (the same length as the text,
      // so that a match's place in it is its place in the text).
      lower[i] = text.replace(/\s/g, " ").toLowerCase();
    });
    list.replaceChildren(all);
    list.scrollTop = 0;
    my.rows = rows; my.lower = lower;
    const live = part(box, "vc-tr-live");
    live.textContent = `Transcript ready: ${plural(lines.length, "line", "lines")}.`;
    search(part(box, "vc-tr-q").value);
  }

  // ---- search ----
  // Matches are painted with the CSS Custom Highlight API (`::highlight(vc-search)`): ranges over the lines' text,
  // no change to the rows themselves, so a search that matches thousands of lines costs little.

  const highlights = window.CSS && CSS.highlights && window.Highlight ? CSS.highlights : null;

  // The ranges of `needle` in line i's text (none where lower case changed the text's length).
  function matches(i, needle, ranges) {
    const lower = my.lower[i];
    if (lower.length !== my.lines[i][2].length) return;
    const text = my.rows[i].querySelector(".vc-tr-text").firstChild;
    if (!text) return;
    for (let at = lower.indexOf(needle); at >= 0; at = lower.indexOf(needle, at + needle.length)) {
      const range = new Range();
      range.setStart(text, at);
      range.setEnd(text, at + needle.length);
      ranges.push(range);
    }
  }

  function search(query) {
    const box = panel();
    if (!box || !my.rows.length) return;
    my.query = query;
    const needle = query.replace(/\s+/g, " ").trim().toLowerCase();
    const ranges = [];
    let shown = 0;
    for (let i = 0; i < my.rows.length; i++) {
      const hit = !needle || my.lower[i].includes(needle);
      if (my.rows[i].hidden === hit) my.rows[i].hidden = !hit;
      if (!hit) continue;
      shown += 1;
      if (needle && highlights) matches(i, needle, ranges);
    }
    if (highlights) {
      const painted = new Highlight();
      for (const range of ranges) painted.add(range);
      highlights.set("vc-search", painted);
    }
    const total = my.rows.length, count = part(box, "vc-tr-count");
    count.textContent = !needle ? "" : shown
      ? `${shown.toLocaleString("en")} of ${plural(total, "line", "lines")}`
      : `No line has “${query.trim()}”`;
    count.classList.toggle("vc-tr-nothing", !!needle && !shown);
    box.classList.toggle("vc-tr-searching", !!needle);
    // The list's one Tab stop is on a line that shows.
    const stop = part(box, "vc-tr-lines").querySelector(".vc-tr-time[tabindex='0']");
    if (!stop || stop.closest("li").hidden) {
      const first = my.rows.find((row) => !row.hidden);
      if (first) moveStop(first.querySelector(".vc-tr-time"), false);
    }
  }

  document.addEventListener("input", (e) => {
    if (!e.target.classList || !e.target.classList.contains("vc-tr-q") || my.searchQueued) return;
    my.searchQueued = true; // at most one search per frame, however fast the typing
    requestAnimationFrame(() => { my.searchQueued = false; search(e.target.value); });
  });

  // ---- the keyboard: the list is one Tab stop; arrows, Home, End, Page keys move between the lines that show ----

  function moveStop(link, focus = true) {
    const list = link.closest(".vc-tr-lines");
    for (const other of list.querySelectorAll(".vc-tr-time[tabindex='0']")) other.tabIndex = -1;
    link.tabIndex = 0;
    if (focus) link.focus();
  }

  document.addEventListener("keydown", (e) => {
    if (e.target.classList && e.target.classList.contains("vc-tr-q") && e.key === "Escape" && e.target.value) {
      e.preventDefault();
      e.target.value = "";
      search("");
      return;
    }
    const link = e.target.closest && e.target.closest("#transcript .vc-tr-time");
    if (!link) return;
    const steps = { ArrowDown: 1, ArrowUp: -1, PageDown: 10, PageUp: -10, Home: -Infinity, End: Infinity };
    if (!(e.key in steps)) return;
    e.preventDefault();
    my.userAt = performance.now();
    const shown = my.rows.filter((row) => !row.hidden);
    const at = shown.indexOf(link.closest("li"));
    const to = Math.max(0, Math.min(shown.length - 1, at + steps[e.key]));
    if (shown[to]) moveStop(shown[to].querySelector(".vc-tr-time"));
  });

  // A click on a line's words seeks too (unless it ends a text selection); its time is a link (core.js seeks).
  document.addEventListener("click", (e) => {
    const said = e.target.closest && e.target.closest("#transcript .vc-tr-text");
    if (!said || String(window.getSelection && window.getSelection()).length) return;
    const link = said.closest("li").querySelector(".vc-tr-time");
    moveStop(link, false);
    vc.seek(parseFloat(link.dataset.t));
  });

  // The person scrolls the list: it does not follow the video for a while.
  for (const type of ["wheel", "touchmove", "pointerdown"]) {
    document.addEventListener(type, (e) => {
      if (e.target.closest && e.target.closest("#transcript .vc-tr-lines")) my.userAt = performance.now();
    }, { passive: true, capture: true });
  }

  // ---- the line being said: highlighted, and kept in view while the person does not scroll the list ----

  function lineAt(t) {
    const lines = my.lines;
    let lo = 0, hi = lines.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (lines[mid][0] <= t) lo = mid + 1; else hi = mid; }
    // The latest line started at or before t that is still being said (lines may overlap).
    for (let i = lo - 1; i >= 0 && i >= lo - 4; i--) if (t < lines[i][1]) return i;
    return -1;
  }

  function follow(v) {
    if (!v || !my.rows.length) return;
    const now = lineAt(vc.appTime(v));
    if (now === my.current) return;
    if (my.current >= 0 && my.rows[my.current]) {
      my.rows[my.current].classList.remove("vc-tr-now");
      my.rows[my.current].removeAttribute("aria-current");
    }
    my.current = now;
    if (now < 0) return;
    const row = my.rows[now];
    row.classList.add("vc-tr-now");
    row.setAttribute("aria-current", "true");
    const list = row.parentElement;
    if (row.hidden || performance.now() - my.userAt < 4000) return;
    const top = row.offsetTop, bottom = top + row.offsetHeight;
    if (top < list.scrollTop || bottom > list.scrollTop + list.clientHeight) {
      list.scrollTop = Math.max(0, top - list.clientHeight / 3);
    }
  }

  // ---- captions on the player ----

  function setCaptions(words) {
    const text = words && words.captions;
    const key = text ? `${words.video}|${words.track}|${text.length}|${words.lines.length}` : null;
    if (key === my.key) return;
    my.key = key;
    if (my.captionsUrl) URL.revokeObjectURL(my.captionsUrl);
    my.captionsUrl = text ? URL.createObjectURL(new Blob([text], { type: "text/vtt" })) : null;
    my.captionsLanguage = (words && words.language) || "";
  }

  function captionsButton(v) {
    let button = vc.captionsButton;
    if (!button) {
      button = vc.captionsButton = vc.el("button", "vc-cc", {
        type: "button", "aria-pressed": "true", "aria-label": "CC captions", title: "Captions (C)",
      });
      button.textContent = "CC";
      button.addEventListener("click", (e) => { e.preventDefault(); e.stopPropagation(); toggleCaptions(); });
    }
    const parent = v.parentElement;
    if (button.parentElement !== parent) {
      if (getComputedStyle(parent).position === "static") parent.style.position = "relative";
      parent.appendChild(button);
    }
    button.hidden = !my.captionsUrl;
    const pressed = String(vc.captionsOn);
    if (button.getAttribute("aria-pressed") !== pressed) button.setAttribute("aria-pressed", pressed);
  }

  // Whether captions are on the player now (overlay.js moves its hint out of their way).
  vc.captionsShowing = () => !!my.captionsUrl && vc.captionsOn;

  function toggleCaptions() {
    vc.captionsOn = !vc.captionsOn;
    const v = vc.video();
    if (v) attachCaptions(v);
  }

  // The <track> of the current captions on the <video> (Gradio makes the element anew at times: put back when it
  // does), showing or hidden as the toggle says.
  function attachCaptions(v) {
    let track = v.querySelector("track.vc-captions");
    if (!my.captionsUrl) {
      if (track) track.remove();
    } else {
      if (!track || track.getAttribute("src") !== my.captionsUrl) {
        if (track) track.remove();
        const language = my.captionsLanguage;
        track = vc.el("track", "vc-captions", {
          kind: "captions", src: my.captionsUrl, srclang: language || "und",
          label: languageName(language) || "Captions",
        });
        v.appendChild(track);
      }
      const mode = vc.captionsOn ? "showing" : "hidden";
      if (track.track.mode !== mode) track.track.mode = mode;
    }
    captionsButton(v);
  }

  // C toggles the captions, as in most players (not while typing).
  document.addEventListener("keydown", (e) => {
    if (e.key !== "c" && e.key !== "C") return;
    if (e.ctrlKey || e.metaKey || e.altKey || !my.captionsUrl) return;
    const t = e.target;
    if (t.closest && (t.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']"))) return;
    toggleCaptions();
  });

  vc.frameHooks.push((v) => {
    if (!v) return;
    attachCaptions(v);
    follow(v);
  });
})();
