"""Sound in and out: pure transforms, WAV files, the playback buffer, PortAudio and simulated devices."""
