"""Sound clips: real espeak-ng and sox, labels that match what is heard, a cache by content."""

from __future__ import annotations

import random

import numpy as np
import pytest

from engine.preprocess import load_audio_features, read_audio
from lab.data.audio_qa import UserTurn, clip_conversation, random_clip, sentence, sound_plans, spoken_dialogue
from lab.data.chitchat import Dialogue
from lab.data.sounds import RATE, Clip, note_hz, read_wav, render_all, render_cached, rms_db

SPEECH = Clip(kind="speech", text="The red ball is big.", voice="en-gb+f3", speed=160, pitch=50, gain_db=-2.0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sound-cache")


def test_speech_is_heard_silence_is_silent_and_loud_is_louder(cache):
    quiet = Clip(**{**SPEECH.__dict__, "level": "quiet", "gain_db": -34.0})
    noisy = Clip(**{**SPEECH.__dict__, "snr_db": 5.0, "reverb": 50, "seed": 3})
    silence = Clip(kind="silence", level="silent", seconds=1.5, arrangement="digital")
    room = Clip(kind="silence", level="silent", seconds=1.5, arrangement="room", seed=1)
    paths = render_all([SPEECH, quiet, noisy, silence, room], cache, workers=1)
    speech, quiet_speech, noisy_speech, zeros, faint = (read_wav(p) for p in paths)
    assert 0.8 < len(speech) / RATE < 4, "espeak-ng should say five words in about 1.5 s"
    assert rms_db(speech) > -30
    assert np.abs(speech).max() == pytest.approx(10 ** (-2 / 20), abs=0.01)
    assert rms_db(speech) - rms_db(quiet_speech) > 25
    assert len(noisy_speech) > len(speech), "reverb adds a tail"
    assert not np.array_equal(noisy_speech[: len(speech)], speech)
    assert np.all(zeros == 0) and len(zeros) == int(1.5 * RATE)
    assert rms_db(faint) < -60
    # The engine reads every clip back as 16 kHz mono.
    assert read_audio(paths[0]).shape == (len(speech),)
    assert load_audio_features(paths[0]).shape[0] == 64


def test_tones_chords_and_noise_sound_as_labelled(cache):
    tone = Clip(kind="tone", seconds=1.0, notes=("A4",), gain_db=-2.0)
    low = Clip(kind="tone", seconds=1.0, notes=("C3",))
    chord = Clip(kind="music", seconds=1.5, notes=("C4", "E4", "G4"), arrangement="chord", timbre="organ", reverb=30)
    noise = Clip(kind="noise", seconds=1.0, arrangement="pink", seed=2)
    tone_wave, low_wave, chord_wave, noise_wave = (read_wav(p) for p in render_all([tone, low, chord, noise], cache, 1))
    spectrum = np.abs(np.fft.rfft(tone_wave))
    assert np.fft.rfftfreq(len(tone_wave), 1 / RATE)[spectrum.argmax()] == pytest.approx(440, abs=2)
    assert note_hz("A4") == 440 and note_hz("C#4") == pytest.approx(277.18, abs=0.01)
    assert tone.label()["pitch"] == "high" and low.label()["pitch"] == "low"
    peaks = np.fft.rfftfreq(len(chord_wave), 1 / RATE)[np.argsort(np.abs(np.fft.rfft(chord_wave)))[-40:]]
    for hz in (note_hz("C4"), note_hz("E4"), note_hz("G4")):
        assert np.min(np.abs(peaks - hz)) < 3, f"{hz:.0f} Hz missing from the chord"
    assert rms_db(noise_wave) > -20 and len(low_wave) == RATE


def test_rendering_is_reproducible_and_cached(tmp_path):
    first = render_cached(SPEECH, tmp_path / "a")
    second = render_cached(SPEECH, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    assert first.name == f"{SPEECH.key()}.wav"
    before = first.stat().st_mtime_ns
    assert render_cached(SPEECH, tmp_path / "a") == first and first.stat().st_mtime_ns == before
    assert Clip(**{**SPEECH.__dict__, "pitch": 60}).key() != SPEECH.key()


def test_random_clips_carry_the_right_labels():
    rng = random.Random(0)
    for kind in ("speech", "music", "tone", "noise", "silence"):
        for _ in range(20):
            clip = random_clip(rng, kind, "Hello there." if kind == "speech" else "")
            label = clip.label()
            assert label["kind"] == kind
            if kind == "silence":
                assert label["loudness"] == "silent"
            else:
                assert label["loudness"] in ("loud", "quiet")
                assert (clip.gain_db > -4) == (label["loudness"] == "loud")
            assert ("text" in label) == (kind == "speech")


def test_questions_about_a_clip_have_fixed_answers():
    rng = random.Random(1)
    seen = set()
    for _ in range(200):
        clip = random_clip(rng, rng.choice(("speech", "tone", "noise", "silence", "music")), sentence(rng))
        plan = clip_conversation(clip, rng)
        seen.add(plan.qtype)
        first = plan.turns[0]
        assert isinstance(first, UserTurn) and first.clips == (clip,) and first.text
        if plan.qtype == "transcript":
            assert plan.answer == f"You said: {clip.text}"
        elif plan.qtype == "loudness":
            assert plan.answer == f"It is {clip.level}."
        elif plan.qtype == "sound":
            assert plan.answer.startswith("It is") and clip.kind.rstrip("e") in plan.answer.replace("silence", "silenc")
        elif plan.qtype == "pitch":
            assert plan.answer == f"It is a {clip.label()['pitch']} tone."
    assert seen == {"sound", "loudness", "transcript", "pitch"}


def test_spoken_dialogues_have_audio_only_user_turns():
    dialogue = Dialogue("greetings", ("Hello", "Hi", "How are you?", "I am fine."))
    plan = spoken_dialogue(dialogue, random.Random(0))
    users = [t for t in plan.turns if isinstance(t, UserTurn)]
    assert [t.text for t in users] == ["", ""]
    assert [t.clips[0].text for t in users] == ["Hello", "How are you?"]
    assert len({t.clips[0].voice for t in users}) == 1, "one speaker per dialogue"
    assert plan.qtype == "spoken" and plan.answer == "I am fine."


def test_sound_plans_fill_the_count_and_avoid_the_other_splits_sentences():
    dialogues = [Dialogue("x", (f"Question number {i}?", f"Answer {i}.")) for i in range(30)]
    plans = sound_plans("7/sound/train", 120, dialogues)
    assert sum(len(p.clips) for p in plans) >= 120
    assert plans == sound_plans("7/sound/train", 120, dialogues)
    said = frozenset(c.text for p in plans for c in p.clips if c.text)
    other = sound_plans("7/sound/heldout", 120, [], avoid_texts=said)
    assert not any(c.text in said for p in other for c in p.clips if c.text)
