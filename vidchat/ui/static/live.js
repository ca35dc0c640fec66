// The live view (vidchat/ui/live.py): a click or tap on its picture points at what is under it. The place goes to the
// app as fractions of the picture ({fx, fy}: the newest frame's pixels are the server's to know) through the hidden
// #live-point-btn (layout._page_call). Gradio's own select event is not used: it reads the picture's size from the
// <img>, which is 0 while the next picture loads (twice a second), and the click is lost. The size of the last
// picture loaded is kept here instead.
(() => {
  const vc = window.vidchat;
  Object.assign(vc, { pendingLivePoint: null });
  let loaded = null; // [width, height] of the last live picture loaded

  document.addEventListener("load", (e) => {
    const img = e.target;
    if (img.tagName === "IMG" && img.closest("#live-view") && img.naturalWidth) {
      loaded = [img.naturalWidth, img.naturalHeight];
    }
  }, true);

  // Gradio wraps the picture in a <button> of no name: screen readers say what it does.
  function nameTheView() {
    const button = document.querySelector("#live-view .image-container > button:not([aria-label])");
    if (button) button.setAttribute("aria-label", "Live view: point at what is here (click or tap)");
  }
  vc.frameHooks.push(nameTheView);

  document.addEventListener("click", (e) => {
    const view = e.target.closest && e.target.closest("#live-view");
    const img = view && view.querySelector("img");
    if (!img) return;
    const w = img.naturalWidth || (loaded && loaded[0]), h = img.naturalHeight || (loaded && loaded[1]);
    if (!w || !h) return;
    // The picture inside the <img> box, as `object-fit: contain` places it.
    const r = img.getBoundingClientRect(), s = Math.min(r.width / w, r.height / h);
    const fx = (e.clientX - r.left - (r.width - w * s) / 2) / (w * s);
    const fy = (e.clientY - r.top - (r.height - h * s) / 2) / (h * s);
    if (!(fx >= 0 && fx <= 1 && fy >= 0 && fy <= 1)) return;
    e.preventDefault(); e.stopPropagation();
    vc.pendingLivePoint = JSON.stringify({ fx, fy });
    const button = document.querySelector("#live-point-btn");
    if (button) button.click();
  }, true);
})();
