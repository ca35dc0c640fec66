// The timeline under the player (drawn from the overlay data's `timeline`): rows as wide as the player: the times
// the conversation mentions (in message order, each titled with its sentence), one lane per object filled where it
// is seen, and the heat strip of the visual tokens the latest answer kept per temporal patch. Every clickable mark
// carries data-t (app seconds) and seeks the player there (core.js); a playhead follows playback.
(() => {
  const vc = window.vidchat;
  const percent = (t, d) => `${(100 * Math.min(Math.max(t / d, 0), 1)).toFixed(3)}%`;

  function track(row, name, color) {
    const t = vc.el("div", "vc-tl-track");
    const label = vc.el("span", "vc-tl-name");
    label.textContent = name;
    if (color) label.style.color = color;
    t.append(label, vc.el("div", "vc-tl-head"));
    row.appendChild(t);
    return t;
  }

  vc.renderTimeline = (tl) => {
    const root = document.querySelector("#timeline");
    if (!root) return;
    let box = root.querySelector(".vc-tl");
    if (!box) { box = vc.el("div", "vc-tl"); root.appendChild(box); }
    box.textContent = "";
    const empty = root.querySelector(".vc-timeline-empty");
    if (empty) empty.style.display = tl ? "none" : "";
    vc.timeline = tl;
    if (!tl) return;
    const d = tl.duration_s || 1;

    const marks = track(box.appendChild(vc.el("div", "vc-tl-row vc-tl-marks")), tl.marks.length ? "Answers" : "Times in answers appear here");
    tl.marks.forEach((m, i) => {
      const span = m.end_s > m.t;
      const mark = vc.el("button", span ? "vc-tl-mark vc-tl-span" : "vc-tl-mark", {
        type: "button", "data-t": m.t, "data-order": i, "data-message": m.message, title: m.sentence,
      });
      mark.style.left = percent(m.t, d);
      if (span) mark.style.width = percent(m.end_s - m.t, d);
      marks.appendChild(mark);
    });

    for (const lane of tl.lanes) {
      const row = box.appendChild(vc.el("div", "vc-tl-row vc-tl-lane", { "data-object": lane.id }));
      const t = track(row, lane.label, lane.color);
      for (const run of lane.runs) {
        const bar = vc.el("div", "vc-tl-run", { "data-t": run.t_s, title: `${lane.label}: seen here` });
        bar.style.left = percent(run.start_s, d);
        bar.style.width = percent(run.end_s - run.start_s, d);
        bar.style.background = lane.color;
        t.appendChild(bar);
      }
    }

    const heat = tl.heat;
    const row = box.appendChild(vc.el("div", "vc-tl-row vc-tl-heat", { "data-on": heat ? String(heat.on) : "none" }));
    const strip = track(row, "Looked at");
    if (heat) {
      const most = Math.max(1, ...heat.steps.map((s) => s.kept));
      heat.steps.forEach((step, i) => {
        const start = step.frames_s[0], next = heat.steps[i + 1];
        const end = next ? next.frames_s[0] : d;
        const cell = vc.el("div", "vc-tl-cell", {
          "data-t": start, "data-kept": step.kept, "data-total": step.total,
          title: `${step.kept} of ${step.total} visual tokens kept`,
        });
        cell.style.left = percent(start, d);
        cell.style.width = percent(end - start, d);
        cell.style.opacity = String(0.12 + 0.88 * (step.kept / most));
        strip.appendChild(cell);
      });
    }
    const caption = box.appendChild(vc.el("div", "vc-tl-caption"));
    caption.textContent = heat ? heat.caption : "Ask a question to see which parts of the video the model looks at.";
    vc.playhead = "";
  };

  function movePlayhead(v) {
    if (!vc.timeline) return;
    const left = percent(vc.appTime(v), vc.timeline.duration_s || 1);
    if (left === vc.playhead) return;
    vc.playhead = left;
    for (const head of document.querySelectorAll("#timeline .vc-tl-head")) head.style.left = left;
  }

  vc.frameHooks.push((v) => { if (v) movePlayhead(v); });
})();
