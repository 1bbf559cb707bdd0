// Drama Studio: small progressive enhancements on top of htmx. Every action here also has a
// plain form that works without JavaScript.
(function () {
  "use strict";

  // Drag files onto a reference dropzone: they go into its file input and the form submits.
  document.addEventListener("dragover", function (event) {
    const zone = event.target.closest && event.target.closest("[data-dropzone]");
    if (!zone || !event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) return;
    event.preventDefault();
    zone.classList.add("over");
  });
  document.addEventListener("dragleave", function (event) {
    const zone = event.target.closest && event.target.closest("[data-dropzone]");
    if (zone) zone.classList.remove("over");
  });
  document.addEventListener("drop", function (event) {
    const zone = event.target.closest && event.target.closest("[data-dropzone]");
    if (!zone || !event.dataTransfer || !event.dataTransfer.files.length) return;
    event.preventDefault();
    zone.classList.remove("over");
    const input = zone.querySelector("input[type=file]");
    input.files = event.dataTransfer.files;
    zone.requestSubmit();
  });

  // Drag scene cards to reorder them; the server answers with the renumbered list.
  let dragged = null;
  document.addEventListener("dragstart", function (event) {
    const card = event.target.closest && event.target.closest(".scene-card[draggable=true]");
    if (!card) return;
    dragged = card;
    card.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", card.dataset.sceneId);
  });
  document.addEventListener("dragover", function (event) {
    if (!dragged) return;
    const card = event.target.closest && event.target.closest(".scene-card");
    if (!card || card === dragged) return;
    event.preventDefault();
    const box = card.getBoundingClientRect();
    const after = event.clientY > box.top + box.height / 2;
    card.parentNode.insertBefore(dragged, after ? card.nextSibling : card);
  });
  document.addEventListener("dragend", function () {
    if (!dragged) return;
    dragged.classList.remove("dragging");
    const panel = dragged.closest("[data-reorder-url]");
    dragged = null;
    if (!panel) return;
    const ids = Array.from(panel.querySelectorAll(".scene-card[data-scene-id]")).map((c) => c.dataset.sceneId);
    htmx.ajax("POST", panel.dataset.reorderUrl, {
      target: "#scenes-panel",
      swap: "outerHTML",
      values: { scene: ids },
    });
  });

  // Errors that htmx does not swap (403, 404, 500, network) still get a readable message.
  document.addEventListener("htmx:responseError", function (event) {
    const status = event.detail.xhr.status;
    const text = {
      403: "Your role on this drama does not allow this.",
      404: "That item no longer exists (or is not in a drama you belong to). Reload the page.",
      413: "That upload is too large.",
    }[status] || "The studio could not complete this (error " + status + "). Nothing was changed; try again.";
    showError(text);
  });
  document.addEventListener("htmx:sendError", function () {
    showError("The studio is unreachable. Check the server is running, then try again.");
  });
  // Live views (htmx ws extension): say so while the socket is down. The extension reconnects
  // with backoff after an abnormal close and the server resends a full snapshot on connect.
  document.addEventListener("htmx:wsOpen", function () { setLive(""); });
  document.addEventListener("htmx:wsClose", function (event) {
    const code = event.detail && event.detail.event ? event.detail.event.code : 0;
    if (code === 1000 || code === 1001) return;  // the page is going away or swapped the view
    setLive([1006, 1011, 1012, 1013].indexOf(code) >= 0
      ? "Live updates interrupted: reconnecting…"
      : "Live updates stopped. Reload the page to see the latest state.");
  });
  function setLive(text) {
    const status = document.getElementById("live-status");
    if (!status) return;
    status.textContent = text;
    status.hidden = !text;
  }

  function showError(text) {
    const toast = document.getElementById("htmx-error");
    if (!toast) return;
    toast.textContent = text;
    toast.hidden = false;
    clearTimeout(toast._timer);
    toast._timer = setTimeout(function () { toast.hidden = true; }, 6000);
  }
})();

// Take review: arrow keys move through the sampled frames; A approves, R rejects, G regenerates
// (the same buttons a mouse would press, so every action is recorded by the server).
(function () {
  "use strict";

  function page() { return document.querySelector("[data-take-review]"); }

  function select(index) {
    const root = page();
    if (!root) return;
    const thumbs = Array.from(root.querySelectorAll(".frame-thumb"));
    if (!thumbs.length) return;
    const count = thumbs.length;
    const chosen = ((index % count) + count) % count;
    thumbs.forEach(function (thumb, i) { thumb.classList.toggle("selected", i === chosen); });
    root.querySelectorAll(".frame-large").forEach(function (figure, i) {
      figure.hidden = i !== chosen;
      figure.classList.toggle("selected", i === chosen);
    });
    thumbs[chosen].scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  function current() {
    const root = page();
    const thumbs = root ? Array.from(root.querySelectorAll(".frame-thumb")) : [];
    return Math.max(0, thumbs.findIndex(function (t) { return t.classList.contains("selected"); }));
  }

  document.addEventListener("click", function (event) {
    const thumb = event.target.closest && event.target.closest(".frame-thumb");
    if (!thumb || !page()) return;
    const thumbs = Array.from(page().querySelectorAll(".frame-thumb"));
    select(thumbs.indexOf(thumb));
  });

  document.addEventListener("keydown", function (event) {
    const root = page();
    if (!root || event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || event.target.isContentEditable) return;
    if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
      event.preventDefault();
      select(current() + (event.key === "ArrowRight" ? 1 : -1));
      return;
    }
    const button = root.querySelector('button[data-key="' + event.key.toLowerCase() + '"]');
    if (button && !button.disabled) {
      event.preventDefault();
      button.click();
    }
  });

  // The page head shows the take's status too: it follows the live row it mirrors.
  document.addEventListener("htmx:oobAfterSwap", function () {
    document.querySelectorAll("[data-mirror-of]").forEach(function (mirror) {
      const source = document.getElementById(mirror.dataset.mirrorOf);
      if (!source || source.dataset.status === mirror.dataset.status && source.innerHTML === mirror.innerHTML) return;
      mirror.innerHTML = source.innerHTML;
      mirror.dataset.status = source.dataset.status;
    });
  });

  // The frames arrive when the take is scored: fetch them once its live status says "done".
  document.addEventListener("htmx:oobAfterSwap", function () {
    const root = page();
    const pending = root && root.querySelector(".take-frames[data-pending]");
    if (!pending) return;
    const status = document.getElementById("take-status-" + pending.id.slice("take-frames-".length));
    if (status && status.dataset.status === "done") window.location.reload();
  });

  document.addEventListener("DOMContentLoaded", function () {
    const wanted = new URLSearchParams(window.location.search).get("frame");
    if (wanted !== null && page()) {
      const thumbs = Array.from(page().querySelectorAll(".frame-thumb"));
      const index = thumbs.findIndex(function (t) { return t.dataset.frame === wanted; });
      if (index >= 0) select(index);
    }
  });
})();

// Chapter editor: when the writer finishes while the page is open, the new scenes and the
// header's counts are fetched in place (the producer's own session and CSRF token; no reload).
(function () {
  "use strict";

  document.addEventListener("htmx:oobAfterSwap", function () {
    const written = document.querySelector("#generation-live .generation-result[data-written]");
    const panel = document.getElementById("scenes-panel");
    if (!written || !panel || panel.dataset.writtenSeen === written.dataset.written) return;
    panel.dataset.writtenSeen = written.dataset.written;
    const url = window.location.pathname;
    htmx.ajax("GET", url, { target: "#scenes-panel", select: "#scenes-panel", swap: "outerHTML" });
    htmx.ajax("GET", url, { target: "#chapter-header", select: "#chapter-header", swap: "outerHTML" });
  });
})();

// Cut page: the assembled chapter previewed in one player, take after take, each from its in
// to its out point (the export masters the same cut; this is the quick look).
(function () {
  "use strict";

  const video = document.getElementById("cut-preview");
  const data = document.getElementById("cut-playlist");
  if (!video || !data) return;
  const status = document.getElementById("cut-preview-status");
  const list = JSON.parse(data.textContent);
  if (!list.length) {
    status.textContent = "Nothing to preview yet: no scene has a take to play.";
    return;
  }
  let index = 0;
  function load(i, play) {
    index = i;
    const clip = list[i];
    video.src = clip.src;
    video.addEventListener("loadedmetadata", function () {
      video.currentTime = clip.in;
      if (play) video.play();
    }, { once: true });
    status.textContent = clip.label + " (" + (i + 1) + " of " + list.length + ")";
  }
  function next() {
    if (index + 1 < list.length) load(index + 1, true);
    else { video.pause(); status.textContent = "End of the cut."; }
  }
  video.addEventListener("timeupdate", function () {
    if (video.currentTime >= list[index].out - 0.02) next();
  });
  video.addEventListener("ended", next);
  load(0, false);
})();
