// The page's script, shared part: the `window.vidchat` namespace, the player's clock, seeking, and one
// animation-frame loop that the other scripts (overlay.js, timeline.js, page.js, upload.js) hook into.
// Listeners are delegated: Gradio re-renders the chat's messages and the player's <video>.
//
// Two clocks: the app counts seconds from the video's first frame ("app time", every `t` and `data-t` on the
// page); the browser counts from the played file's own zero. `vc.clock.offset_s` (from the overlay data) is where
// the first frame is on the browser's clock: a copy cut from a stream or an MPEG-TS starts seconds after zero.
(() => {
  if (window.vidchat) return;
  const vc = (window.vidchat = { clock: { offset_s: 0, duration_s: 0 }, frameHooks: [] });

  vc.video = () => document.querySelector("#player video");

  // The app time the player shows now (seconds after the first frame, never before it).
  vc.appTime = (v) => Math.max(0, v.currentTime - vc.clock.offset_s);

  // Show the frame at app time `t`: the one whose presentation interval holds it. A millisecond past `t`, so that
  // a time on a frame's boundary (a 10 fps frame at 2.0 s) is not rounded onto the frame before it.
  vc.seek = (t) => {
    const v = vc.video();
    if (!v || !isFinite(t)) return;
    v.currentTime = Math.max(0, t) + vc.clock.offset_s + 0.001;
    const r = v.getBoundingClientRect();
    if (r.bottom < 0 || r.top > window.innerHeight) v.scrollIntoView({ behavior: "smooth", block: "center" });
  };

  // Where the timeline ends, in app time: where the player ends once it knows (a player may count the last frame's
  // length or not), else the video's duration as the server measured it.
  vc.end = () => {
    const v = vc.video();
    const played = v && isFinite(v.duration) && v.duration > 0 ? v.duration - vc.clock.offset_s : 0;
    return played > 0 ? played : vc.clock.duration_s || 1;
  };

  vc.el = (tag, cls, attrs = {}) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  };

  // Time links in the chat and the object list, and the timeline's marks: seek the player (a span seeks to its
  // start).
  document.addEventListener("click", (e) => {
    const link = e.target.closest && e.target.closest('a[href^="#t="], #timeline [data-t]');
    if (!link) return;
    e.preventDefault(); e.stopPropagation();
    vc.seek(parseFloat(link.hasAttribute("data-t") ? link.getAttribute("data-t") : link.getAttribute("href").slice(3)));
  }, true);

  function loop() {
    const v = vc.video();
    for (const hook of vc.frameHooks) {
      try { hook(v); } catch (err) { console.error("vidchat", err); }
    }
    requestAnimationFrame(loop);
  }
  requestAnimationFrame(loop);
})();
