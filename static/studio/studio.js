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
