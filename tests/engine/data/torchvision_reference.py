"""Expected outputs of torchvision.transforms.v2.functional for the engine's image-op tests.

Usage: torchvision_reference.py OUT_DIR. For every case below writes OUT_DIR/<name>.bin, the raw
uint8 CHW bytes torchvision produces from the case's input, whose pixel k is
(k * 37 + 11 + (k // 13) * 7) % 256 (image_ops_test.cc builds the same input).
"""
import sys

import torch
from torchvision.transforms.v2 import functional as F

# name: (channels, height, width, operation, arguments)
CASES = {
    "down_3x37x53_r32_c32x32": (3, 37, 53, "eval", (32, 32, 32)),
    "square_1x28x28_r14_c14x14": (1, 28, 28, "eval", (14, 14, 14)),
    "up_3x20x30_r40_c40x40": (3, 20, 30, "eval", (40, 40, 40)),
    "tall_3x300x200_r256_c224x224": (3, 300, 200, "eval", (256, 224, 224)),
    "odd_anchor_3x50x51_r50_c47x46": (3, 50, 51, "eval", (50, 47, 46)),
    "pad_1x7x9_r16_c20x20": (1, 7, 9, "eval", (16, 20, 20)),
    "resized_crop_3x40x48_box5_7_20_25_to32x32": (3, 40, 48, "resized_crop", (5, 7, 20, 25, 32, 32)),
}


def pattern(c, h, w):
    k = torch.arange(c * h * w, dtype=torch.int64)
    return ((k * 37 + 11 + (k // 13) * 7) % 256).to(torch.uint8).reshape(c, h, w)


def main(out_dir):
    for name, (c, h, w, op, args) in CASES.items():
        image = pattern(c, h, w)
        if op == "eval":
            size, crop_h, crop_w = args
            out = F.center_crop(F.resize(image, [size], antialias=True), [crop_h, crop_w])
        else:
            top, left, box_h, box_w, out_h, out_w = args
            out = F.resized_crop(image, top, left, box_h, box_w, [out_h, out_w], antialias=True)
        assert out.dtype == torch.uint8
        with open(f"{out_dir}/{name}.bin", "wb") as f:
            f.write(out.contiguous().numpy().tobytes())


if __name__ == "__main__":
    main(sys.argv[1])
