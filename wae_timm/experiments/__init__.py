"""The measurements behind results/: FLOPs, speed, the Fashion-MNIST reproduction, reconstruction, figures."""
