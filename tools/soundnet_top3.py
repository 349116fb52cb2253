"""Top-3 ImageNet classes of SoundNet's object head on 41 real sounds (a check of the port, not a test).

Usage: ``python tools/soundnet_top3.py WORK [--json out.json]`` with ``WORK/media`` and ``WORK/media2`` fetched by
``get-debian-media.sh`` and ``get-debian-sfx-extra.sh`` (see ``tools/train_default.sh``). Prints one markdown row
per sound: the top 3 of the mean probability over its 1-s windows (up to 10, tiled to 10.98 s each), the top 3 of
the whole file (its first 20 s, tiled if shorter, as the original scripts feed files) and the Places head's top 2;
``*`` marks a top 3 holding an acceptable class.

Acceptable classes per sound are declared below BEFORE looking at outputs: the object itself or its class family
(dog breeds for a bark, birds for birdsong, road vehicles for an engine, instruments for music), plus a few
unambiguous context objects (car interior parts for a car, baby things for a baby).
"""
import argparse
import glob
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from soundlib.audio import load_windows, load_audio
from encoders import soundnet as sn
from encoders.backbones import imagenet_labels, fit_window

L = imagenet_labels()
IDX = {n: i for i, n in enumerate(L)}
def rng(a, b): return {L[i] for i in range(a, b + 1)}
BIRDS = rng(7, 24) | rng(80, 100) | rng(127, 146) | {"birdhouse"}
DOGS = rng(151, 268)
CATS = rng(281, 285)
BIGCATS = rng(286, 293)
INSECTS = rng(300, 326)
INSTR = {"accordion", "acoustic guitar", "banjo", "bassoon", "cello", "chime", "cornet", "drum", "drumstick",
         "electric guitar", "flute", "French horn", "gong", "grand piano", "harmonica", "harp", "maraca", "marimba",
         "oboe", "ocarina", "organ", "panpipe", "sax", "steel drum", "trombone", "upright", "violin"}
ROAD = {"ambulance", "beach wagon", "cab", "convertible", "jeep", "limousine", "minivan", "Model T", "pickup",
        "racer", "sports car", "tow truck", "trailer truck", "moving van", "police van", "garbage truck",
        "fire engine", "school bus", "trolleybus", "minibus", "recreational vehicle", "go-kart", "golfcart",
        "moped", "motor scooter", "snowmobile", "snowplow", "tractor", "forklift", "half track", "tank",
        "traffic light", "car mirror", "car wheel", "grille", "seat belt", "odometer", "crash helmet", "disk brake",
        "thresher", "harvester", "lawn mower", "chain saw"}
AIR = {"airliner", "warplane", "wing", "airship", "parachute", "aircraft carrier", "space shuttle", "missile",
       "projectile"}
RAIL = {"passenger car", "freight car", "electric locomotive", "steam locomotive", "bullet train", "streetcar"}
WATER = {"fountain", "lakeside", "seashore", "sandbar", "geyser", "dam", "breakwater", "coral reef", "scuba diver",
         "snorkel", "canoe", "paddle", "speedboat", "liner", "lifeboat", "fireboat", "schooner", "yawl",
         "catamaran", "gondola", "washbasin", "tub", "bathtub", "shower curtain", "water bottle", "umbrella",
         "promontory", "cliff", "wreck", "submarine", "boathouse", "pier"}
FIRE = {"volcano", "matchstick", "candle", "torch", "fire screen", "stove", "lighter"}
for s in (ROAD, AIR, RAIL, WATER, FIRE, INSTR):
    assert s <= set(L), s - set(L)

M, M2 = "{work}/media/sfx/", "{work}/media2/sfx/"
FILES = {  # name: (path, accepted classes)
 "dog bark": (M+"scratch/Animal/Dog1.wav", DOGS), "dog 2": (M+"scratch/Animal/Dog2.wav", DOGS),
 "cat meow": (M+"scratch/Animal/Meow.wav", CATS), "rooster": (M+"scratch/Animal/Rooster.wav", BIRDS),
 "bird": (M+"scratch/Animal/Bird.wav", BIRDS), "owl": (M+"scratch/Animal/Owl.wav", BIRDS),
 "duck": (M+"scratch/Animal/Duck.wav", BIRDS | {"lakeside"}), "goose": (M+"scratch/Animal/Goose.wav", BIRDS | {"lakeside"}),
 "horse": (M+"scratch/Animal/Horse.wav", {"sorrel", "horse cart"}),
 "horse gallop": (M+"scratch/Animal/HorseGallop.wav", {"sorrel", "horse cart"}),
 "crickets": (M+"scratch/Animal/Crickets.wav", INSECTS), "sea lion": (M+"scratch/Animal/SeaLion.mp3", {"sea lion", "seashore"}),
 "birds ambient": (M+"wesnoth/ambient/birds1.ogg", BIRDS), "chicken": (M2+"0ad/chicken/chicken_10.ogg", BIRDS),
 "sheep": (M2+"0ad/sheep/sheep_10.ogg", {"ram", "bighorn"}),
 "elephant": (M2+"0ad/elephant/elephant_order1.ogg", {"Indian elephant", "African elephant", "tusker"}),
 "lion": (M2+"0ad/lion/lion_attack1.ogg", BIGCATS), "bee": (M2+"hedgewars/bee/bee.ogg", INSECTS),
 "car passing": (M+"scratch/Effects/CarPassing.wav", ROAD), "motorcycle": (M+"scratch/Effects/MotorcyclePassing.wav", ROAD),
 "plane": (M2+"hedgewars/plane/plane.ogg", AIR), "train": (M2+"lincity/rail train", RAIL),
 "sewing machine": (M+"scratch/Effects/SewingMachine.mp3", {"sewing machine"}),
 "typing": (M+"scratch/Effects/Typing.mp3", {"typewriter keyboard", "computer keyboard", "desktop computer", "notebook", "laptop", "space bar", "mouse"}),
 "piano": (M+"lmms/instruments/piano01.ogg", INSTR), "guitar strum": (M+"scratch/Instruments/GuitarStrum.wav", INSTR),
 "trumpet": (M+"scratch/Instruments/Trumpet1.wav", INSTR), "violin": (M+"lmms/instruments/violin_fingered01.ogg", INSTR),
 "drum set": (M+"scratch/Music Loops/DrumSet1.mp3", INSTR), "bell toll": (M+"scratch/Effects/BellToll.wav", INSTR | {"bell cote", "church"}),
 "gong": (M+"scratch/Percussion/Gong.wav", INSTR), "flute": (M+"lmms/instruments/flute01.ogg", INSTR),
 "water running": (M+"scratch/Effects/WaterRunning.mp3", WATER), "river": (M2+"0ad/river fast/river_fast_21.ogg", WATER),
 "wave crash": (M2+"0ad/wave crash/wavecrash_21.ogg", WATER), "rain": (M2+"0ad/rain", WATER),
 "splash": (M2+"freeciv/splash/Splash.ogg", WATER), "campfire": (M+"wesnoth/ambient/campfire.ogg", FIRE),
 "fire": (M+"wesnoth/fire.wav", FIRE),
 "baby cry": (M+"scratch/Human/BabyCry.mp3", {"diaper", "bassinet", "cradle", "crib"}),
 "machine gun": (M2+"freeciv/machine gun", {"assault rifle", "rifle", "revolver", "cannon", "military uniform", "tank", "projectile"}),
}

def resolve(p, work):
    p = p.format(work=work)
    if os.path.isdir(p):
        return sorted(f for f in glob.glob(p + "/**/*", recursive=True) if os.path.isfile(f))[0]
    return p

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", help="folder holding media/ and media2/")
    ap.add_argument("--peak", action="store_true")
    ap.add_argument("--pad", choices=["tile", "zeros"], default="tile")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    torch.set_num_threads(1)
    net = sn.soundnet_net()
    P = sn.places_labels()
    spec = sn.SoundNetSpec(peak_normalize=a.peak)
    front = sn.SoundNetFrontend(48000, 48000, spec)
    rows, hits = [], {"windows": 0, "file": 0}
    for name, (p, ok) in FILES.items():
        p = resolve(p, a.work)
        starts, w = load_windows(p, max_windows=10)
        with torch.inference_mode():
            if a.pad == "tile":
                x = front(torch.from_numpy(w))
            else:  # the window in the middle of silence
                x = torch.zeros(len(w), sn.min_input_samples())
                r = sn.fft_resample(torch.from_numpy(w).float(), 22050) * 256
                o = (x.shape[1] - 22050) // 2
                x[:, o:o + 22050] = r
            o8 = net(x, keep=())
            lp = o8.objects  # (W, 1000)
            pl = torch.logsumexp(o8.places, 0)
            places = ", ".join(P[j] for j in torch.topk(pl, 2).indices.tolist())
            win = torch.logsumexp(lp, 0) - np.log(lp.shape[0])  # mean probability over windows
            y = torch.from_numpy(load_audio(p, 22050)).float()[:22050 * 20]
            if a.peak:
                y = y / y.abs().max()
            n = max(sn.min_input_samples(), y.shape[0])
            whole = net(fit_window(y[None] * 256.0, n), keep=()).objects[0]
        out = {"name": name, "path": os.path.relpath(p, a.work), "n_windows": len(starts)}
        for key, v in (("windows", win), ("file", whole)):
            i = torch.topk(v, 3).indices.tolist()
            top = [L[j] for j in i]
            hit = any(t in ok for t in top)
            hits[key] += hit
            out[key] = {"top3": top, "p": [round(float(v[j].exp()), 3) for j in i], "sensible": hit}
        rows.append(out)
        f = lambda k: ", ".join(f"{t} {q:.2f}" for t, q in zip(out[k]["top3"], out[k]["p"])) + (" *" if out[k]["sensible"] else "")
        print(f"| {name} | {out['path']} | {f('windows')} | {f('file')} | {places} |", flush=True)
    print(f"sensible (a class of the declared set in the top 3): 1-s windows {hits['windows']}/{len(FILES)}, "
          f"whole file {hits['file']}/{len(FILES)}")
    if a.json:
        json.dump({"rows": rows, "hits": hits, "n": len(FILES), "peak": a.peak, "pad": a.pad}, open(a.json, "w"), indent=1)

if __name__ == "__main__":
    main()
