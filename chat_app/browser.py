"""The page's own JavaScript, run once when it loads (`demo.launch(js=PAGE_JS)`): what Gradio's
components do not do by themselves.

- On a narrow screen (a phone) the sidebar covers the chat, so it starts closed there and
  closes again once a conversation is picked or a new one started.
- The message box's file chooser forgets its last pick once the box is empty (a message was
  sent, undone or its files removed), so attaching the same file again is seen as a change.
"""

from __future__ import annotations

NARROW = "(max-width: 768px)"  # the width below which the sidebar overlays the chat

PAGE_JS = """() => {
  const narrow = () => window.matchMedia("NARROW").matches;
  const closeSidebar = () => {
    const toggle = document.querySelector("#sidebar.open .toggle-button");
    if (toggle) toggle.click();
  };
  if (narrow()) {
    let tries = 0;
    const atLoad = setInterval(() => {
      tries += 1;
      if (document.querySelector("#sidebar.open")) { closeSidebar(); clearInterval(atLoad); }
      else if (tries > 100) clearInterval(atLoad);
    }, 50);
  }
  document.addEventListener("click", (event) => {
    if (narrow() && event.target.closest && event.target.closest("#new, #conversations label")) {
      setTimeout(closeSidebar, 0);
    }
  }, true);

  let watched = 0;
  const watchBox = setInterval(() => {
    const box = document.querySelector("#box");
    watched += 1;
    if (!box) { if (watched > 200) clearInterval(watchBox); return; }
    clearInterval(watchBox);
    new MutationObserver(() => {
      const shown = box.querySelector(".thumbnails");
      if (shown && shown.children.length) return;
      box.querySelectorAll("input[type='file']").forEach((input) => { input.value = ""; });
    }).observe(box, {subtree: true, childList: true});
  }, 50);
}""".replace("NARROW", NARROW)
