"""Training and evaluation loops, checkpoints and the glue between models, data and metrics
(layout in docs/ARCHITECTURE.md, "Engine")."""
