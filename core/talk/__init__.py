"""The conversation: the session and its triggers, the listener, one turn, history, prompt and tools."""
