"""Spoken replies: espeak-ng synthesis, sentences cut as the text streams, speech that ASR understands."""

from __future__ import annotations

import time

import numpy as np
import pytest
from speech_helpers import ScriptedBackend

from engine.preprocess import read_audio
from engine.speech import tts
from engine.speech.reply import ReplyEvent, spoken_reply
from engine.speech.tts import SentenceChunker, SpeechSynthesisError, speak_stream, synthesize, wav_bytes
from engine.types import Conversation, Turn
from lab.speech.metrics import word_error_rate


def chunk_all(pieces, **options):
    chunker = SentenceChunker(**options)
    emitted = [(i, s) for i, piece in enumerate(pieces) for s in chunker.push(piece)]
    return emitted + [(len(pieces), s) for s in chunker.flush()]


def test_synthesis_gives_a_waveform_that_asr_understands(transcriber):
    waveform, rate = synthesize("What color is the circle in this picture?")
    assert rate == 22050 and waveform.dtype == np.float32 and waveform.ndim == 1
    assert 1.0 < waveform.size / rate < 4.0 and 0.1 < np.abs(waveform).max() <= 1.0
    heard = transcriber.transcribe(read_audio(wav_bytes(waveform, rate)).numpy())
    assert word_error_rate("what color is the circle in this picture", heard.text) <= 0.15


def test_wav_bytes_round_trip():
    waveform = np.sin(np.linspace(0, 2 * np.pi * 440, 16000)).astype(np.float32) * 0.5
    decoded = read_audio(wav_bytes(waveform, 16000)).numpy()
    np.testing.assert_allclose(decoded, waveform, atol=1e-3)


def test_markdown_is_not_read_aloud():
    assert tts.speakable("**Bold** and `code`\n# Title\n- item one\n1. first") == "Bold and code Title item one first"
    silent, _ = synthesize("** `` #")
    assert silent.size == 0


def test_missing_espeak_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no espeak-ng on the PATH
    with pytest.raises(SpeechSynthesisError, match="apt-get install espeak-ng"):
        synthesize("Hello.")


def test_unknown_voice_is_a_clear_error():
    with pytest.raises(SpeechSynthesisError, match="espeak-ng --voices"):
        synthesize("Hello.", voice="no-such-voice")


def test_each_sentence_is_released_as_soon_as_it_ends():
    pieces = ["Hello the", "re. How are", " you", "? Dr. Smith is 3.5 m tall.", " Fine", "!\n", "- a list\n", "the end"]
    assert chunk_all(pieces) == [
        (1, "Hello there."),
        (3, "How are you?"),
        (4, "Dr. Smith is 3.5 m tall."),
        (5, "Fine!"),
        (6, "- a list"),
        (8, "the end"),
    ]


def test_quotes_abbreviations_and_initials_stay_in_their_sentence():
    text = 'She said "Stop!" and left. J. R. R. Tolkien wrote it, e.g. in 1937. Really?! Yes.'
    sentences = [s for _, s in chunk_all(list(text))]  # one character at a time
    assert sentences == ['She said "Stop!" and left.', "J. R. R. Tolkien wrote it, e.g. in 1937.", "Really?!", "Yes."]


def test_long_sentences_are_cut_at_a_clause_then_at_a_space():
    long = "one two three, " * 12 + "and the end."
    sentences = [s for _, s in chunk_all([long], clause_chars=60, max_chars=100)]
    assert len(sentences) > 1 and all(len(s) <= 100 for s in sentences)
    assert " ".join(sentences) == long.strip()
    words = [s for _, s in chunk_all(["word " * 60], clause_chars=60, max_chars=100)]
    assert all(len(s) <= 100 for s in words) and " ".join(words).split() == ["word"] * 60


def test_speak_stream_yields_the_first_sentence_before_the_text_is_complete():
    pulled = []

    def pieces():
        for piece in ["The first sentence", " is short.", " The second one", " takes a while", " to arrive."]:
            pulled.append(piece)
            yield piece

    stream = speak_stream(pieces())
    sentence, waveform, rate = next(stream)
    assert sentence == "The first sentence is short." and waveform.size > rate // 2
    assert len(pulled) == 3  # only one piece past the sentence end was needed
    assert [s for s, _, _ in stream] == ["The second one takes a while to arrive."]


def test_spoken_reply_streams_text_and_speech_and_speaks_before_the_reply_ends():
    backend = ScriptedBackend(
        "Sure. I can see a red circle and a blue square in the picture you sent me today.", delay=0.03
    )
    conversation = Conversation(turns=[Turn("user", "What is in the picture?")])
    events: list[ReplyEvent] = list(spoken_reply(backend, conversation))
    text = "".join(e.text for e in events if e.kind == "text")
    speech = [e for e in events if e.kind == "speech"]
    assert text == backend.reply and [e.text for e in speech][0] == "Sure."
    assert speech[0].at < backend.finished_at  # the first sentence was audio before the reply ended
    assert all(e.waveform.size and e.sample_rate == 22050 for e in speech)
    quiet = list(spoken_reply(backend, conversation, speak=False))
    assert all(e.kind == "text" for e in quiet)


def test_synthesis_is_fast_enough_to_keep_up():
    started = time.perf_counter()
    waveform, rate = synthesize("This sentence should take far less time to make than to hear.")
    assert time.perf_counter() - started < 0.5 * waveform.size / rate
