// The page around the player: announcements of the notice area, the question's length, and copying answers as
// they read.
(() => {
  const vc = window.vidchat;

  // #notice (upload errors, the video's summary) is announced by screen readers when it changes.
  function announceNotice() {
    const notice = document.querySelector("#notice");
    if (notice && !notice.hasAttribute("aria-live")) {
      notice.setAttribute("aria-live", "polite");
      notice.setAttribute("role", "status");
    }
  }

  // ---- the question's length ----
  // The question box's limit (its maxlength, from the server's settings) would cut a long paste silently: the page
  // takes the limit over, keeps the whole text, counts it near the limit and refuses to send past it.

  const questionBox = () => document.querySelector("#question textarea");

  function takeLimit(box) {
    if (box.hasAttribute("maxlength")) {
      box.dataset.limit = box.getAttribute("maxlength");
      box.removeAttribute("maxlength");
    }
    return parseInt(box.dataset.limit || "0", 10);
  }

  function counter() {
    let count = document.querySelector("#vc-count");
    const row = document.querySelector("#vc-ask-row");
    if (!count && row) {
      count = vc.el("div", "vc-count", { id: "vc-count", "aria-live": "polite" });
      row.insertAdjacentElement("afterend", count);
    }
    return count;
  }

  // Too long: the counter says so and the question is not sent.
  function tooLong() {
    const box = questionBox();
    if (!box) return false;
    const limit = takeLimit(box);
    return limit > 0 && box.value.length > limit;
  }

  function showCount() {
    const box = questionBox();
    if (!box) return;
    const limit = takeLimit(box), length = box.value.length, count = counter();
    if (!count || !limit) return;
    const over = length > limit, near = length > 0.8 * limit;
    const text = !near ? "" : over
      ? `${length.toLocaleString("en")} / ${limit.toLocaleString("en")} characters: shorten the question by ` +
        `${(length - limit).toLocaleString("en")} to send it.`
      : `${length.toLocaleString("en")} / ${limit.toLocaleString("en")} characters`;
    if (count.textContent !== text) count.textContent = text;
    count.classList.toggle("vc-count-over", over);
    if (over) box.setAttribute("aria-invalid", "true"); else box.removeAttribute("aria-invalid");
  }

  function refuseIfTooLong(e) {
    if (!tooLong()) return;
    e.preventDefault(); e.stopImmediatePropagation();
    showCount();
    const count = counter();
    if (count) { count.classList.remove("vc-flash"); void count.offsetWidth; count.classList.add("vc-flash"); }
  }
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && e.target === questionBox()) refuseIfTooLong(e);
  }, true);
  document.addEventListener("click", (e) => {
    if (e.target.closest && e.target.closest("#ask-btn")) refuseIfTooLong(e);
  }, true);

  // ---- copying an answer: the text as it reads, not its markup ----
  // Gradio's copy button copies the message's source (links, coloured names, notes as HTML); the page copies what
  // the message shows instead.

  document.addEventListener("click", (e) => {
    const button = e.target.closest && e.target.closest('#chat button[aria-label="Copy message"], #chat button[aria-label="Copied message"]');
    if (!button) return;
    // The buttons follow their message.
    const buttons = button.closest(".message-buttons");
    const row = buttons && buttons.previousElementSibling;
    const shown = row && row.querySelector(".message-content");
    if (!shown) return;
    e.preventDefault(); e.stopImmediatePropagation();
    const text = shown.innerText.replace(/\n{3,}/g, "\n\n").trim();
    navigator.clipboard.writeText(text).then(() => {
      button.setAttribute("data-copied", String(Date.now()));
    }, (err) => console.error("vidchat copy", err));
  }, true);

  vc.frameHooks.push(() => { announceNotice(); showCount(); });
})();
