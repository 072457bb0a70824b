"""Who is who: the login name with --auth, otherwise a random id the browser keeps.

The id lives in the browser's localStorage (made by `IDENTITY_JS` when the page loads, so it
survives reloads and server restarts). The page-load event hands it to the server, which
keeps it in the session's state; API clients call `/load` with an id of their own first.
"""

from __future__ import annotations

import re

BROWSER_ID = re.compile(r"[0-9a-f]{32}")
STORAGE_KEY = "multimodal-chat-browser-id"
# Runs in the browser before the page-load event: this browser's id from localStorage (made
# on the first visit with crypto.getRandomValues, which plain-HTTP LAN addresses also have).
IDENTITY_JS = """(given) => {
  const key = "STORAGE_KEY";
  let id = null;
  try { id = window.localStorage.getItem(key); } catch (error) {}
  if (!/^[0-9a-f]{32}$/.test(id || "")) {
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    try { window.localStorage.setItem(key, id); } catch (error) {}
  }
  return [id];
}""".replace("STORAGE_KEY", STORAGE_KEY)


def user_key(request, browser_id) -> str:
    """The store key of whoever sent this request (a gr.Request, or None)."""
    if request is not None and getattr(request, "username", None):
        return f"user:{request.username}"
    if isinstance(browser_id, str) and BROWSER_ID.fullmatch(browser_id):
        return f"browser:{browser_id}"
    return f"session:{getattr(request, 'session_hash', None) or 'anonymous'}"


def session(request) -> str:
    """The browser session a reply runs in: what stop, new and open stop."""
    return getattr(request, "session_hash", None) or "no-session"
