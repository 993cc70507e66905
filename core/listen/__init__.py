"""Hearing: endpointing (VAD), the wake word and speech to text."""
