"""The web app: Gradio UI, request handlers and the conversation store (no torch here)."""
