"""Notebook 09's speech feature cache: mels, teacher features and transcripts of synthetic clips.

``python -m cookbook.teachers.speech_cache build`` (FULL, ~10-15 min on 2 cores) synthesises
``N_TRAIN + N_EVAL`` WordNet glosses with Piper (``cookbook.data.audio``), then stores per clip:

- ``mel``: Whisper log-mel (80 x T, T a multiple of 4), float16;
- ``sm``: the speech-model target, Whisper tiny.en encoder states averaged over its embedding
  output and its 4 blocks (DM-Codec's "avg" layer choice), 50 Hz average-pooled by 2 to the codec's
  25 Hz frames (T/4 x 384), float16;
- ``lm``: the LM target, all-MiniLM-L6-v2's hidden states averaged over its 7 layers, the
  transcript padded to the number of codec frames as DM-Codec's official extraction does (token i
  on frame i; T/4 x 384), float16;
- the transcript, its espeak phonemes (Piper's phonemizer; stress marks removed) and, for the
  evaluation clips, the 16 kHz waveform (int16) for SI-SDR and listening.

``--fast`` writes the first 24 training and 8 evaluation clips of the same build to
``assets/speech/speech-fast.npz`` (~4 MB): FAST mode reads it and runs no teacher. The FULL file
goes to the cache folder (``$COOKBOOK_CACHE/speech/``). Everything in it is derived from the
MIT Piper voice, MIT Whisper weights and the Apache-2.0 MiniLM: nothing GPL.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cookbook.config import ASSETS, cache_dir, is_fast
from cookbook.data._common import pack_strings, read_npz, unpack_strings, write_npz
from cookbook.data.audio import SAMPLE_RATE, gloss_sentences, log_mel, piper_voice, synthesize

N_TRAIN, N_EVAL = 400, 40
FAST_TRAIN, FAST_EVAL = 24, 8
FAST_ASSET = "speech/speech-fast.npz"
STRIDE = 4  # mel frames per codec frame (100 Hz -> 25 Hz)
SM_TEACHER = "tiny.en"
_STRESS = str.maketrans("", "", "ˈˌː")


@dataclass
class SpeechSet:
    """Clips of one split: per-clip tensors (float32) and strings; audio only for evaluation."""

    mel: list[Tensor]  # (80, T)
    sm: list[Tensor]  # (T/4, 384)
    lm: list[Tensor]  # (T/4, 384)
    texts: list[str]
    phonemes: list[str]
    audio: list[np.ndarray] | None

    def __len__(self) -> int:
        return len(self.mel)

    def subset(self, n: int) -> SpeechSet:
        return self.select(range(min(n, len(self))))

    def select(self, rows) -> SpeechSet:
        """The clips ``rows`` (any iterable of indices), in that order."""
        rows = list(rows)
        return SpeechSet([self.mel[i] for i in rows], [self.sm[i] for i in rows], [self.lm[i] for i in rows],
                         [self.texts[i] for i in rows], [self.phonemes[i] for i in rows],
                         None if self.audio is None else [self.audio[i] for i in rows])


def full_path() -> Path:
    return cache_dir() / "speech" / f"speech-{N_TRAIN}-{N_EVAL}.npz"


def whisper_layer_average(model, mel: Tensor) -> Tensor:
    """Mean of Whisper's encoder states over [positional input, block 1, ..., LN(block n)] (B, T/2, d)."""
    enc = model.model.encoder
    x = torch.nn.functional.gelu(enc.conv1(mel))
    x = torch.nn.functional.gelu(enc.conv2(x)).transpose(1, 2)
    x = x + enc.embed_positions.weight[: x.shape[1]]
    states = [x]
    for block in enc.layers:
        x = block(x, attention_mask=None)
        x = x[0] if isinstance(x, tuple) else x
        states.append(x)
    states[-1] = enc.layer_norm(x)
    return torch.stack(states).mean(0)


def lm_frames(model, tokenizer, text: str, n_frames: int) -> Tensor:
    """MiniLM states averaged over layers, the text padded/truncated to ``n_frames`` tokens (n_frames, 384)."""
    enc = tokenizer(text, return_tensors="pt", padding="max_length", truncation=True, max_length=n_frames)
    out = model(**enc, output_hidden_states=True)
    return torch.stack(out.hidden_states).mean(0)[0]


def phonemize(text: str) -> str:
    """espeak IPA phonemes of ``text`` through Piper's phonemizer, without stress or length marks."""
    words = piper_voice().phonemize(text)
    return " ".join("".join(sentence) for sentence in words).translate(_STRESS).strip()


@torch.no_grad()
def build(n_train: int = N_TRAIN, n_eval: int = N_EVAL, out: Path | None = None, progress: bool = True) -> Path:
    """Synthesise, featurise and write the cache (train clips first, then evaluation clips)."""
    from tqdm.auto import tqdm
    from transformers import AutoModel, AutoTokenizer

    from cookbook.data.wordnet import _arrays, locate_wordnet
    from cookbook.teachers.text import minilm_path
    from cookbook.teachers.whisper import load_whisper

    glosses = unpack_strings(_arrays(locate_wordnet())["glosses"])
    texts = gloss_sentences(glosses, n_train + n_eval, seed=0)
    whisper = load_whisper(SM_TEACHER)
    lm_tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    lm = AutoModel.from_pretrained(str(minilm_path())).eval()
    arrays: dict[str, list] = {k: [] for k in ("mel", "sm", "lm", "frames", "audio", "audio_len")}
    phones, start = [], time.perf_counter()
    for i, text in enumerate(tqdm(texts, desc="synthesise + features", disable=not progress)):
        audio = synthesize(text)
        mel = log_mel(torch.from_numpy(audio))  # (1, 80, T)
        T = mel.shape[-1] // STRIDE * STRIDE
        mel = mel[..., :T]
        sm = whisper_layer_average(whisper, mel)[0]  # (T/2, 384)
        sm = sm.view(T // STRIDE, 2, -1).mean(1)
        arrays["mel"].append(mel[0].T.half().numpy())  # stored (T, 80)
        arrays["sm"].append(sm.half().numpy())
        arrays["lm"].append(lm_frames(lm, lm_tok, text, T // STRIDE).half().numpy())
        arrays["frames"].append(T)
        phones.append(phonemize(text))
        if i >= n_train:
            arrays["audio"].append(np.clip(audio[: T * 160] * 32767, -32768, 32767).astype(np.int16))
            arrays["audio_len"].append(len(arrays["audio"][-1]))
    out = out or full_path()
    write_npz(out, {
        "mel": np.concatenate(arrays["mel"]), "sm": np.concatenate(arrays["sm"]),
        "lm": np.concatenate(arrays["lm"]), "frames": np.array(arrays["frames"], dtype=np.int32),
        "audio": np.concatenate(arrays["audio"]), "audio_len": np.array(arrays["audio_len"], dtype=np.int32),
        "texts": pack_strings(texts), "phonemes": pack_strings(phones),
        "n_train": np.array(n_train, dtype=np.int32),
        "sample_rate": np.array(SAMPLE_RATE, dtype=np.int32)}, level=9)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - start:.0f} s)")
    return out


def _split(a: dict[str, np.ndarray]) -> tuple[SpeechSet, SpeechSet]:
    frames = a["frames"].astype(np.int64)
    n_train = int(a["n_train"].reshape(-1)[0])
    mel_off = np.concatenate([[0], np.cumsum(frames)])
    tok_off = mel_off // STRIDE
    texts, phones = unpack_strings(a["texts"]), unpack_strings(a["phonemes"])
    audio_off = np.concatenate([[0], np.cumsum(a["audio_len"].astype(np.int64))])

    def clips(rows: range, with_audio: bool) -> SpeechSet:
        f32 = lambda x: torch.from_numpy(x.astype(np.float32))
        return SpeechSet(
            [f32(a["mel"][mel_off[i]:mel_off[i + 1]].T) for i in rows],
            [f32(a["sm"][tok_off[i]:tok_off[i + 1]]) for i in rows],
            [f32(a["lm"][tok_off[i]:tok_off[i + 1]]) for i in rows],
            [texts[i] for i in rows], [phones[i] for i in rows],
            [a["audio"][audio_off[j]:audio_off[j + 1]].astype(np.float32) / 32767 for j in range(len(rows))]
            if with_audio else None)

    return clips(range(n_train), False), clips(range(n_train, len(frames)), True)


def write_fast(full: Path | None = None) -> Path:
    """The committed FAST subset: the first FAST_TRAIN training and FAST_EVAL evaluation clips."""
    a = read_npz(full or full_path())
    n_train = int(a["n_train"].reshape(-1)[0])
    frames = a["frames"].astype(np.int64)
    rows = list(range(FAST_TRAIN)) + list(range(n_train, n_train + FAST_EVAL))
    mel_off = np.concatenate([[0], np.cumsum(frames)])
    tok_off = mel_off // STRIDE
    audio_off = np.concatenate([[0], np.cumsum(a["audio_len"].astype(np.int64))])
    texts, phones = unpack_strings(a["texts"]), unpack_strings(a["phonemes"])
    out = ASSETS / FAST_ASSET
    write_npz(out, {
        "mel": np.concatenate([a["mel"][mel_off[i]:mel_off[i + 1]] for i in rows]),
        "sm": np.concatenate([a["sm"][tok_off[i]:tok_off[i + 1]] for i in rows]),
        "lm": np.concatenate([a["lm"][tok_off[i]:tok_off[i + 1]] for i in rows]),
        "frames": frames[rows].astype(np.int32),
        "audio": a["audio"][: audio_off[FAST_EVAL]], "audio_len": a["audio_len"][:FAST_EVAL],
        "texts": pack_strings([texts[i] for i in rows]), "phonemes": pack_strings([phones[i] for i in rows]),
        "n_train": np.array(FAST_TRAIN, dtype=np.int32), "sample_rate": a["sample_rate"]}, level=9)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): add it to assets/MANIFEST")
    return out


def load_speech(fast: bool | None = None) -> tuple[SpeechSet, SpeechSet, str]:
    """(train, eval, source): the committed FAST subset in FAST mode, else the FULL cache.

    FULL builds nothing by itself: a missing cache raises FileNotFoundError naming the command.
    """
    from cookbook.data._common import committed

    fast = is_fast() if fast is None else fast
    if fast:
        path = committed(FAST_ASSET)
        if path is None:
            raise FileNotFoundError(f"assets/{FAST_ASSET} missing: git checkout it, or rebuild with "
                                    "python -m cookbook.teachers.speech_cache build --fast")
    else:
        path = full_path()
        if not path.exists():
            raise FileNotFoundError(f"{path} missing: build it once with `python -m cookbook.teachers.speech_cache build` "
                                    "(Piper TTS + Whisper tiny.en + MiniLM, ~10-15 min on 2 cores; needs the 'speech' extra)")
    train, evaluation = _split(read_npz(path))
    return train, evaluation, str(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cookbook.teachers.speech_cache")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="synthesise the clips and cache the teachers' features (FULL)")
    b.add_argument("--fast", action="store_true", help="also write the committed FAST subset into assets/")
    args = parser.parse_args(argv)
    path = full_path() if full_path().exists() else build()
    if args.fast:
        write_fast(path)


if __name__ == "__main__":
    main()
