// The files the player takes. Gradio's video upload keeps only files the browser types as video/*, and refuses the
// rest in its own words ("Invalid file type") or not at all; browsers type several kinds vidchat opens as no video
// (.ts, .m2ts, .mxf, .gif …). Here a file is judged by the rules the server sends (`setUploadRules`: the extensions
// vidchat opens, the size limit): one vidchat opens goes to Gradio typed as a video, any other is not uploaded and
// the server writes the app's reason into #notice (the hidden #refused-file-btn). Listeners in the capture phase on
// the window run before Gradio's own, on the file input (change) and on the upload area (drop).
(() => {
  const vc = window.vidchat;
  // rules: {extensions: [".mp4", …], max_bytes}; refused: JSON {name, size} for the server; picked: the name of the
  // file last handed to the player.
  vc.upload = { rules: null, accept: "", refused: null, picked: null };

  vc.setUploadRules = (rules) => {
    vc.upload.rules = rules;
    vc.upload.accept = rules.extensions.join(",");
  };

  const extension = (name) => {
    const dot = name.lastIndexOf(".");
    return dot > 0 ? name.slice(dot).toLowerCase() : "";
  };

  // The file as Gradio is to get it (typed as a video where the browser did not), or null when it is refused.
  function judge(file) {
    const rules = vc.upload.rules;
    if (!rules) return file; // before the page has the rules, Gradio's own filter decides
    const ext = extension(file.name);
    if (file.size > rules.max_bytes || !rules.extensions.includes(ext)) return null;
    if (file.type.startsWith("video/")) return file;
    return new File([file], file.name, { type: `video/${ext.slice(1)}`, lastModified: file.lastModified });
  }

  function refuse(file) {
    vc.upload.refused = JSON.stringify({ name: file.name, size: file.size });
    const button = document.querySelector("#refused-file-btn");
    if (button) button.click();
  }

  const holder = (e) => e.target instanceof Element && e.target.closest("#player");
  let passing = false; // the event this script dispatches itself, with the file as Gradio is to get it

  window.addEventListener("change", (e) => {
    const input = e.target;
    if (passing || !holder(e) || !(input instanceof HTMLInputElement) || input.type !== "file") return;
    const file = input.files && input.files[0];
    if (!file) return;
    const taken = judge(file);
    if (taken === file) {
      vc.upload.picked = file.name;
      return;
    }
    e.stopImmediatePropagation();
    if (!taken) {
      input.value = ""; // the same file picked again is a change again
      refuse(file);
      return;
    }
    vc.upload.picked = file.name;
    const files = new DataTransfer();
    files.items.add(taken);
    input.files = files.files;
    passing = true;
    try { input.dispatchEvent(new Event("change", { bubbles: true })); } finally { passing = false; }
  }, true);

  window.addEventListener("drop", (e) => {
    const player = holder(e);
    // Only where Gradio takes a drop: the upload area of the empty player.
    if (passing || !player || !player.querySelector("input[type=file]") || !e.dataTransfer) return;
    const file = e.dataTransfer.files[0];
    if (!file) return;
    const taken = judge(file);
    if (taken === file) {
      vc.upload.picked = file.name;
      return;
    }
    e.preventDefault(); // or the browser opens the file in place of the page
    e.stopImmediatePropagation();
    if (taken) vc.upload.picked = file.name;
    else refuse(file);
    // Gradio gets the drop, with the typed file or none: either way its "drop here" look ends.
    const files = new DataTransfer();
    if (taken) files.items.add(taken);
    passing = true;
    try {
      e.target.dispatchEvent(new DragEvent("drop", { bubbles: true, cancelable: true, dataTransfer: files }));
    } finally { passing = false; }
  }, true);

  // A file the browser cannot play (MPEG-TS, MJPEG AVI, HEVC …) makes Gradio say "Video not playable"; vidchat
  // replaces it in the player by a playable copy, or says in #notice why it cannot use it. Its error event is kept
  // from Gradio for the file just picked (by its name, less the characters Gradio takes out of uploaded names),
  // never for another video.
  const nameKey = (name) => name.replace(/[^\p{L}\p{N}.]/gu, "");
  window.addEventListener("error", (e) => {
    const v = e.target;
    if (!(v instanceof HTMLVideoElement) || !v.closest("#player") || !vc.upload.picked) return;
    let src = v.currentSrc || v.src || "";
    try { src = decodeURIComponent(src); } catch (err) { /* keep it as it is */ }
    if (nameKey(src.slice(src.lastIndexOf("/") + 1)) === nameKey(vc.upload.picked)) e.stopImmediatePropagation();
  }, true);

  // The file chooser offers the files vidchat opens (Gradio makes its input anew at times: set again when it does).
  vc.frameHooks.push(() => {
    if (!vc.upload.accept) return;
    const input = document.querySelector("#player input[type=file]");
    if (input && input.accept !== vc.upload.accept) input.accept = vc.upload.accept;
  });
})();
