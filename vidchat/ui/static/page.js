// The page around the player: announcements of the notice area, the question's length, copying answers as they
// read, and coming back to the same session after a reload.
(() => {
  const vc = window.vidchat;

  // #notice (upload errors, the video's summary) is announced by screen readers when it changes.
  vc.frameHooks.push(() => {
    const notice = document.querySelector("#notice");
    if (notice && !notice.hasAttribute("aria-live")) {
      notice.setAttribute("aria-live", "polite");
      notice.setAttribute("role", "status");
    }
  });
})();
