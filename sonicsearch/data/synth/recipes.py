"""What each genre is made of: scales, drum patterns and the genre :class:`Recipe` table."""

from __future__ import annotations

from dataclasses import dataclass

SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "harmonic": (0, 2, 3, 5, 7, 8, 11),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "pentatonic": (0, 2, 4, 7, 9),
    "minor_pent": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}

# Drum patterns: one 16th-note bar per piece; X accent, x hit, g ghost, . rest. A pattern
# plays its pieces in the order written. The rows many patterns share have names:
_FOUR = "X...X...X...X..."  # on every beat (four on the floor)
_BACKBEAT = "....X.......X..."  # beats 2 and 4
_THREE = "........X......."  # beat 3 alone (the one drop)
_EIGHTHS = "x.x.x.x.x.x.x.x."
_DRIVE = "X.x.X.x.X.x.X.x."  # eighths, accented on the beat
PATTERNS = {
    "four_floor": dict(kick=_FOUR, clap=_BACKBEAT, hat=_EIGHTHS),
    "disco": dict(kick=_FOUR, snare=_BACKBEAT, open="..x...x...x...x.", hat="x.g.x.g.x.g.x.g."),
    "electro": dict(kick="X..x..X...x.....", clap=_BACKBEAT, hat="xgxgxgxgxgxgxgxg"),
    "trap": dict(kick="X......X..X.....", clap=_THREE, hat="xxxxxxxxxxxxxxxx"),
    "backbeat": dict(kick="X.......X.x.....", snare=_BACKBEAT, hat=_EIGHTHS),
    "rock_drive": dict(kick="X.x.....X.x.x...", snare=_BACKBEAT, hat=_DRIVE),
    "boombap": dict(kick="X......x..X.....", snare=_BACKBEAT, hat="x.x.x.x.x.x.x.xg"),
    "shuffle": dict(kick="X.....x.X.....x.", snare=_BACKBEAT, hat=_EIGHTHS),
    "jazz_ride": dict(ride="x...x.x.x...x.x.", hat="....x.......x...", kick="g...g...g...g..."),
    "one_drop": dict(kick=_THREE, rim=_THREE, hat=_EIGHTHS),
    "steppers": dict(kick=_FOUR, rim=_THREE, hat=_EIGHTHS),
    "double_kick": dict(kick="XxXxXxXxXxXxXxXx", snare=_BACKBEAT, hat=_DRIVE),
    "halftime": dict(kick="X.........x.....", snare=_THREE, hat=_EIGHTHS),
    "train": dict(kick="X.......X.......", snare="xgxgXgxgxgxgXgxg"),
    "light": dict(shaker="x.g.x.g.x.g.x.g.", kick="X.......X......."),
    "sparse": dict(kick="X...............", rim="..........x.....", shaker="....g.......g..."),
}
VELOCITY = {"X": 1.0, "x": 0.7, "g": 0.3}


@dataclass(frozen=True)
class Recipe:
    """How one genre sounds. Ranges are drawn uniformly; palettes (tuples of names) list the
    genre's staple first and are drawn with weights 1, 1/2.5, 1/4.2, ... (k ** -1.3)."""

    name: str
    description: str
    bpm: tuple[float, float]
    scales: tuple[str, ...]  # keys of SCALES
    progressions: tuple[tuple[int, ...], ...]  # scale degrees from 0, one chord per bar(s)
    drums: tuple[str, ...]  # keys of PATTERNS
    kits: tuple[str, ...]  # acoustic, brush, 808, electronic
    bass: tuple[str, ...]  # bass-line styles, see arrange._bass_bar
    bass_timbres: tuple[str, ...]  # keys of TIMBRES, as are comp_timbres and lead_timbres
    comp: tuple[str, ...]  # chord styles, see arrange._comp_bar
    comp_timbres: tuple[str, ...]
    lead_timbres: tuple[str, ...]
    noise: tuple[str, ...]  # hiss, vinyl, hum, room
    swing: tuple[float, float] = (0.0, 0.05)  # delay of the off-beat, fraction of its length
    swing_unit: int = 2  # 16ths per swung half-beat: 2 swings 8ths, 1 swings 16ths
    lead_scale: str | None = None  # the melody's scale when not the chords' one
    lead_steps: tuple[int, ...] = (2, 4)  # melody note lengths in 16ths
    lead_prob: float = 0.6  # chance that a section has a melody
    drum_prob: float = 0.9  # chance that a section has drums
    sevenths: float = 0.0  # chance that a clip voices four-note (7th) chords
    bars_per_chord: tuple[int, ...] = (1, 2)
    reverb: tuple[float, float] = (0.05, 0.3)  # wet level
    room: tuple[float, float] = (0.4, 1.5)  # reverb time (RT60), seconds
    delay_prob: float = 0.0  # chance of a feedback echo on chords and melody
    rubato: float = 0.0  # largest tempo wobble, in beats
    lofi_prob: float = 0.1  # chance of a band-limited (lo-fi) master
    tilt: tuple[float, float] = (-1.5, 1.5)  # master EQ tilt, dB per octave around 1 kHz


_PALETTES = ("scales", "drums", "kits", "bass", "bass_timbres", "comp", "comp_timbres",
             "lead_timbres", "noise")


def _recipe(name: str, description: str, progressions: str, **fields) -> Recipe:
    """A :class:`Recipe` written compactly: each palette as one string of space-separated
    names ("minor dorian"), the progressions as space-separated runs of dash-joined scale
    degrees ("0-3 0-5-3-4" is I-IV and I-VI-IV-V); other fields as in :class:`Recipe`."""
    for key in _PALETTES:
        fields[key] = tuple(fields[key].split())
    chords = tuple(tuple(int(d) for d in p.split("-")) for p in progressions.split())
    return Recipe(name, description, progressions=chords, **fields)


RECIPES: tuple[Recipe, ...] = (
    _recipe(
        "ambient", "slow evolving pads, bells and drones, sparse or no beat, long reverb",
        bpm=(60, 100), scales="major lydian dorian minor",
        progressions="0-3 0-5-3-4 0-6", bars_per_chord=(2, 4), sevenths=0.4,
        drums="sparse light", kits="electronic brush", drum_prob=0.25,
        bass="pedal root none", bass_timbres="sub warm_pad synthbass",
        comp="pad arp", comp_timbres="pad warm_pad strings bell",
        lead_timbres="bell sine_lead flute vibes", lead_steps=(8, 16),
        lead_prob=0.5, noise="room hiss", reverb=(0.4, 0.75), room=(2.0, 4.0),
        delay_prob=0.4, tilt=(-2.5, 0.5)),
    _recipe(
        "blues", "12-bar dominant-7th shuffle: guitar, organ, harmonica, swung 8ths",
        bpm=(70, 130), scales="mixolydian", sevenths=0.9, bars_per_chord=(1,),
        progressions="0-0-0-0-3-3-0-0-4-3-0-4 0-3-0-4",
        drums="shuffle backbeat", kits="acoustic brush", swing=(0.15, 0.33),
        bass="walking root twostep", bass_timbres="fingerbass upright sub",
        comp="strum block", comp_timbres="guitar organ piano",
        lead_timbres="harmonica guitar reed dist_rock organ",
        lead_scale="blues", lead_steps=(1, 2, 2, 4), noise="vinyl hiss hum",
        tilt=(-1.5, 1.0)),
    _recipe(
        "classical", "strings, piano, winds and harp in functional harmony, rubato, no drums",
        bpm=(60, 130), scales="major minor harmonic",
        progressions="0-3-4-0 0-5-1-4 0-4-5-3",
        drums="sparse", kits="brush", drum_prob=0.1,
        bass="root pedal walking", bass_timbres="strings upright piano",
        comp="alberti arp block pad", comp_timbres="strings piano harp clarinet",
        lead_timbres="strings flute clarinet piano", lead_steps=(2, 4, 4, 8),
        lead_prob=0.9, noise="room hiss vinyl", reverb=(0.15, 0.4), room=(1.2, 2.5),
        rubato=0.4, tilt=(-2.0, 0.5)),
    _recipe(
        "disco", "four-on-the-floor, offbeat open hats, octave bass, strings and clav",
        bpm=(108, 132), scales="minor dorian major", sevenths=0.5,
        progressions="0-3 0-5-3-4 1-4-0-0",
        drums="disco four_floor", kits="acoustic electronic",
        bass="octave eighths", bass_timbres="fingerbass synthbass fm_bass",
        comp="stab strum pad", comp_timbres="clav strings guitar epiano brass",
        lead_timbres="strings brass saw_lead reed", lead_steps=(1, 2, 4),
        noise="hiss vinyl room", tilt=(-0.5, 2.0)),
    _recipe(
        "electro", "drum-machine beats, sub and saw bass, arpeggios, saw and square leads",
        bpm=(100, 140), scales="minor phrygian dorian",
        progressions="0-5-6-0 0-0-5-6 0-3",
        drums="four_floor electro trap", kits="808 electronic",
        bass="arp sub808 eighths", bass_timbres="synthbass sub fm_bass",
        comp="arp stab pad", comp_timbres="pad saw_lead square_lead bell",
        lead_timbres="saw_lead square_lead sine_lead", lead_steps=(1, 2, 2, 4),
        noise="hiss room", delay_prob=0.4, tilt=(-0.5, 2.0)),
    _recipe(
        "folk", "strummed steel and nylon guitars, fiddle and flute, light percussion",
        bpm=(80, 140), scales="major mixolydian dorian", swing=(0.0, 0.15),
        progressions="0-3-4-0 0-4-5-3 0-6-3",
        drums="light train sparse", kits="brush acoustic", drum_prob=0.6,
        bass="root twostep pedal", bass_timbres="upright fingerbass",
        comp="strum arp", comp_timbres="steel nylon guitar harp",
        lead_timbres="fiddle flute harmonica reed", lead_steps=(2, 4),
        noise="room hiss", tilt=(-1.0, 1.5)),
    _recipe(
        "hiphop", "boom-bap or trap beats with swung 16ths, 808 sub, dusty keys, crackle",
        bpm=(72, 100), scales="minor dorian phrygian", sevenths=0.6,
        progressions="0-5 0-3-6-5 1-4-0-0",
        drums="boombap trap halftime", kits="808 acoustic",
        swing=(0.05, 0.3), swing_unit=1,
        bass="sub808 root", bass_timbres="sub fm_bass fingerbass",
        comp="block stab pad comp", comp_timbres="epiano piano strings vibes guitar",
        lead_timbres="epiano sine_lead flute bell", lead_prob=0.4,
        noise="vinyl hiss", lofi_prob=0.5, tilt=(-2.0, 0.5)),
    _recipe(
        "jazz", "swung ride, walking upright bass, ii-V-I sevenths on piano and vibes, sax",
        bpm=(90, 200), scales="major dorian mixolydian", sevenths=1.0,
        progressions="1-4-0-0 0-5-1-4 1-4",
        drums="jazz_ride", kits="brush acoustic", swing=(0.15, 0.33),
        bass="walking", bass_timbres="upright fingerbass",
        comp="comp block", comp_timbres="piano epiano vibes guitar",
        lead_timbres="reed brass vibes piano flute", lead_steps=(1, 2, 2, 4),
        lead_prob=0.7, noise="vinyl room hiss", tilt=(-1.5, 1.0)),
    _recipe(
        "metal", "fast double kick, heavily distorted power-chord riffs, minor and phrygian",
        bpm=(100, 200), scales="minor phrygian harmonic",
        progressions="0-5-6-0 0-1-0-6 0-0-5",
        drums="double_kick rock_drive halftime", kits="acoustic",
        bass="eighths root", bass_timbres="fingerbass synthbass",
        comp="power strum", comp_timbres="dist_metal dist_rock",
        lead_timbres="dist_metal dist_rock saw_lead", lead_steps=(1, 1, 2),
        lead_prob=0.4, noise="hiss room", reverb=(0.05, 0.2), tilt=(-0.5, 2.0)),
    _recipe(
        "reggae", "one-drop or steppers, offbeat skank chords, syncopated bass, dub delay",
        bpm=(65, 95), scales="major minor dorian",
        progressions="0-3 0-4-3-0 0-6",
        drums="one_drop steppers", kits="acoustic electronic", swing=(0.0, 0.2),
        bass="reggae root", bass_timbres="sub fingerbass",
        comp="skank stab", comp_timbres="organ guitar clav epiano",
        lead_timbres="organ brass sine_lead harmonica", lead_prob=0.4,
        noise="vinyl hiss", delay_prob=0.7, tilt=(-1.5, 1.0)),
    _recipe(
        "rock", "backbeat drums, crunchy guitar chords, root-eighths bass, major or minor",
        bpm=(95, 160), scales="major mixolydian minor",
        progressions="0-4-5-3 0-6-3-0 0-3-4",
        drums="backbeat rock_drive halftime", kits="acoustic",
        bass="eighths root", bass_timbres="fingerbass synthbass",
        comp="power strum block", comp_timbres="dist_rock guitar organ piano",
        lead_timbres="dist_rock saw_lead organ harmonica", lead_steps=(1, 2, 4),
        lead_prob=0.5, noise="hiss room", tilt=(-1.0, 1.5)),
    _recipe(
        "country", "train beat, twangy steel guitar, fiddle, root-fifth two-step bass, major",
        bpm=(90, 150), scales="major mixolydian", swing=(0.0, 0.15),
        progressions="0-3-4-0 0-0-3-4 0-4",
        drums="train backbeat light", kits="brush acoustic",
        bass="twostep", bass_timbres="upright fingerbass",
        comp="strum arp", comp_timbres="steel guitar piano",
        lead_timbres="fiddle steel harmonica", noise="room hiss",
        tilt=(-1.0, 1.5)),
)
GENRES = tuple(r.name for r in RECIPES)
MAX_GENRES = len(RECIPES)
