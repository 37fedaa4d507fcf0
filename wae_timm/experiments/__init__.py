"""The measurements behind results/: FLOPs, speed (and its per-component profile), the Fashion-MNIST
reproduction, reconstruction, figures."""
