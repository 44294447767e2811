// Light progressive enhancement: every page works without this file.
"use strict";

// Confirmation for destructive actions (forms with data-confirm).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm) {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  }
});

// ---- Queues, task list and task detail pages --------------------------------------

// Pages that say data-refresh="SECONDS" reload themselves while visible.
(() => {
  const holder = document.querySelector("[data-refresh]");
  const seconds = holder ? Number(holder.dataset.refresh) : 0;
  if (!(seconds > 0)) return;
  window.setInterval(() => {
    if (document.visibilityState === "visible") window.location.reload();
  }, seconds * 1000);
})();

// A running task's output, live: lines appended as the events arrive (text only),
// the stage updated at the end, then one reload to show the result and final fields.
(() => {
  const logs = document.querySelector("#logs[data-live]");
  if (!logs || typeof EventSource === "undefined") return;
  const source = new EventSource(logs.dataset.live);
  const atBottom = () => logs.scrollHeight - logs.scrollTop - logs.clientHeight < 40;
  const addLine = (stream, time, ms, text) => {
    const line = document.createElement("span");
    line.className = "log-line " + (stream === "stderr" ? "stderr" : "stdout");
    line.dataset.stream = stream;
    line.dataset.ms = String(ms);
    const t = document.createElement("span");
    t.className = "t";
    t.textContent = time;
    const s = document.createElement("span");
    s.className = "s";
    s.textContent = stream;
    line.append(t, s, document.createTextNode(text));
    logs.append(line);
  };
  source.addEventListener("chunk", (event) => {
    const chunk = JSON.parse(event.data);
    const follow = atBottom();
    const lines = String(chunk.text).split("\n");
    if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop();
    for (const text of lines) addLine(String(chunk.stream), String(chunk.time), chunk.ms, text);
    if (follow) logs.scrollTop = logs.scrollHeight;
  });
  source.addEventListener("end", (event) => {
    source.close();
    const stage = String(JSON.parse(event.data).stage);
    const label = document.getElementById("task-stage");
    if (label) {
      label.textContent = stage;
      label.dataset.stage = stage;
      label.className = "stage-" + stage;
    }
    // A stream refused as busy ends nothing; any other end is final (the task ended or
    // its record is gone), so the reloaded page has no live stream to reload again.
    if (stage !== "busy") window.setTimeout(() => window.location.reload(), 300);
  });
})();
