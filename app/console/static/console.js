// Lethe console: the only script. While a request is open, poll its progress once a
// second; update the job's phase and percentage; reload when the request's status changes.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const box = document.querySelector("[data-progress-url]");
  if (!box) return;
  const url = box.dataset.progressUrl;
  const shown = box.dataset.status;
  const bar = box.querySelector("progress");
  const pct = box.querySelector(".pct");
  const phase = box.querySelector(".phase");
  const tick = async () => {
    let state;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;  // signed out or gone: stop polling quietly
      state = await response.json();
    } catch (_) {
      setTimeout(tick, 3000);  // the server restarted or the network blinked: try again
      return;
    }
    if (state.status !== shown) { window.location.reload(); return; }
    if (bar && state.progress !== null) { bar.value = state.progress; }
    if (pct && state.progress !== null) { pct.textContent = state.progress.toFixed(1) + "%"; }
    if (phase && state.phase) { phase.textContent = state.phase; }
    setTimeout(tick, 1000);
  };
  setTimeout(tick, 1000);
});
