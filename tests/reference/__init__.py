"""Float64 references of the ops, written from their definitions and independent of the kernels
and of torchvision: `boxes` (IoU family, box losses), `roi` (RoIAlign, RoIPool), `focal` (focal
losses), `conv` (conv2d), `segmentation` (per-pixel losses, soft Dice), `panoptic` (panoptic quality),
`panoptic_fusion` (Panoptic FPN's fusion of instances and a semantic map), `graph_segmentation`
(Felzenszwalb-Huttenlocher, selective search's first step)."""
