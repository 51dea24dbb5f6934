// Tether's dashboard: live updates (server-sent events carrying HTML fragments to swap in),
// relative times and running durations that tick, confirmations, bulk selection. No build step.
"use strict";
(function () {
  function relative(ts, now) {
    const delta = now - ts, d = Math.floor(Math.abs(delta));
    if (d < 1) return delta < 0 ? "now" : "just now";
    let text;
    if (d < 3600) text = d >= 60 ? Math.floor(d / 60) + "m" : d + "s";
    else if (d < 86400) text = Math.floor(d / 3600) + "h" + (d % 3600 >= 60 ? " " + Math.floor(d % 3600 / 60) + "m" : "");
    else text = Math.floor(d / 86400) + "d" + (d % 86400 >= 3600 ? " " + Math.floor(d % 86400 / 3600) + "h" : "");
    return delta < 0 ? "in " + text : text + " ago";
  }

  function duration(s) {
    s = Math.max(0, s);
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s < 10 ? s.toFixed(2) + " s" : s.toFixed(1) + " s";
    let m = Math.floor(s / 60);
    const sec = Math.floor(s % 60);
    if (m < 60) return m + "m " + String(sec).padStart(2, "0") + "s";
    const h = Math.floor(m / 60); m %= 60;
    if (h < 48) return h + "h " + String(m).padStart(2, "0") + "m";
    return Math.floor(h / 24) + "d " + (h % 24) + "h";
  }

  function tick() {
    const now = Date.now() / 1000;
    for (const el of document.querySelectorAll("[data-rel]")) {
      el.textContent = relative(parseFloat(el.dataset.rel), now);
    }
    for (const el of document.querySelectorAll("[data-since]")) {
      el.textContent = duration(now - parseFloat(el.dataset.since));
    }
  }

  // A fragment is swapped in unless someone is using a form control inside the part it
  // replaces; then it waits until the focus leaves. Ticked boxes and typed text are kept.
  const pending = new Map();

  function editing(el) {
    const active = document.activeElement;
    return active && el.contains(active) && active.matches("input, textarea, select, button");
  }

  function fieldKey(field) {
    return (field.form ? field.form.getAttribute("action") : "") + "|" + field.name;
  }

  function replace(old, fresh) {
    const checked = new Set(Array.from(old.querySelectorAll("input[type=checkbox]:checked"), (c) => c.value));
    for (const box of fresh.querySelectorAll("input[type=checkbox]")) box.checked = checked.has(box.value);
    const typed = new Map(Array.from(old.querySelectorAll("textarea"), (t) => [fieldKey(t), t.value]));
    old.replaceWith(fresh);
    for (const area of fresh.querySelectorAll("textarea")) {
      if (typed.get(fieldKey(area))) area.value = typed.get(fieldKey(area));
    }
  }

  function swap(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    for (const fresh of Array.from(template.content.children)) {
      const old = fresh.id && document.getElementById(fresh.id);
      if (!old) continue;
      if (editing(old)) pending.set(fresh.id, fresh);
      else replace(old, fresh);
    }
    tick();
    selection();
  }

  document.addEventListener("focusout", () => setTimeout(() => {
    for (const [id, fresh] of pending) {
      const old = document.getElementById(id);
      if (old && !editing(old)) { pending.delete(id); replace(old, fresh); }
    }
    tick();
  }, 0));

  function connect(url) {
    const live = document.querySelectorAll(".live");
    const source = new EventSource(url);
    source.addEventListener("swap", (event) => swap(event.data));
    source.addEventListener("open", () => live.forEach((el) => el.classList.add("on")));
    source.addEventListener("error", () => live.forEach((el) => el.classList.remove("on")));
    window.addEventListener("pagehide", () => source.close());
  }

  // Bulk selection on the failed runs page.
  function selection() {
    const boxes = document.querySelectorAll("input[name=run_ids]");
    const count = Array.from(boxes).filter((b) => b.checked).length;
    for (const el of document.querySelectorAll("[data-selected]")) el.textContent = count;
    for (const el of document.querySelectorAll("[data-needs-selection]")) el.disabled = count === 0;
    const all = document.querySelector("[data-select-all]");
    if (all) all.checked = boxes.length > 0 && count === boxes.length;
  }

  document.addEventListener("change", (event) => {
    const target = event.target;
    if (target.matches("[data-select-all]")) {
      for (const box of document.querySelectorAll("input[name=run_ids]")) box.checked = target.checked;
    }
    if (target.matches("input[type=checkbox]")) selection();
  });

  document.addEventListener("submit", (event) => {
    const button = event.submitter;
    const question = button && button.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", () => {
    tick();
    selection();
    setInterval(tick, 1000);
    const url = document.body.dataset.live;
    if (url && "EventSource" in window) connect(url);
  });
})();
