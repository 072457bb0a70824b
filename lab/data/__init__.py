"""Training and evaluation data for the built-in model, made offline from a seed.

    python -m lab.data --out data/builtin --seed 0       # build (see __main__ for options)
    examples = load_dataset("data/builtin", "heldout")      # list[Example]

Sources: generated scenes (scenes.py, questions.py), photos shipped inside installed
packages (photos.py), the chatterbot-corpus English dialogues (chitchat.py), and sounds
made with espeak-ng, sox and numpy (sounds.py, audio_qa.py). build.py puts them together;
dataset.py defines the files and reads them back.
"""

from lab.data.build import BuildConfig, build_dataset
from lab.data.dataset import DataError, Example, load_dataset

__all__ = ["BuildConfig", "DataError", "Example", "build_dataset", "load_dataset"]
