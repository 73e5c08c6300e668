"""A guidance method written as a plug-in, for the tests: each image is pulled toward its class's
mean training latent (the DDPM step's mean moves by `scale` standard deviations per unit of distance
of the predicted clean latent from it). Loaded by a config's `plugins: [tests/plugins/mean_latent.py]`;
its methods are `mean_latent` and `mean_latent_<fine-tuned method>`."""

from minimaxdd.guidance import Guide, GuidanceMethod


class MeanLatentGuide(Guide):
    def __init__(self, means, scale: float):
        self.means, self.scale = means, scale  # (classes, C, H, W): the scaled latent mean of each class
        self.classes = []

    def begin_batch(self, batch):
        self.classes = [c for c, _ in batch]

    def acts_at(self, index: int) -> bool:
        return True

    def mean_shift(self, x0, std, dx0_dxt):
        return self.scale * std * (self.means[self.classes].to(x0.device) - x0)


class MeanLatent(GuidanceMethod):
    name, label = "mean_latent", "Mean latent"
    schema = {"description": "the test plug-in's pull toward each class's mean latent", "type": "object",
              "additionalProperties": False, "default": {},
              "properties": {"scale": {"type": "number", "minimum": 0, "default": 0.5}}}

    def inputs(self, paths, ipc: int) -> list[str]:
        return paths.latents()  # the encoded training split: every class's latents

    def build_guide(self, settings: dict, inputs: list[str], vae, device) -> Guide:
        import torch

        from minimaxdd.io import load_torch

        means = []
        for file in inputs:  # the encode jobs' chunks, in class order
            cache = load_torch(file)
            latents = cache["mean"][:, 0].float() * cache["scaling_factor"]  # posterior means of the unflipped images
            labels = torch.as_tensor(cache["labels"])
            means += [latents[labels == c].mean(0) for c in labels.unique().tolist()]
        return MeanLatentGuide(torch.stack(means), settings["scale"])


METHOD = MeanLatent()
