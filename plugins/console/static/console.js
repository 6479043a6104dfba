// TokOne console: the little JavaScript it uses. Every page also works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Copy a key to the clipboard.
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () => {
      const field = document.querySelector(button.dataset.copy);
      if (!field) return;
      const text = field.value !== undefined ? field.value : field.textContent;
      if (field.select) field.select();
      try {
        await navigator.clipboard.writeText(text);
      } catch (err) {
        document.execCommand("copy");
      }
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
  }
  // Ask before a form that cannot be undone (revoke, rotate).
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
