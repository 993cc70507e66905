"""`python main.py sing NAME`: play one installed song with the fish dancing, then exit."""

from __future__ import annotations

import time

from core.config import ROOT, Settings


async def sing(settings: Settings, name: str | None, list_only: bool, simulate: bool) -> int:
    from core.app import make_devices
    from core.body.motion import Body
    from core.body.songs import SongLibrary

    library = SongLibrary(settings.sounds_dir / "songs")
    if list_only or not name:
        titles = [f"  {song.folder.name}: {song.title} ({', '.join(song.keywords)})" for song in library.songs()]
        print("Installed songs:\n" + ("\n".join(titles) if titles else "  none (add folders to sounds/songs/)"))
        return 0 if list_only else 2
    song = library.find(name)
    if song is None:
        print(f"No song matches {name!r}: run `python main.py sing --list` to see the installed ones.")
        return 2
    devices = make_devices(settings, simulate=simulate)
    body = Body(settings.motion, pin_factory=devices.pin_factory)
    started = time.monotonic()
    devices.speaker.start()
    body.attach(devices.speaker)
    try:
        print(f"Singing {song.title}...")
        await body.perform(song, devices.speaker)
    finally:
        body.close()
        devices.speaker.stop()
        if devices.simulated_audio:
            out = ROOT / "sim-out"
            out.mkdir(exist_ok=True)
            devices.speaker.write_wav(out / "song.wav", started)  # type: ignore[attr-defined]
            print(f"Simulated: the song went to {out / 'song.wav'}")
    return 0
