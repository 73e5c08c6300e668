"""Method names: variants, study points and the settings each job receives."""

import pytest

from minimaxdd import methods

CONFIG = {
    "finetune": {"batch_size": 8, "epochs": 8, "lr": 1e-3, "ema_decay": 0.9999, "memory_size": 64,
                 "rep_weight": 0.002, "div_weight": 0.008, "seed": 0, "train_steps": None},
    "generate": {"steps": 50, "guidance_scale": 4.0, "batch_size": 64, "seed": 0, "sampler": "ddpm", "eta": 0.0},
    "mgd3": {"scale": 0.1, "stop_step": 25, "seed": 0},
    "variants": {"rep_mean": {"representativeness": "mean", "diversity": "off"}},
    "external": {},
}


def test_study_points_share_the_default_and_name_the_rest():
    assert methods.study_point("minimax", "rep_weight", 0.002, CONFIG) == "minimax"
    assert methods.study_point("minimax", "rep_weight", 0.01, CONFIG) == "minimax@rep_weight=0.01"
    assert methods.study_point("minimax", "steps", 100, CONFIG) == "minimax@steps=100"


def test_an_epochs_study_trains_by_epochs_when_the_method_trains_by_steps():
    by_steps = {**CONFIG, "finetune": {**CONFIG["finetune"], "train_steps": 12000}}
    assert methods.study_point("minimax", "epochs", 8, by_steps) == "minimax@epochs=8"  # not the 12000-step model
    assert methods.finetune_settings("minimax@epochs=8", by_steps)["train_steps"] is None
    assert methods.finetune_settings("minimax", by_steps)["train_steps"] == 12000
    assert methods.study_point("minimax", "epochs", 8, CONFIG) == "minimax"


def test_generation_overrides_reuse_the_finetuning():
    assert methods.finetune_name("minimax@steps=100") == "minimax"
    assert methods.finetune_name("minimax@memory_size=16,steps=25") == "minimax@memory_size=16"
    assert methods.generate_settings("minimax@steps=100", CONFIG)["steps"] == 100
    assert methods.generate_settings("minimax@guidance_scale=2.5", CONFIG)["guidance_scale"] == 2.5


def test_finetune_settings_carry_forms_and_typed_overrides():
    settings = methods.finetune_settings("minimax@memory_size=16", CONFIG)
    assert settings["memory_size"] == 16 and isinstance(settings["memory_size"], int)
    assert (settings["representativeness"], settings["diversity"]) == ("minimax", "minimax")
    assert methods.finetune_settings("rep_mean", CONFIG)["representativeness"] == "mean"
    difffit = methods.finetune_settings("difffit", CONFIG)
    assert "rep_weight" not in difffit and difffit["diversity"] == "off"  # unused settings never rerun it


def test_method_checks():
    for name in ("random", "dit@steps=25", "rep_mean@epochs=4", "minimax@div_weight=0.1"):
        methods.check(name, CONFIG)
    with pytest.raises(methods.MethodError, match="unknown method 'magic'"):
        methods.check("magic", CONFIG)
    with pytest.raises(methods.MethodError, match="'rep_weight' is not one of steps"):
        methods.check("dit@rep_weight=0.1", CONFIG)
    with pytest.raises(methods.MethodError, match="real-data methods and sets from elsewhere take no settings"):
        methods.check("random@steps=3", CONFIG)
    assert methods.is_generated("rep_mean", CONFIG) and not methods.is_generated("herding", CONFIG)


def test_mgd3_samples_the_pretrained_or_a_fine_tuned_model_and_shares_its_fine_tuning():
    assert methods.is_generated("mgd3", CONFIG) and methods.finetune_name("mgd3") == "dit"
    assert methods.finetune_name("mgd3_minimax@rep_weight=0.004,steps=25") == "minimax@rep_weight=0.004"
    assert methods.generate_settings("mgd3_rep_mean", CONFIG)["guidance"] == {"method": "mgd3", "scale": 0.1,
                                                                               "stop_step": 25}
    assert "guidance" not in methods.generate_settings("minimax", CONFIG)
    methods.check("mgd3_minimax@eta=0.5", CONFIG)
    with pytest.raises(methods.MethodError, match="unknown method 'mgd3_magic'"):
        methods.check("mgd3_magic", CONFIG)
    with pytest.raises(methods.MethodError, match="mgd3 guidance moves the ancestral sampler.s mean"):
        methods.check("mgd3@sampler=ddim", CONFIG)
    methods.check("mgd3@steps=27", CONFIG)  # guided at chain index 26 alone
    with pytest.raises(methods.MethodError, match=r"mgd3.stop_step 25 guides none of its 26 denoising steps"):
        methods.check("mgd3@steps=26", CONFIG)  # its set would be plain DiT's under MGD3's name
    assert methods.generate_settings("minimax@sampler=ddim", CONFIG)["sampler"] == "ddim"
    ddim_steps = methods.study_point("minimax@sampler=ddim", "steps", 10, CONFIG)
    assert ddim_steps == "minimax@sampler=ddim,steps=10"
    assert methods.generate_settings(ddim_steps, CONFIG) == {**CONFIG["generate"], "sampler": "ddim", "steps": 10}
