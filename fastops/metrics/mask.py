"""RLE mask API of pycocotools (``pycocotools.mask``), computed by the C++ ops in csrc/coco_eval/."""
