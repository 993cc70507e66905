"""Speaking: text to speech, sentence splitting and the wake-up clips."""
