"""Loading pretrained DiT weights: the facebookresearch/DiT checkpoint format and diffusers folders."""

import argparse
import json

import pytest
import torch
from diffusers import DiTTransformer2DModel

from minimaxdd.checkpoints import CheckpointError
from minimaxdd.dit import DiT, DiTConfig, mark_difffit_trainable
from minimaxdd.pretrained import infer_config, load_pretrained_dit, resolve_dit_source, resolve_vae_folder

from conftest import SMALL_DIT, original_state, perturbed

def inputs(batch=3, size=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, size, size, generator=g), torch.tensor([0, 417, 999]), torch.tensor([0, 3, 9])


# -- facebookresearch/DiT checkpoints --------------------------------------------------------------

def test_original_checkpoint_loads_with_inferred_config(tmp_path):
    model = perturbed(DiT(SMALL_DIT))
    torch.save(original_state(model), tmp_path / "DiT-S.pt")
    loaded = load_pretrained_dit(tmp_path / "DiT-S.pt", num_heads=4)
    assert loaded.config == SMALL_DIT
    assert resolve_dit_source(tmp_path / "DiT-S.pt") == "original"
    with torch.no_grad():
        assert torch.equal(loaded(*inputs()), model(*inputs()))


def test_training_checkpoint_prefers_ema(tmp_path):
    ema, raw = perturbed(DiT(SMALL_DIT), seed=0), perturbed(DiT(SMALL_DIT), seed=1)
    # as DiT's train.py saves it, argparse arguments included
    checkpoint = {"model": original_state(raw), "ema": original_state(ema), "args": argparse.Namespace(lr=1e-4)}
    torch.save(checkpoint, tmp_path / "0100000.pt")
    loaded = load_pretrained_dit(tmp_path / "0100000.pt", num_heads=4)
    with torch.no_grad():
        assert torch.equal(loaded(*inputs()), ema(*inputs()))
    torch.save({"model": original_state(raw)}, tmp_path / "model_only.pt")
    with torch.no_grad():
        assert torch.equal(load_pretrained_dit(tmp_path / "model_only.pt", num_heads=4)(*inputs()), raw(*inputs()))


# -- diffusers folders -----------------------------------------------------------------------------

def diffusers_dit(tie_embedders=True):
    model = DiTTransformer2DModel(num_attention_heads=4, attention_head_dim=16, in_channels=4, out_channels=8,
                                  num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=10)
    perturbed(model, seed=2)
    if tie_embedders:  # as in converted DiT weights: one shared embedder, copied into every block
        for block in model.transformer_blocks[1:]:
            block.norm1.emb.load_state_dict(model.transformer_blocks[0].norm1.emb.state_dict())
    return model


def diffusers_output(model, x, t, y):
    with torch.no_grad():
        return model(hidden_states=x, timestep=t, class_labels=y).sample


def test_diffusers_folder_matches_diffusers_forward(tmp_path):
    reference = diffusers_dit()
    reference.save_pretrained(tmp_path / "transformer")
    (tmp_path / "model_index.json").write_text("{}")
    x, t, y = inputs()
    for path in (tmp_path, tmp_path / "transformer"):
        assert resolve_dit_source(path) == "diffusers"
        model = load_pretrained_dit(path)
        assert model.config == DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2,
                                         num_heads=4, num_classes=10, learn_sigma=True)
        with torch.no_grad():
            ours = model(x, t, y)
        # at t = 0 the sinusoid is frequency-free, so stock diffusers must agree
        t0 = torch.zeros_like(t)
        with torch.no_grad():
            assert torch.allclose(model(x, t0, y), diffusers_output(reference, x, t0, y), atol=1e-4)
        # diffusers spaces its timestep frequencies by half - 1, DiT by half: with DiT's spacing they agree
        assert not torch.allclose(ours, diffusers_output(reference, x, t, y), atol=1e-4)
        for block in reference.transformer_blocks:
            block.norm1.emb.time_proj.downscale_freq_shift = 0
        assert torch.allclose(ours, diffusers_output(reference, x, t, y), atol=1e-4)
        for block in reference.transformer_blocks:
            block.norm1.emb.time_proj.downscale_freq_shift = 1


def test_legacy_diffusers_pipeline_with_bin_weights(tmp_path):
    # DiT pipelines saved by older diffusers: a Transformer2DModel with .bin weights
    reference = diffusers_dit()
    reference.save_pretrained(tmp_path / "transformer", safe_serialization=False)
    config = json.loads((tmp_path / "transformer" / "config.json").read_text())
    (tmp_path / "transformer" / "config.json").write_text(json.dumps(config | {"_class_name": "Transformer2DModel"}))
    assert (tmp_path / "transformer" / "diffusion_pytorch_model.bin").is_file()
    x, t, y = inputs()
    t = torch.zeros_like(t)
    with torch.no_grad():
        assert torch.allclose(load_pretrained_dit(tmp_path)(x, t, y), diffusers_output(reference, x, t, y), atol=1e-4)


def test_diffusers_untied_embedders_warn(tmp_path):
    diffusers_dit(tie_embedders=False).save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match=r"blocks \[1\] differ"):
        load_pretrained_dit(tmp_path)


def test_diffusers_weights_of_another_shape_fail(tmp_path):
    diffusers_dit().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"num_layers": 3, "attention_head_dim": 8}))
    expected = r"missing \['blocks\.2\..*x_embedder\.proj\.weight: \(64, 4, 2, 2\) != \(32, 4, 2, 2\)"
    with pytest.raises(CheckpointError, match=expected):
        load_pretrained_dit(tmp_path)


# -- the DiT-XL/2 Difffit set ----------------------------------------------------------------------

def test_dit_xl2_difffit_trainable_set():
    config = DiTConfig(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                       num_classes=1000, learn_sigma=True)
    with torch.device("meta"):
        model = DiT(config)
    trainable = set(mark_difffit_trainable(model))
    params = dict(model.named_parameters())
    gamma_blocks = {int(name.split(".")[1]) for name in params if "gamma" in name}
    assert gamma_blocks == set(range(14))
    h = 1152
    biases = 3 * h + 28 * (3 * h + h + 4 * h + h + 6 * h) + 2 * 2 * 8 + 2 * h  # x/t embedders, blocks, final layer
    gammas = 14 * (3 * h + h + h + h)  # attn.gamma1 (on qkv), attn.gamma2, gamma1, gamma2
    assert sum(params[name].numel() for name in trainable) == biases + 1001 * h + gammas == 1_739_552
    assert not any(name.endswith(".weight") and (".attn." in name or ".mlp." in name) for name in trainable)
    assert "pos_embed" not in trainable and "t_embedder.mlp.0.weight" not in trainable
    # the released checkpoint's shapes give back this configuration, heads from the model zoo
    assert infer_config(original_state(model), "DiT-XL-2-256x256.pt", num_heads=None) == config


# -- failures --------------------------------------------------------------------------------------

def test_not_a_checkpoint(tmp_path):
    (tmp_path / "noise.pt").write_bytes(torch.randint(0, 256, (512,), dtype=torch.uint8).numpy().tobytes())
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    torch.save(torch.nn.Linear(3, 3).state_dict(), tmp_path / "linear.pt")
    for name in ("noise.pt", "notes.pt"):
        with pytest.raises(CheckpointError, match=f"{name} is not a readable torch checkpoint"):
            load_pretrained_dit(tmp_path / name)
    with pytest.raises(CheckpointError, match=r"linear\.pt is not a DiT checkpoint: it lacks \['x_embedder"):
        load_pretrained_dit(tmp_path / "linear.pt")


def test_wrong_shape_names_key_and_shapes(tmp_path):
    state = original_state(DiT(SMALL_DIT))
    state["blocks.1.mlp.fc2.weight"] = torch.zeros(64, 128)
    torch.save(state, tmp_path / "bad.pt")
    expected = r"bad\.pt does not fit.*blocks\.1\.mlp\.fc2\.weight: \(64, 128\) != \(64, 256\)"
    with pytest.raises(CheckpointError, match=expected):
        load_pretrained_dit(tmp_path / "bad.pt", num_heads=4)


def test_folders_and_missing_paths(tmp_path):
    (tmp_path / "empty").mkdir()
    for check in (resolve_dit_source, load_pretrained_dit, resolve_vae_folder):
        with pytest.raises(CheckpointError, match="empty: no config.json"):
            check(tmp_path / "empty")
        with pytest.raises(CheckpointError, match="absent does not exist"):
            check(tmp_path / "absent")
    (tmp_path / "pipe" / "vae").mkdir(parents=True)
    (tmp_path / "pipe" / "vae" / "config.json").write_text('{"_class_name": "AutoencoderKL"}')
    assert resolve_vae_folder(tmp_path / "pipe") == tmp_path / "pipe" / "vae"
    assert resolve_vae_folder(tmp_path / "pipe" / "vae") == tmp_path / "pipe" / "vae"
    # a VAE folder is no DiT
    with pytest.raises(CheckpointError, match="AutoencoderKL.*not a DiT"):
        resolve_dit_source(tmp_path / "pipe" / "vae")
