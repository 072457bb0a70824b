"""One model copy, many threads: every concurrent stream equals the same stream alone."""

from concurrent.futures import ThreadPoolExecutor

from tiny_models import tiny_backend

from engine.generation import active_caches
from engine.types import Conversation, GenerationConfig, Turn

QUESTIONS = [
    "hello there",
    "What color is the circle?",
    "Is that speech or music?",
    "how are you today?",
    "There are three squares",
    "I am fine",
    "thank you very much",
    "a blue star",
]


def test_eight_threads_streaming_at_once_match_their_solo_outputs(image_png, speech_wav_16k):
    backend = tiny_backend(seed=11)
    jobs = []
    for i, question in enumerate(QUESTIONS):
        media = dict(images=[image_png]) if i % 3 == 0 else dict(audio=[speech_wav_16k]) if i % 3 == 1 else {}
        config = GenerationConfig(max_new_tokens=30, temperature=0 if i % 2 else 0.9, seed=i)
        jobs.append((Conversation("", [Turn("user", question, **media)]), config))

    def run(job):
        conversation, config = job
        return "".join(backend.stream(conversation, config))

    alone = [run(job) for job in jobs]
    weights_before = backend.model.lm_head.weight.data_ptr()
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(run, jobs * 2))
    assert together == alone * 2
    assert backend.model.lm_head.weight.data_ptr() == weights_before
    assert active_caches() == 0
