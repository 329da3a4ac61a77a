"""Backbones, freezing, weight loading and the AudioModel (tiny inputs, CPU)."""

from __future__ import annotations

import urllib.error

import pytest
import torch
from torchvision import models as tvm

from sonicsearch.config import FeatureConfig, ModelConfig, TrainConfig
from sonicsearch.errors import ModelError, WeightsUnavailableError
from sonicsearch.model.backbones import ARCHS, AudioModel, SpecAugment, create_backbone
from sonicsearch.model.checkpoint import save_checkpoint

EMBED = {"resnet18": 512, "resnet34": 512, "densenet121": 1024, "vgg11_bn": 4096,
         "vgg16_bn": 4096, "alexnet": 4096}
N_STAGES = {"resnet18": 5, "resnet34": 5, "densenet121": 5, "vgg11_bn": 6, "vgg16_bn": 6,
            "alexnet": 4}
SMALL = FeatureConfig(sample_rate=8000, n_fft=256, hop_length=128, n_mels=32,
                      window_seconds=1.0, hop_seconds=0.5)


def _step(model, x, y, steps=1, lr=0.1):
    opt = torch.optim.SGD(model.param_groups(lr, lr, 1e-4), lr=lr, momentum=0.9)
    for _ in range(steps):
        logits, _ = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_builds_and_trains(arch):
    torch.manual_seed(0)
    model = create_backbone(arch, num_classes=3, weights="none", dropout=0.1)
    assert (model.arch, model.num_classes, model.embed_dim) == (arch, 3, EMBED[arch])
    stages = model.stages()
    assert len(stages) == N_STAGES[arch]
    in_stages = [id(p) for s in stages for p in s.parameters()]
    assert sorted(in_stages) == sorted(id(p) for p in model.net.parameters())  # each once
    x = torch.randn(2, 1, 32, 48)
    logits, emb = model(x)
    assert logits.shape == (2, 3) and emb.shape == (2, EMBED[arch])
    assert torch.equal(model.forward_head(emb, pre_logits=True), emb)
    head = _snapshot(model.head)
    _step(model, x, torch.tensor([0, 2]))
    assert _changed(head, model.head) == {"fc.weight", "fc.bias"}


@pytest.mark.parametrize("shape", [(1, 1, 96, 130), (2, 1, 64, 64), (1, 1, 8, 20)])
def test_small_inputs_work_for_pooling_heavy_archs(shape):
    for arch in ("alexnet", "densenet121"):
        logits, emb = create_backbone(arch, 2).eval()(torch.randn(shape))
        assert logits.shape == (shape[0], 2) and emb.shape == (shape[0], EMBED[arch])


def test_unknown_arch_names_the_valid_ones():
    with pytest.raises(ModelError, match="unknown arch 'resnet19'; choose one of: alexnet, "
                       "densenet121, resnet18, resnet34, vgg11_bn, vgg16_bn"):
        create_backbone("resnet19", 3)


def test_bad_arguments_are_typed_errors():
    model = create_backbone("resnet18", 2)
    for bad in (6, -1, "some", True, 1.5):
        with pytest.raises(ModelError, match="0..5 or 'all'"):
            model.set_trainable(bad)
    with pytest.raises(ModelError, match="num_classes"):
        create_backbone("resnet18", -1)
    with pytest.raises(ModelError, match="dropout"):
        create_backbone("resnet18", 2, dropout=1.0)


@pytest.mark.parametrize("arch", ["resnet18", "densenet121"])
def test_head_only_keeps_backbone_and_batchnorm_stats(arch):
    torch.manual_seed(0)
    model = create_backbone(arch, 3)
    model.set_trainable(0)
    model.train()
    assert not any(p.requires_grad for p in model.net.parameters())
    bns = [m for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns) and model.head.training
    before = _snapshot(model)
    _step(model, torch.randn(4, 1, 32, 48), torch.tensor([0, 1, 2, 0]), steps=3)
    assert _changed(before, model) == {"head.fc.weight", "head.fc.bias"}
    model.set_trainable("all")
    model.train()
    assert all(m.training for m in bns)


def test_top_two_stages_train_and_the_rest_stays():
    torch.manual_seed(0)
    model = create_backbone("resnet18", 3)
    model.set_trainable(2)
    model.train()
    stages = model.stages()
    before = [_snapshot(s) for s in stages]
    head = _snapshot(model.head)
    _step(model, torch.randn(4, 1, 32, 48), torch.tensor([0, 1, 2, 0]), steps=2)
    for i, (stage, snap) in enumerate(zip(stages, before)):
        changed = _changed(snap, stage)
        if i < 3:
            assert not changed, f"frozen stage {i} changed: {sorted(changed)[:3]}"
        else:  # every parameter and BatchNorm statistic of a trained stage moves
            params = {k for k in snap if not k.endswith("num_batches_tracked")}
            assert changed >= params
    assert _changed(head, model.head) == {"fc.weight", "fc.bias"}


def test_param_groups_discriminative_lr_and_no_decay_on_norms():
    model = create_backbone("resnet18", 3)
    model.set_trainable(1)
    groups = model.param_groups(0.1, 0.01, 5e-4)
    assert [g["name"] for g in groups] == ["head", "head_no_decay", "backbone",
                                           "backbone_no_decay"]
    assert [g["lr"] for g in groups] == [0.1, 0.1, 0.01, 0.01]
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0, 5e-4, 0.0]
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sorted(ids) == sorted(id(p) for p in trainable)
    assert {id(p) for p in model.stages()[-1].parameters()} <= set(ids)
    assert all(p.ndim <= 1 for g in groups if "no_decay" in g["name"] for p in g["params"])
    model.reset_classifier(0)
    model.set_trainable(0)
    with pytest.raises(ModelError, match="no trainable parameters"):
        model.param_groups(0.1, 0.01, 5e-4)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """A private torch hub cache; any download attempt fails like an offline machine."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    yield tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(old)


def test_imagenet_weights_load_from_the_hub_cache(hub_dir):
    hub_dir.mkdir(parents=True)
    state = tvm.resnet18().state_dict()
    torch.save(state, hub_dir / "resnet18-f37072fd.pth")
    model = create_backbone("resnet18", 4, weights="imagenet")
    conv1 = model.net.conv1.weight
    assert conv1.shape == (64, 1, 7, 7)
    assert torch.equal(conv1, state["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.net.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert model.head.fc.weight.shape == (4, 512)  # ImageNet's 1000-way fc was dropped


def test_imagenet_weights_of_densenet_with_legacy_key_names(hub_dir):
    hub_dir.mkdir(parents=True)
    state = tvm.densenet121().state_dict()
    legacy = {}
    for key, value in state.items():
        for part in ("norm", "relu", "conv"):
            for i in ("1", "2"):
                if "denselayer" in key:
                    key = key.replace(f".{part}{i}.", f".{part}.{i}.")
        legacy[key] = value
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    torch.save(legacy, hub_dir / "densenet121-a639ec97.pth")
    model = create_backbone("densenet121", 2, weights="imagenet")
    assert torch.equal(model.net.features.denseblock1.denselayer1.norm1.weight,
                       state["features.denseblock1.denselayer1.norm1.weight"])


def test_missing_imagenet_weights_say_where_to_put_them(hub_dir):
    with pytest.raises(WeightsUnavailableError) as err:
        create_backbone("resnet18", 2, weights="imagenet")
    message = str(err.value)
    assert str(hub_dir / "resnet18-f37072fd.pth") in message
    assert "--weights none" in message and "\n" not in message


def test_weights_from_a_plain_torchvision_state_dict(tmp_path):
    state = tvm.resnet18().state_dict()
    torch.save(state, tmp_path / "tv.pth")
    model = create_backbone("resnet18", 3, weights=tmp_path / "tv.pth")
    assert torch.equal(model.net.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    same_head = create_backbone("resnet18", 1000, weights=str(tmp_path / "tv.pth"))
    assert torch.equal(same_head.head.fc.weight, state["fc.weight"])
    torch.save(tvm.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ModelError, match="do not fit resnet18: unexpected"):
        create_backbone("resnet18", 3, weights=tmp_path / "r34.pth")


def test_weights_from_our_checkpoint(tmp_path):
    torch.manual_seed(1)
    audio = AudioModel.from_config(SMALL, ModelConfig("resnet18", "none", 0.0), ["a", "b"])
    path = tmp_path / "model.pt"
    save_checkpoint(path, audio, config={}, labels=["a", "b"])
    other = create_backbone("resnet18", 5, weights=path)  # head of another size: dropped
    same = create_backbone("resnet18", 2, weights=path)
    for key, value in audio.backbone.state_dict().items():
        assert torch.equal(same.state_dict()[key], value)
        if key.startswith("net."):
            assert torch.equal(other.state_dict()[key], value)
    with pytest.raises(ModelError, match="holds a resnet18 model, not resnet34"):
        create_backbone("resnet34", 2, weights=path)


def test_bad_weight_files_are_model_errors(tmp_path):
    (tmp_path / "junk.pt").write_text("not a torch file\n")
    with pytest.raises(ModelError, match="not a readable weights file"):
        create_backbone("resnet18", 2, weights=tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="not found"):
        create_backbone("resnet18", 2, weights=tmp_path / "absent.pt")


def test_audio_model_end_to_end_and_spec_augment():
    torch.manual_seed(0)
    train = TrainConfig(time_masks=2, time_mask_frames=10, freq_masks=2, freq_mask_bins=6)
    model = AudioModel.from_config(SMALL, ModelConfig("resnet18", "none", 0.2), ["x", "y", "z"],
                                   train)
    assert model.arch == "resnet18" and model.labels == ["x", "y", "z"]
    wave = 0.1 * torch.randn(4, SMALL.window_samples)
    model.fit_normalization(model.frontend(wave))
    x = model.features(wave)
    assert x.shape == (4, 1, 32, 63) and x.dtype == torch.float32
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-3
    model.train()
    masked = model.spec_augment(x)
    assert (masked == 0).any() and not torch.equal(masked, x)
    assert not torch.equal(model.spec_augment(x), masked)  # fresh masks each call
    logits, emb = model(wave)
    assert logits.shape == (4, 3) and emb.shape == (4, 512)
    model.eval()
    assert model.spec_augment(x) is x
    first, second = model(wave), model(wave)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    model.train()
    emb2, probs = model.embed(wave)
    assert model.training and torch.equal(emb2, first[1])
    assert torch.allclose(probs.sum(dim=1), torch.ones(4))


def test_spec_augment_disabled_without_masks_and_per_bin_normalisation():
    aug = SpecAugment().train()
    x = torch.randn(2, 1, 32, 40)
    assert aug(x) is x
    model = AudioModel.from_config(SMALL, ModelConfig("resnet18", "none", 0.0), [])
    model.fit_normalization(torch.randn(3, 1, 32, 10) * torch.arange(1, 33.0)[:, None],
                            per_bin=True)
    assert model.norm_std.shape == (1, 1, 32, 1)
    assert torch.allclose(model.norm_std.flatten()[:3], torch.tensor([1.0, 2.0, 3.0]),
                          rtol=0.5)
    with pytest.raises(ModelError, match="fit_normalization"):
        model.fit_normalization(torch.randn(3, 1, 16, 10))


def test_label_free_model_has_empty_logits_and_no_probs():
    model = AudioModel.from_config(SMALL, ModelConfig("resnet18", "none", 0.0), [])
    wave = 0.1 * torch.randn(2, SMALL.window_samples)
    logits, emb = model.eval()(wave)
    assert logits.shape == (2, 0) and emb.shape == (2, 512)
    emb, probs = model.embed(wave)
    assert probs is None and emb.shape == (2, 512)
