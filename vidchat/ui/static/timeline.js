// The timeline under the player (drawn from the overlay data's `timeline`): one row per kind of thing, its name in a
// column of its own beside a track as wide as the rest, so that no name covers a mark near the start: the times the
// conversation mentions (in message order), where someone speaks (the transcript's lines, `vc.speech`), one lane per
// object filled where it is seen, the heat strip of the visual tokens the latest answer kept per temporal patch, and the
// parts of the video the latest answer looked at densely (its zoom windows), when it did.
// Every mark is a button named with its time, carries data-t (app seconds) and seeks the player there (the delegated
// click of core.js; Enter and Space click a button). Each track is one Tab stop, its marks reached with the arrow
// keys; a playhead follows playback.
(() => {
  const vc = window.vidchat;
  const percent = (t, d) => `${(100 * Math.min(Math.max(t / d, 0), 1)).toFixed(3)}%`;

  // `12.4` → "00:12.4", `3723.5` → "1:02:03.5": the form of vidchat.grounding.format_timestamp, whose tenths are
  // rounded half to even like Python's round().
  vc.formatTime = (t) => {
    const x = Math.max(0, t) * 10;
    let tenths = Math.round(x);
    if (x - Math.floor(x) === 0.5 && tenths % 2) tenths -= 1;
    const hours = Math.floor(tenths / 36000), minutes = Math.floor((tenths % 36000) / 600), rest = tenths % 600;
    const two = (n) => String(n).padStart(2, "0");
    const seconds = `${two(Math.floor(rest / 10))}.${rest % 10}`;
    return hours ? `${hours}:${two(minutes)}:${seconds}` : `${two(minutes)}:${seconds}`;
  };
  const when = (start, end) =>
    end > start ? `${vc.formatTime(start)} to ${vc.formatTime(end)}` : vc.formatTime(start);

  // A track's marks from left to right (the answers' marks are drawn in message order).
  const inTimeOrder = (track) =>
    [...track.querySelectorAll(":scope > [data-t]")].sort((a, b) => parseFloat(a.dataset.t) - parseFloat(b.dataset.t));

  // A row: its name, and the track its marks go in (a toolbar: one Tab stop, arrows between the marks).
  function row(box, cls, name, what, color, attrs = {}) {
    const r = box.appendChild(vc.el("div", `vc-tl-row ${cls}`, attrs));
    const label = vc.el("span", "vc-tl-name", { title: name });
    label.textContent = name;
    if (color) label.style.color = color;
    const track = vc.el("div", "vc-tl-track", { role: "toolbar", "aria-label": `${name}: ${what}` });
    track.appendChild(vc.el("div", "vc-tl-head"));
    r.append(label, track);
    return track;
  }

  function mark(track, cls, t, name, attrs) {
    const button = vc.el("button", cls, { type: "button", tabindex: "-1", "data-t": t, "aria-label": name, ...attrs });
    if (!attrs.title) button.title = name;
    track.appendChild(button);
    return button;
  }

  vc.renderTimeline = (tl) => {
    const root = document.querySelector("#timeline");
    if (!root) return;
    let box = root.querySelector(".vc-tl");
    if (!box) { box = vc.el("div", "vc-tl"); root.appendChild(box); }
    // The mark that has the focus keeps it when the timeline is drawn again (the same row, the same place).
    const focused = box.contains(document.activeElement) && document.activeElement.closest(".vc-tl-track > [data-t]");
    const keep = focused && {
      row: focused.closest(".vc-tl-row").getAttribute("data-row"),
      index: inTimeOrder(focused.parentElement).indexOf(focused),
    };
    box.textContent = "";
    const empty = root.querySelector(".vc-timeline-empty");
    if (empty) empty.style.display = tl ? "none" : "";
    vc.timeline = tl;
    if (!tl) return;
    const d = (vc.timelineEnd = vc.end());

    const marks = row(box, "vc-tl-marks", "Answers", "times in the conversation", null, { "data-row": "marks" });
    if (!tl.marks.length) {
      const hint = marks.appendChild(vc.el("span", "vc-tl-hint"));
      hint.textContent = "Times in answers appear here";
    }
    tl.marks.forEach((m, i) => {
      const span = m.end_s > m.t;
      const cls = span ? "vc-tl-mark vc-tl-span" : "vc-tl-mark";
      const b = mark(marks, cls, m.t, `${when(m.t, m.end_s)}: ${m.sentence}`, {
        "data-order": i, "data-message": m.message, title: m.sentence,
      });
      b.style.left = percent(m.t, d);
      if (span) b.style.width = percent(m.end_s - m.t, d);
    });

    // Where someone speaks (the transcript's lines, close ones merged: transcript.js's `vc.speech`), while the
    // transcript is made and once it has lines.
    const speech = vc.speech;
    if (speech && speech.video === vc.videoKey && (speech.state === "pending" || speech.runs.length)) {
      const said = row(box, "vc-tl-speech", "Speech", "where someone speaks", null, { "data-row": "speech" });
      if (!speech.runs.length) {
        const hint = said.appendChild(vc.el("span", "vc-tl-hint"));
        hint.textContent = "Reading the video's words…";
      }
      for (const run of speech.runs) {
        const more = run.lines > 1 ? ` (${run.lines} lines)` : "";
        const bar = mark(said, "vc-tl-said", run.t_s, `Speech ${when(run.start_s, run.end_s)}: ${run.text}${more}`, {});
        bar.style.left = percent(run.start_s, d);
        bar.style.width = percent(run.end_s - run.start_s, d);
      }
    }

    for (const lane of tl.lanes) {
      const track = row(box, "vc-tl-lane", lane.label, "where it is seen", lane.color, {
        "data-object": lane.id, "data-row": `object-${lane.id}`,
      });
      for (const run of lane.runs) {
        const bar = mark(track, "vc-tl-run", run.t_s, `${lane.label} seen ${when(run.start_s, run.end_s)}`, {});
        bar.style.left = percent(run.start_s, d);
        bar.style.width = percent(run.end_s - run.start_s, d);
        bar.style.background = lane.color;
      }
    }

    const heat = tl.heat;
    const strip = row(box, "vc-tl-heat", "Looked at", "visual tokens the latest answer kept, by time", null, {
      "data-on": heat ? String(heat.on) : "none", "data-row": "heat",
    });
    if (heat) {
      const most = Math.max(1, ...heat.kept_per_step);
      heat.kept_per_step.forEach((kept, i) => {
        const start = heat.starts_s[i], end = i + 1 < heat.starts_s.length ? heat.starts_s[i + 1] : d;
        const step = { kept, total: heat.per_step };
        const name = `Looked at ${when(start, end)}: ${step.kept} of ${step.total} visual tokens kept`;
        const cell = mark(strip, "vc-tl-cell", start, name, { "data-kept": step.kept, "data-total": step.total });
        cell.style.left = percent(start, d);
        cell.style.width = percent(end - start, d);
        cell.style.opacity = String(0.12 + 0.88 * (step.kept / most));
      });
    }
    // The zoom windows: each a band over its span, titled with its rate and frames (the server's words).
    if (tl.zoom.length) {
      const closer = row(box, "vc-tl-closer", "Closer", "parts the latest answer looked at densely", null, {
        "data-row": "zoom",
      });
      for (const look of tl.zoom) {
        const band = mark(closer, "vc-tl-zoom", look.start_s, look.title, {});
        band.style.left = percent(look.start_s, d);
        band.style.width = percent(look.end_s - look.start_s, d);
      }
    }
    const caption = box.appendChild(vc.el("div", "vc-tl-caption"));
    caption.textContent = heat ? heat.caption : "Ask a question to see which parts of the video the model looks at.";

    // One Tab stop per track: its earliest mark, or the one that had the focus.
    for (const track of box.querySelectorAll(".vc-tl-track")) {
      const first = inTimeOrder(track)[0];
      if (first) first.tabIndex = 0;
    }
    if (keep) {
      const track = box.querySelector(`.vc-tl-row[data-row="${keep.row}"] .vc-tl-track`);
      const items = track ? inTimeOrder(track) : [];
      const target = items[Math.min(keep.index, items.length - 1)];
      if (target) moveFocus(target);
    }
    vc.playhead = "";
  };

  function moveFocus(target) {
    for (const other of target.parentElement.querySelectorAll(":scope > [data-t]")) other.tabIndex = -1;
    target.tabIndex = 0;
    target.focus();
  }

  // Arrow keys, Home and End move between the marks of a track, from left to right.
  document.addEventListener("keydown", (e) => {
    const item = e.target.closest && e.target.closest("#timeline .vc-tl-track > [data-t]");
    if (!item) return;
    const items = inTimeOrder(item.parentElement);
    const i = items.indexOf(item);
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: items.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    moveFocus(items[Math.max(0, Math.min(to, items.length - 1))]);
  });

  function movePlayhead(v) {
    if (!vc.timeline) return;
    // The player learnt its duration after the timeline was drawn: drawn again to the player's end.
    if (vc.end() !== vc.timelineEnd) vc.renderTimeline(vc.timeline);
    const left = percent(vc.appTime(v), vc.timelineEnd);
    if (left === vc.playhead) return;
    vc.playhead = left;
    for (const head of document.querySelectorAll("#timeline .vc-tl-head")) head.style.left = left;
  }

  vc.frameHooks.push((v) => { if (v) movePlayhead(v); });
})();
