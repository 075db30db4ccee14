// Shipped with the app: copy buttons, confirmations, and the live progress box.
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  field.hidden = false;
  field.select();
  (navigator.clipboard ? navigator.clipboard.writeText(field.value) : Promise.reject())
    .catch(() => document.execCommand("copy"))
    .finally(() => { button.textContent = "Copied"; });
});

document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

function followProgress(box) {
  const show = (lines) => {
    box.replaceChildren(...lines.map((line) => Object.assign(document.createElement("p"), { textContent: line })));
  };
  const look = () => fetch(box.dataset.progress, { credentials: "same-origin", cache: "no-store" })
    .then((answer) => answer.ok ? answer.json() : Promise.reject(answer.status))
    .then((progress) => {
      show(progress.lines);
      box.dataset.phase = progress.phase;
      if (!progress.done) setTimeout(look, 2000);
    })
    .catch(() => setTimeout(look, 5000));
  look();
}

document.querySelectorAll("[data-progress]").forEach(followProgress);
