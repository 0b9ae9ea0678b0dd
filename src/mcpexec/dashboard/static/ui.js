// mcpexec dashboard: live updates (no framework, no inline script: the CSP forbids it).
"use strict";

const POLL_MS = 1000;

//: The run events that change a row of the runs list.
const RUN_EVENTS = ["run.submitted", "run.started", "run.retrying", "run.cancel_requested", "run.finished"];
//: With the event stream open, a slow re-read only in case an event was missed.
const SAFETY_POLL_MS = 30000;

function followRows(body) {
  const url = body.dataset.live;
  let busy = false;
  let again = false;
  let timer = null;
  const refresh = async () => {
    if (busy) {
      again = true; // one more read once this one is done
      return;
    }
    busy = true;
    try {
      const answer = await fetch(url, {
        credentials: "same-origin",
        headers: { "X-Mcpexec-Fragment": "1" },
      });
      if (answer.ok) body.innerHTML = await answer.text(); // server-rendered, escaped
    } catch (_) {
      // offline for a moment: the next event or poll tries again
    }
    busy = false;
    if (again) {
      again = false;
      refresh();
    }
  };
  const poll = (ms) => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      await refresh();
      poll(ms);
    }, ms);
  };
  if (!window.EventSource) {
    poll(2 * POLL_MS);
    return;
  }
  // Live from the event stream (same origin, the session cookie): re-read the rows when a run
  // changes. The browser reconnects by itself with Last-Event-ID; polling covers the gaps.
  const source = new EventSource("/ui/events?type=run.");
  source.addEventListener("open", () => {
    body.dataset.stream = "open";
    refresh(); // what changed between the page's rendering and the stream's start
    poll(SAFETY_POLL_MS);
  });
  for (const kind of RUN_EVENTS) source.addEventListener(kind, refresh);
  source.addEventListener("error", () => {
    body.dataset.stream = "lost";
    poll(2 * POLL_MS);
  });
  window.addEventListener("pagehide", () => source.close());
}

function followLog(pre) {
  const follow = document.getElementById("follow");
  const status = document.getElementById("run-status");
  const offsets = { stdout: pre.dataset.stdout || "0", stderr: pre.dataset.stderr || "0" };
  const wasTerminal = pre.dataset.terminal === "true";
  const tick = async () => {
    let terminal = wasTerminal;
    try {
      const query = new URLSearchParams(offsets).toString();
      const answer = await fetch(`${pre.dataset.log}?${query}`, {
        credentials: "same-origin",
        headers: { "X-Mcpexec-Fragment": "1" },
      });
      if (answer.ok) {
        const body = await answer.json();
        for (const chunk of body.chunks) {
          const span = document.createElement("span");
          span.className = chunk.stream;
          span.textContent = chunk.text; // text, never markup
          pre.appendChild(span);
        }
        offsets.stdout = String(body.offsets.stdout);
        offsets.stderr = String(body.offsets.stderr);
        if (status && status.textContent !== body.status) {
          status.textContent = body.status;
          status.className = `badge ${body.status}`;
        }
        if (follow && follow.checked && body.chunks.length) pre.scrollTop = pre.scrollHeight;
        terminal = body.terminal && body.chunks.length === 0;
        if (terminal && !wasTerminal) {
          window.location.reload(); // show the result, attempts and artifacts
          return;
        }
      }
    } catch (_) {
      // try again next tick
    }
    if (!terminal) setTimeout(tick, POLL_MS);
  };
  if (!wasTerminal) setTimeout(tick, POLL_MS);
  if (follow && follow.checked) pre.scrollTop = pre.scrollHeight;
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-live]").forEach(followRows);
  const pre = document.querySelector("pre[data-log]");
  if (pre) followLog(pre);
});
